"""Monitoring a deployed model: drift detection (window.py, drift.py, detect.py) and its report.

Kept free of imports so that `import imgrec.monitor.X` loads only what X needs.
"""
