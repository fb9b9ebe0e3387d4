"""After training: watching a model in use and documenting it. Drift: window.py (what a window
is), image_window.py and log_window.py (where windows come from), drift.py (the tests),
detect.py (the check as one function), drift_report.py (drift.json and drift.html). The model
card: card.py, run_folder.py.

Kept free of imports so that `import imgrec.monitor.X` loads only what X needs.
"""
