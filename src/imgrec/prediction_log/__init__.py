"""The prediction log: one SQLite file that `imgrec serve --log` and `imgrec predict --log`
write and `imgrec drift` reads.

schema.py is the contract both sides import (schema version, columns, model_id); db.py opens the
file for writing and applies retention; writer.py is the background writer (PredictionLog);
image_store.py keeps metadata-free copies of images; reader.py opens a log read-only for monitor.
"""
