"""`imgrec serve`: a FastAPI app with a JSON API, a web page and Prometheus metrics.

Nothing here imports the training engine; the model comes from `bundle.load_model`. The app
is imported on first use, so `import imgrec.serve` does not load FastAPI; the prediction log
it writes lives in prediction_log/ (which `imgrec predict --log` uses too).
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
