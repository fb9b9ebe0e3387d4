"""`imgrec serve`: a FastAPI app with a JSON API, a web page and Prometheus metrics.

Nothing here imports the training engine; the model comes from `ImageClassifier.load`.
"""

from imgrec.serve.app import create_app
from imgrec.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
