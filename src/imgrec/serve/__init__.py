"""`imgrec serve`: a FastAPI app with a JSON API, a web page and Prometheus metrics.

Nothing here imports the training engine; the model comes from `ImageClassifier.load`.
The app is imported on first use, so `imgrec predict --log` can use the prediction log
(serve/log.py) without loading FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imgrec.serve.app import create_app
    from imgrec.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from imgrec.serve.app import create_app

        return create_app
    if name == "ServeSettings":
        from imgrec.serve.settings import ServeSettings

        return ServeSettings
    raise AttributeError(f"module 'imgrec.serve' has no attribute {name!r}")
