"""imgrec: from a folder of labelled photos to an evaluated, deployable image classifier."""

__version__ = "0.1.0"

_API = {"ImageClassifier", "Prediction", "audit", "load_dataset", "load_model"}
__all__ = ["ImgrecError", "__version__", *sorted(_API)]

from imgrec.errors import ImgrecError  # noqa: E402


def __getattr__(name: str):
    # torch and Lightning load only when the API is used, so `imgrec --help` stays instant.
    if name in _API:
        from imgrec import api

        return getattr(api, name)
    raise AttributeError(f"module 'imgrec' has no attribute {name!r}")
