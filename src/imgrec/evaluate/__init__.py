"""Evaluation: metrics, plots and the self-contained HTML report."""

from imgrec.evaluate.metrics import compute_metrics
from imgrec.evaluate.report import EvaluationResult

__all__ = ["EvaluationResult", "compute_metrics"]
