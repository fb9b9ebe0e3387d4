"""Retraining: continue a trained model on its old data plus newly labelled images, and put the
result in the old model's place only when it is at least as good on the old test split.

The old run's split stays as it was, so no old test image is ever trained on and the comparison
is fair. New images are split the same way and added to each split; a new image that copies an
old one joins that image's split, so it cannot leak an old test photo into training. Deep models
fine-tune from their own weights with a lower learning rate, and the old weights are epoch 0:
fine-tuning replaces them only when it validates better. Classic learners refit on all the data.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from imgrec.bundle.run_folder import CONFIG_FILE, MODEL_FILE, RunFiles, read_config, write_config
from imgrec.config import TrainConfig
from imgrec.data.dataset import SPLITS, Dataset, Sample, Skipped, load_dataset
from imgrec.data.split import read_split_file, write_split_file
from imgrec.errors import ImgrecError
from imgrec.models.families import get_family
from imgrec.runs.finish import finish_run, headline_metrics, write_audit

if TYPE_CHECKING:
    from imgrec.audit.result import AuditResult
    from imgrec.classifier import ImageClassifier
    from imgrec.data.cache import DecodedCache
    from imgrec.evaluate import EvaluationResult

COMPARISON_FILE = "retrain.json"
DATA_FILE = "data.csv"  # old + new images with their splits: the new run's data source
PREVIOUS_FILE = "previous.imgrec"  # the replaced model, kept in the new run folder
LR_DIVISOR = 3  # fine-tuning a trained model: a third of its learning rate
# Epoch 0's selection score counts a validation loss of 1 (score = accuracy - 1e-3 * loss), so
# a fine-tuned epoch that is as accurate on validation wins: it has learned the new images, and
# on a small validation split the old weights would otherwise win most ties on loss alone.
START_LOSS_FOR_SCORE = 1.0
_SPLIT_PRIORITY = {"test": 0, "val": 1, "train": 2}  # a copy of several old images: least leaky


@dataclass
class RetrainResult:
    """What `retrain_run` did: the new run folder and whether its model replaced the old one."""

    folder: Path
    model_path: Path
    report_path: Path
    old_model: Path
    accepted: bool
    replaced: bool
    message: str
    comparison: dict


@dataclass
class _Plan:
    """The data of one retraining: old and new images, split, decoded once."""

    old_model: Path
    folder: Path
    old: ImageClassifier
    data_run: Path
    old_data: Dataset
    new_parts: dict[str, list[Sample]]
    parts: dict[str, Dataset]
    decoded: DecodedCache
    given_new: dict
    followed: int
    old_split: str
    new_split: str


def retrain_run(
    run_folder: str | Path,
    new_data: str | Path,
    out: str | Path | None = None,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    min_gain: float = 0.0,
    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15),
    replace_old: bool = True,
    progress: bool = True,
) -> RetrainResult:
    """Retrain the model of `run_folder` on its old split plus `new_data` into a new run folder.

    The new model replaces `run_folder`'s model.imgrec (atomically; the old file moves to the
    new folder as previous.imgrec) only when its accuracy on the old test split is at least
    the old model's + `min_gain` (a fraction: 0.01 is one point) and `replace_old` is set.
    `epochs` (default: half the original's) and `lr` (default: a third) apply to deep models.
    """
    if not -1 < min_gain < 1:  # checked before torch loads: a typo fails in a moment
        raise ImgrecError(
            f"--min-gain {min_gain} is not a fraction between -1 and 1 (0.01 is one point)."
        )
    if epochs is not None and epochs < 1:
        raise ImgrecError(f"--epochs {epochs} leaves nothing to retrain; use at least 1.")
    from imgrec.classifier import ImageClassifier

    old_model = _model_file(Path(run_folder), MODEL_FILE)
    old = ImageClassifier.load(old_model)
    config = _retrain_config(old.config, epochs, lr)
    plan = _plan(old_model, old, Path(new_data), out, ratios, config, progress)
    clf, start = _fit(plan, config, progress)
    targets = {
        "old_test": plan.old_data.subset(plan.old_split),
        "new_test": Dataset(plan.folder, plan.new_parts[plan.new_split], old.classes),
        "combined": plan.parts[plan.new_split],
    }
    before, after = _scores(old, targets), _scores(clf, targets)
    if before["old_test"] is None or after["old_test"] is None:
        raise ImgrecError(
            f"none of the old {plan.old_split} images could be read, so nothing to compare."
        )
    old_acc, new_acc = before["old_test"].accuracy, after["old_test"].accuracy
    accepted = new_acc >= old_acc + min_gain - 1e-12
    message = _verdict(
        accepted, old_acc, new_acc, min_gain, plan.old_split, len(targets["old_test"])
    )
    if clf.metadata["best_epoch"]["phase"] == "start":
        message += " No fine-tuning epoch was as accurate on validation: it keeps the old weights."
    result = _describe(after["combined"], clf, plan, targets, before, after, message)
    clf.metadata["retrained"] = {"from": str(old_model.resolve()), "run": str(plan.folder)}
    unreadable = plan.given_new["skipped"] + plan.old_data.skipped + plan.decoded.skipped
    unreadable += [Skipped(Path(p), r) for p, r in result.skipped or []]
    done = finish_run(plan.folder, clf, result, plan.new_split, skipped=unreadable)
    replaced = accepted and replace_old
    comparison = _comparison(plan, config, new_data, min_gain, accepted, replaced, message)
    comparison.update(
        new_model=str(done.model_path.resolve()),
        start=start,
        best_epoch=clf.metadata["best_epoch"],
        evaluation={
            name: {"old": _summary(before[name]), "new": _summary(after[name])} for name in targets
        },
    )
    (plan.folder / COMPARISON_FILE).write_text(json.dumps(comparison, indent=2) + "\n")
    if replaced:
        _replace(done.model_path, old_model, plan.folder / PREVIOUS_FILE)
    return RetrainResult(
        plan.folder,
        done.model_path,
        done.report_path,
        old_model,
        accepted,
        replaced,
        message,
        comparison,
    )


def _plan(
    old_model: Path,
    old: ImageClassifier,
    new_data: Path,
    out: str | Path | None,
    ratios: tuple[float, float, float],
    config: TrainConfig,
    progress: bool,
) -> _Plan:
    """Old split + new images split the same way, decoded and audited once; the inputs are
    written into the new run folder."""
    from imgrec.bundle.run_folder import next_run_folder
    from imgrec.data.cache import DecodedCache
    from imgrec.runs.train import quick_audit

    run_folder = old_model.parent
    folder = (
        Path(out)
        if out is not None
        else next_run_folder(run_folder.parent, f"{run_folder.name}-retrain")
    )
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ImgrecError(f"{folder} already exists and is not empty; choose another --out.")
    folder = folder.resolve()
    data_run = _data_run(run_folder, old)
    old_data = _old_data(data_run, old.classes)
    fresh, given_new = _new_samples(new_data, old_data, old.classes)
    decoded = DecodedCache(
        old_data.paths + [s.path for s in fresh],
        old.preprocessing,
        progress=progress,
        with_facts=True,
    )
    decoded.build()
    audit = quick_audit(Dataset(folder, old_data.samples + fresh, old.classes), decoded)
    new_parts, followed = _split_new(fresh, old_data, audit, ratios, config.seed, given_new)
    parts = {
        name: Dataset(folder, old_data.subset(name).samples + new_parts[name], old.classes)
        for name in SPLITS
    }
    _write_inputs(folder, config, parts, audit)
    return _Plan(
        old_model,
        folder,
        old,
        data_run,
        old_data,
        new_parts,
        parts,
        decoded,
        given_new,
        followed,
        old_split="test" if len(old_data.subset("test")) else "val",
        new_split="test" if len(parts["test"]) else "val",
    )


def _fit(plan: _Plan, config: TrainConfig, progress: bool) -> tuple[ImageClassifier, dict]:
    """A second copy of the old model (the first must stay as it was), trained on.

    Deep models continue from the old weights, recorded as epoch 0; classic ones refit."""
    from imgrec.classifier import ImageClassifier
    from imgrec.runs.train import reference_summary

    clf = ImageClassifier.load(plan.old_model)
    clf.config = config
    clf.temperature = 1.0  # a calibration fitted to the old weights does not hold for new ones
    traits = get_family(config.model).traits
    work = RunFiles(plan.folder).checkpoints
    val = plan.parts["val"]
    start = _seed_start(clf, val, plan.decoded, work) if traits.backprop else None
    clf.fit(
        plan.parts["train"],
        val,
        work_dir=work,
        resume=traits.backprop,  # keeps the seeded epoch 0; the folder holds nothing else yet
        progress=progress,
        decoded=plan.decoded,
        warm_start=traits.has_learning_rate,
    )
    # the drift reference of the new weights (the old one described another feature space)
    held_out = [*val.paths, *plan.parts["test"].paths]
    clf.metadata["monitor"] = {
        "reference": reference_summary(clf, plan.decoded, held_out, config.seed)
    }
    return clf, start


def _describe(
    result: EvaluationResult,
    clf: ImageClassifier,
    plan: _Plan,
    targets: dict[str, Dataset],
    before: dict,
    after: dict,
    message: str,
) -> EvaluationResult:
    """The report's title and key facts: old against new on each set of images."""
    result.history = clf.history or None
    result.title = f"imgrec — {plan.folder.name} (retrained, {plan.new_split} split)"
    result.info = {
        **clf.describe(),
        "retrained from": str(plan.old_model.resolve()),
        **{
            f"{_LABELS[name]} ({len(targets[name])} images)": _pair(before[name], after[name])
            for name in targets
            if after.get(name) is not None
        },
        "decision": message,
    }
    return result


def _comparison(
    plan: _Plan,
    config: TrainConfig,
    new_data: str | Path,
    min_gain: float,
    accepted: bool,
    replaced: bool,
    message: str,
) -> dict:
    """retrain.json: what was compared, on which images, and the decision."""
    return {
        "old_model": str(plan.old_model.resolve()),
        "new_data": str(Path(new_data).resolve()),
        "data_from_run": str(plan.data_run.resolve()),
        "min_gain": min_gain,
        "accepted": accepted,
        "replaced": replaced,
        "previous_model": str(plan.folder / PREVIOUS_FILE) if replaced else None,
        "reason": message,
        "old_test_split": plan.old_split,
        "settings": {
            "epochs": config.epochs,
            "lr": config.lr,
            "family": get_family(config.model).kind,
        },
        "images": {
            "old": {name: len(plan.old_data.subset(name)) for name in SPLITS},
            "new": {name: len(plan.new_parts[name]) for name in SPLITS},
            "new_already_in_old_data": plan.given_new["known"],
            "new_copies_of_old_images": plan.followed,
        },
    }


_LABELS = {
    "old_test": "accuracy on the old test split",
    "new_test": "accuracy on the new test images",
    "combined": "accuracy on both",
}


def _model_file(path: Path, name: str) -> Path:
    """RUN_FOLDER/`name` of a finished run (a model file inside one is accepted too)."""
    folder = path.parent if path.is_file() and path.suffix == ".imgrec" else path
    if not folder.is_dir():
        raise ImgrecError(f"the run folder {path} does not exist.")
    files = RunFiles(folder)
    missing = [p.name for p in (folder / name, files.config, files.split) if not p.is_file()]
    if missing:
        raise ImgrecError(
            f"{folder} is not a finished training run folder: it lacks {', '.join(missing)}."
        )
    return folder / name


def _data_run(run_folder: Path, model: ImageClassifier) -> Path:
    """The run whose split and data the model was trained on: a model that replaced an older
    one after retraining names its own run folder, which holds the grown split."""
    named = model.metadata.get("retrained", {}).get("run")
    if named:
        folder = Path(named)
        if RunFiles(folder).config.is_file() and RunFiles(folder).split.is_file():
            return folder
    return run_folder


def _old_data(run: Path, classes: list[str]) -> Dataset:
    """The old run's images with the splits they had (only those listed in its split.csv)."""
    try:
        source = read_config(run)["source"]
    except (KeyError, TypeError) as exc:
        raise ImgrecError(f"{run / CONFIG_FILE} does not name the run's data ({exc}).") from exc
    try:
        dataset = read_split_file(RunFiles(run).split, load_dataset(source))
    except ImgrecError as exc:
        raise ImgrecError(
            f"the old data of {run} is needed to retrain and could not be reloaded: {exc}"
        ) from exc
    samples = [s for s in dataset.samples if s.split is not None]
    unknown = sorted({s.label for s in samples} - set(classes))
    if unknown:
        raise ImgrecError(
            f"the old data of {run} now has labels the model does not know ({', '.join(unknown)})."
        )
    return Dataset(dataset.root, samples, classes, dataset.skipped)


def _new_samples(source: Path, old: Dataset, classes: list[str]) -> tuple[list[Sample], dict]:
    """The new labelled images not already in the old data; refuses classes the model lacks."""
    new = load_dataset(source)
    unknown = sorted({s.label for s in new.samples} - set(classes))
    if unknown:
        raise ImgrecError(
            f"{source} has classes the model does not know ({', '.join(unknown)}; it knows "
            f"{', '.join(classes)}): retraining cannot add classes, so train a new model on "
            "all the data with imgrec train instead."
        )
    known = {s.path for s in old.samples}
    fresh = [s for s in new.samples if s.path not in known]
    if not fresh:
        raise ImgrecError(
            f"every image in {source} is already in the old run's data: nothing new to train on."
        )
    return fresh, {
        "known": len(new.samples) - len(fresh),
        "has_splits": new.has_splits(),
        "skipped": new.skipped,
    }


def _retrain_config(base: TrainConfig, epochs: int | None, lr: float | None) -> TrainConfig:
    """The old settings, with fewer epochs and a lower learning rate: the model is trained."""
    changes: dict = {}
    traits = get_family(base.model).traits
    if traits.has_learning_rate:  # scikit-learn learners have no learning rate or epochs
        changes["lr"] = lr if lr is not None else base.lr / LR_DIVISOR
    if traits.backprop:  # epochs to run, not a plan's bound: the weights are trained already
        changes["epochs"] = epochs if epochs is not None else max(1, base.epochs // 2)
        changes["auto_finetune"] = False
    return TrainConfig.from_dict({**base.to_dict(), **changes})


def _split_new(
    fresh: list[Sample],
    old: Dataset,
    audit: AuditResult,
    ratios: tuple[float, float, float],
    seed: int,
    given: dict,
) -> tuple[dict[str, list[Sample]], int]:
    """New samples per split: copies of old images follow them, the rest keep the splits they
    were given or are split stratified (their own duplicate groups kept together)."""
    from imgrec.audit.run import group_keys

    old_split = {s.path: s.split for s in old.samples}
    follow: dict[Path, str] = {}
    for group in audit.duplicates:
        splits = [old_split[p] for p in group.paths if p in old_split]
        if splits:
            where = min(splits, key=_SPLIT_PRIORITY.__getitem__)
            follow.update((p, where) for p in group.paths if p not in old_split)
    parts: dict[str, list[Sample]] = {name: [] for name in SPLITS}
    for s in fresh:
        if s.path in follow:
            parts[follow[s.path]].append(replace(s, split=follow[s.path]))
    rest = Dataset(old.root, [s for s in fresh if s.path not in follow], old.classes)
    if given["has_splits"]:
        for s in rest.samples:
            parts[s.split].append(s)
    elif len(rest):
        split = rest.split(*ratios, seed=seed, groups=group_keys(rest, audit), standalone=False)
        for name, part in zip(SPLITS, split, strict=True):
            parts[name].extend(part.samples)
    return parts, len(follow)


def _write_inputs(
    folder: Path, config: TrainConfig, parts: dict[str, Dataset], audit: AuditResult
) -> None:
    """What `imgrec train` writes before training: config.json, split.csv and audit.json, and
    data.csv (every image with its absolute path and split), the run's data source."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / DATA_FILE, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split"])
        for name, part in parts.items():
            for s in part.samples:
                writer.writerow([str(s.path), s.label, name])
    write_config(folder, config.to_dict(), folder / DATA_FILE)
    write_split_file(RunFiles(folder).split, parts)
    write_audit(folder, audit)


def _seed_start(clf: ImageClassifier, val: Dataset, decoded: DecodedCache, work: Path) -> dict:
    """Record the old weights as epoch 0 (history row and best weights): fine-tuning then
    keeps them only when no epoch is as accurate on the combined validation split."""
    import torch

    from imgrec.data.transforms import eval_transform
    from imgrec.train.head import evaluate_logits, score
    from imgrec.train.state import RunState

    network = clf._require_fitted().eval()
    cache = decoded.subset(val.paths)
    rows = cache.valid_indices
    if not rows:
        raise ImgrecError("no readable images left in the validation split.")
    transform = eval_transform(clf.preprocessing)
    targets = val.targets()
    logits = []
    with torch.inference_mode():
        for start in range(0, len(rows), 32):
            batch = torch.stack([transform(cache[i]) for i in rows[start : start + 32]])
            logits.append(network(batch.contiguous(memory_format=torch.channels_last)).float())
    acc, loss = evaluate_logits(torch.cat(logits), torch.tensor([targets[i] for i in rows]))
    row = {
        "phase": "start",
        "epoch": 0,
        "val_loss": loss,
        "val_acc": acc,
        "val_score": score(acc, max(loss, START_LOSS_FOR_SCORE)),
        "seconds": 0.0,
    }
    state = RunState(work)
    state.append_history(row)
    state.save_best(network.state_dict(), row)
    return row


def _scores(
    clf: ImageClassifier, targets: dict[str, Dataset]
) -> dict[str, EvaluationResult | None]:
    """One prediction pass over every image of `targets`, then a result per target (None when
    a target has no readable image)."""
    import numpy as np

    from imgrec.evaluate import EvaluationResult

    label = {s.path: s.label for d in targets.values() for s in d.samples}
    paths, probs, skipped = clf.predict_proba(list(label))
    row = {p: i for i, p in enumerate(paths)}
    results: dict[str, EvaluationResult | None] = {}
    for name, data in targets.items():
        rows = [row[s.path] for s in data.samples if s.path in row]
        if not rows:
            results[name] = None
            continue
        gone = {s.path for s in data.samples}
        results[name] = EvaluationResult.from_predictions(
            probs[rows],
            np.array([clf.classes.index(label[paths[i]]) for i in rows]),
            clf.classes,
            [str(paths[i]) for i in rows],
            skipped=[(str(s.path), s.reason) for s in skipped if s.path in gone] or None,
        )
    return results


def _verdict(accepted: bool, old: float, new: float, min_gain: float, split: str, n: int) -> str:
    """One line with both figures, for the terminal and retrain.json."""
    points = min_gain * 100
    unit = "point" if abs(points) == 1 else "points"
    gain = f" plus the required gain of {points:g} {unit}" if min_gain else ""
    where = f"on the old {split} split ({n} images)"
    if accepted:
        return f"the retrained model scores {new:.1%} {where}, the old model {old:.1%}."
    return (
        f"kept the old model: the retrained model scores {new:.1%} {where}, below the old "
        f"model's {old:.1%}{gain}."
    )


def _summary(result: EvaluationResult | None) -> dict | None:
    return None if result is None else headline_metrics(result.metrics)


def _pair(before: EvaluationResult | None, after: EvaluationResult | None) -> str:
    if before is None or after is None:
        return "no readable images"
    return f"old model {before.accuracy:.1%}, retrained {after.accuracy:.1%}"


def _replace(new_model: Path, old_model: Path, keep: Path) -> None:
    """Put `new_model` at `old_model` in one rename, after a full copy written beside it, so a
    reader (a server reloading, a crash) sees the whole old file or the whole new one; the old
    file stays reachable as `keep` (a hard link when the file system allows, else a copy)."""
    tmp = old_model.with_name(f".{old_model.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(new_model, tmp)
        try:
            os.link(old_model, keep)
        except OSError:
            shutil.copy2(old_model, keep)
        os.replace(tmp, old_model)
    finally:
        tmp.unlink(missing_ok=True)
