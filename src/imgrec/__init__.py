"""imgrec: from a folder of labelled photos to an evaluated, deployable image classifier."""

__version__ = "0.1.0"

_API = {"ImageClassifier", "Prediction", "load_dataset"}
__all__ = ["ImageClassifier", "ImgrecError", "Prediction", "__version__", "load_dataset"]

from imgrec.errors import ImgrecError  # noqa: E402


def __getattr__(name: str):
    # torch and Lightning load only when the API is used, so `imgrec --help` stays instant.
    if name in _API:
        from imgrec import api

        return getattr(api, name)
    raise AttributeError(f"module 'imgrec' has no attribute {name!r}")
