"""imgrec: from a folder of labelled photos to an evaluated, deployable image classifier."""

from imgrec.errors import ImgrecError
from imgrec.version import __version__

_API = {"ImageClassifier", "Prediction", "audit", "load_dataset", "load_model", "open_predictor"}
__all__ = ["ImgrecError", "__version__", *sorted(_API)]


def __getattr__(name: str):
    # torch and Lightning load only when the API is used, so `imgrec --help` stays instant.
    if name in _API:
        from imgrec import api

        return getattr(api, name)
    raise AttributeError(f"module 'imgrec' has no attribute {name!r}")
