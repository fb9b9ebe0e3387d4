"""What each phase of a training run took and added, as the report and the model card show it.

The phases are what `imgrec train` records under "phases" in metrics.json and the model file:
decode_audit, lr_find, head (or fit, for the scikit-learn families), finetune (with its plan)
and evaluation, each with its seconds.
"""

from __future__ import annotations

LABELS = {
    "decode_audit": "Decode + audit",
    "lr_find": "Learning-rate range test",
    "head": "Head on frozen features",
    "fit": "Fit on fixed features",
    "finetune": "Fine-tuning",
    "evaluation": "Evaluation",
}


def phase_rows(phases: dict | None) -> list[tuple[str, str, str]]:
    """(phase, time, what it added) per phase run, in run order; [] when none were recorded."""
    rows = []
    head_acc = None
    for name, phase in (phases or {}).items():
        if name not in LABELS or not isinstance(phase, dict):
            continue
        if name in ("head", "fit") and "val_acc" in phase:
            head_acc = float(phase["val_acc"])
        rows.append((LABELS[name], _seconds(phase.get("seconds")), _added(name, phase, head_acc)))
    return rows


def _added(name: str, phase: dict, head_acc: float | None) -> str:
    if name in ("head", "fit"):
        return f"validation accuracy {_acc(phase.get('val_acc'))}" if "val_acc" in phase else ""
    if name == "evaluation":
        split = phase.get("split")
        return f"scored the {split} split" if split else ""
    if name != "finetune":
        return ""
    return _finetune_added(phase, head_acc)


def _finetune_added(phase: dict, head_acc: float | None) -> str:
    plan = phase.get("plan") or {}
    if not phase.get("epochs"):
        reason = str(plan.get("reason") or "")
        if not plan.get("auto") or not reason:
            return "no epoch run"
        return reason if "skipped" in reason else f"skipped: {reason}"
    text = (
        f"best epoch {phase.get('best_epoch')} of {phase['epochs']}: validation accuracy "
        f"{_acc(phase.get('val_acc'))}"
    )
    if head_acc is not None and phase.get("val_acc") is not None:
        gain = 100 * (float(phase["val_acc"]) - head_acc)
        text += f" ({gain:+.1f} points over the head)"
    if phase.get("improved") is False:
        text += "; no epoch beat the head, which is kept"
    if plan.get("auto"):
        text += f". Plan: {plan.get('reason')}"
    return text


def _acc(value) -> str:
    return "?" if value is None else f"{float(value):.1%}"


def _seconds(value) -> str:
    if value is None:
        return "?"
    seconds = float(value)
    if seconds < 90:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"
