"""A training run as a folder: split, train, evaluate, report and model file, all resumable.

The CLI's `train` is this function; notebooks can call it too.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imgrec.bundle.run_folder import RunFiles, read_config, write_config
from imgrec.classifier import ImageClassifier
from imgrec.data.cache import DecodedCache
from imgrec.data.cache_policy import choose_cache, memory_budget
from imgrec.data.dataset import Dataset, Skipped
from imgrec.data.remote import is_url
from imgrec.data.shard_reader import ShardCache, ShardSet
from imgrec.data.sources import local_shards, open_listing, remote_shards, shards_for_dataset
from imgrec.data.split import read_split_file, write_split_file
from imgrec.errors import ImgrecError
from imgrec.runs.finish import finish_run, write_audit
from imgrec.runtime import device
from imgrec.train import TrainConfig, distributed
from imgrec.train.precision import training_dtype

if TYPE_CHECKING:
    from imgrec.audit.result import AuditResult
    from imgrec.evaluate import EvaluationResult


@dataclass
class RunResult:
    folder: Path
    model_path: Path
    report_path: Path
    evaluation: EvaluationResult
    evaluated_on: str
    classifier: ImageClassifier
    card_path: Path | None = None


SELECTION_SHARE = 0.15  # of train, held out to choose epochs and settings when no val is given


def prepare_folder(folder: Path, resume: bool, exist_ok: bool) -> None:
    if resume:
        read_config(folder)  # refuses a folder with nothing to resume
        return
    if folder.exists() and any(folder.iterdir()):
        if not exist_ok:
            raise ImgrecError(
                f"{folder} already holds a run; use --resume to continue it, --exist-ok to "
                "replace it, or choose another --out."
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)


def split_data(
    dataset: Dataset,
    ratios: tuple[float, float, float],
    split_file: Path | None,
    seed: int,
    audit: AuditResult | None = None,
) -> tuple[Dataset, Dataset, Dataset]:
    """(train, val, test): given splits win (folders or a split column), then a split file,
    then a fresh split that keeps the audit's duplicate groups together.

    Validation chooses (the best epoch, a learner's settings, the temperature); test is what
    gets reported, so it must have chosen nothing. Data that comes with a validation split and
    no test split (train/ and val/ folders) keeps that validation split as the test split,
    and 15% of train (stratified, duplicates kept together) becomes the validation split.
    """
    if split_file is not None:
        dataset = read_split_file(split_file, dataset)
    if not dataset.has_splits():
        return dataset.split(*ratios, seed=seed, groups=_groups(dataset, audit))
    train, val, test = (dataset.subset(s) for s in ("train", "val", "test"))
    if len(val) and len(test):
        return train, val, test
    reported = test if len(test) else val
    train, val, _ = train.split(
        1 - SELECTION_SHARE, SELECTION_SHARE, 0.0, seed=seed, groups=_groups(train, audit)
    )
    return train, val, reported


def _groups(dataset: Dataset, audit: AuditResult | None) -> list | None:
    if audit is None:
        return None
    from imgrec.audit.run import group_keys

    return group_keys(dataset, audit)


def _crossing(audit: AuditResult, *parts: Dataset) -> int:
    """Duplicate groups whose members ended up in different splits (0 when imgrec split)."""
    where = {s.path: n for n, part in enumerate(parts) for s in part.samples}
    return sum(len({where.get(p) for p in g.paths} - {None}) > 1 for g in audit.duplicates)


def quick_audit(dataset: Dataset, decoded: DecodedCache) -> AuditResult:
    """The audit `imgrec train` runs first, on the facts its own decode gathered: file checks,
    balance, hashes and duplicates; embeddings (label errors, outliers, cropped copies) only
    when an earlier audit cached them all."""
    from imgrec.audit.run import audit_dataset

    return audit_dataset(dataset, embeddings="cached", decoded=decoded)


def train_run(
    source: str | Path | None,
    folder: Path,
    config: TrainConfig,
    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15),
    split_file: Path | None = None,
    resume: bool = False,
    exist_ok: bool = False,
    progress: bool = True,
    audit: bool = True,
    on_audit: Callable[[AuditResult], None] | None = None,
    lr_auto: bool = False,
    on_lr: Callable[[float], None] | None = None,
    on_plan: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    cache: str = "auto",
    cache_memory: int | None = None,
) -> RunResult | None:
    """Train on `source` into `folder`; the test split (else validation) is what gets reported.

    With `resume`, the settings, data source and split come from the folder itself. With
    `audit`, a quick audit runs first (`on_audit` sees it before training starts) and a fresh
    split keeps duplicate groups inside one split. With `lr_auto`, a learning-rate range test
    on the training split picks `lr` (plot: lr_find.png; `on_lr` sees the choice). `on_plan`
    sees the one-line reason of the fine-tuning plan (TrainConfig.auto_finetune); `on_epoch`
    sees every history row as it is written (imgrec studio shows them live). `cache` is
    where the images are kept while training: "ram" (decoded), "disk" (shards, decoded a
    batch at a time) or "auto" (RAM within `cache_memory` bytes, default half the memory
    available; data/cache_policy.py). `source` may be a folder, a CSV, a shards folder or
    an object-storage URL (data/sources.py). The time
    limit's clock starts here: decoding, audit, training and evaluation all count, and the
    time each took lands in metrics.json and the model file under "phases".

    Started by torchrun or srun as one of several processes (`imgrec train --devices N`),
    every process runs this; rank 0 alone audits, splits, decides and writes the folder,
    the others train their share under DDP and return None (train/distributed.py).
    """
    clock = time.perf_counter()
    folder = Path(folder)
    # a --precision this machine cannot run ends here, before any work
    training_dtype(config.precision, device(), from_scratch=config.weights == "none")
    world = distributed.current()
    distributed.join(world)
    try:
        return _train(
            world, source, folder, config, (ratios, split_file), (resume, exist_ok),
            progress and world.is_main, audit and world.is_main,
            on_audit, lr_auto, on_lr, on_plan, on_epoch, clock, (cache, cache_memory),
        )  # fmt: skip
    finally:  # also on an error: the other processes then learn at once, not at a timeout
        distributed.leave()


def _train(
    world: distributed.World,
    source: str | Path | None,
    folder: Path,
    config: TrainConfig,
    split_from: tuple[tuple[float, float, float], Path | None],
    resuming: tuple[bool, bool],
    progress: bool,
    audit: bool,
    on_audit: Callable[[AuditResult], None] | None,
    lr_auto: bool,
    on_lr: Callable[[float], None] | None,
    on_plan: Callable[[str], None] | None,
    on_epoch: Callable[[dict], None] | None,
    clock: float,
    caching: tuple[str, int | None],
) -> RunResult | None:
    """train_run in this process of the job (every process of a DDP run runs it)."""
    (ratios, split_file), (resume, exist_ok) = split_from, resuming
    files = RunFiles(folder)
    if resume:  # settings, data source and split as the folder holds them
        saved = distributed.decided_by_main(world, lambda: read_config(folder))
        config, source, split_file = (
            TrainConfig.from_dict(saved),
            source or saved["source"],
            files.split,
        )
    if source is None:
        raise ImgrecError("no data given to train on.")
    if not resume and not exist_ok:  # refuses, before any work is done
        distributed.decided_by_main(world, lambda: _refuse_used_folder(folder))
    dataset, shards = _listing(world, source, config, progress)
    if split_file is None and not dataset.has_splits():
        dataset.split(*ratios, seed=config.seed)  # refuse unsplittable data before decoding
    if not resume:
        config = distributed.decided_by_main(
            world, lambda: _ensemble_within_limit(config, len(dataset), clock, on_plan)
        )
    settings = config.to_dict()
    clf = ImageClassifier(settings.pop("model"), **settings)
    # One decode for everything: the audit's facts, training's cache, no second pass.
    # Under DDP rank 0 alone audits and splits; the others get its split.
    decoded = _images(world, dataset, shards, clf.preprocessing, caching, progress, audit, on_plan)

    def split_on_main() -> tuple[Dataset, Dataset, Dataset]:
        return _split_and_record(
            dataset, decoded, folder, config, source, (ratios, split_file), resume, exist_ok,
            audit, on_audit,
        )  # fmt: skip

    train, val, test = _shared_split(world, dataset, split_on_main)
    phases = {"decode_audit": {"seconds": round(time.perf_counter() - clock, 2)}}
    if lr_auto and not resume:
        tic = time.perf_counter()
        clf.config = distributed.decided_by_main(
            world, lambda: _find_lr(clf, train, val, decoded, folder, source, progress, on_lr)
        )
        phases["lr_find"] = {"seconds": round(time.perf_counter() - tic, 2)}
    clf.fit(
        train,
        val,
        work_dir=files.checkpoints,
        resume=resume,
        progress=progress,
        decoded=decoded,
        started=clock,
        # the drift reference scores val and test, evaluation its split again (no decode)
        eval_images=len(val) + len(test) + (len(test) or len(val)),
        on_plan=on_plan,
        on_epoch=on_epoch,
    )
    if not world.is_main:  # rank 0 evaluates and writes the run's files
        return None
    result, evaluated_on = _evaluate(clf, decoded, val, test, phases)
    result.title = f"imgrec — {folder.name} ({evaluated_on} split)"
    unreadable = clf.skipped + [Skipped(Path(p), reason) for p, reason in result.skipped or []]
    done = finish_run(folder, clf, result, evaluated_on, skipped=[*dataset.skipped, *unreadable])
    return RunResult(
        folder, done.model_path, done.report_path, result, evaluated_on, clf, done.card_path
    )


def _listing(
    world: distributed.World, source: str | Path, config: TrainConfig, progress: bool
) -> tuple[Dataset, ShardSet | None]:
    """The dataset, and the shards that hold it when it is read through shards: object
    storage (written into the cache by rank 0 first) or a shards folder."""
    if not is_url(source):
        return open_listing(source)
    size = ImageClassifier(config.model, **_settings(config)).preprocessing.resize_size
    folder = distributed.decided_by_main(
        world, lambda: str(remote_shards(source, size, progress).root)
    )
    shards = ShardSet.open(folder)
    return shards.dataset(), shards


def _settings(config: TrainConfig) -> dict:
    settings = config.to_dict()
    settings.pop("model")
    return settings


def _images(
    world: distributed.World,
    dataset: Dataset,
    shards: ShardSet | None,
    preprocessing,
    caching: tuple[str, int | None],
    progress: bool,
    with_facts: bool,
    on_plan: Callable[[str], None] | None,
) -> DecodedCache | ShardCache:
    """Training's images: decoded into RAM, or read from disk shards batch by batch, as
    `--cache` says (auto: RAM within the memory budget). A folder streamed from disk is
    written as shards into the cache first, by rank 0."""
    mode, memory = caching
    # every process of a DDP run keeps its own cache: each gets its share of the budget
    budget = memory_budget(memory) // world.local_size
    choice = choose_cache(mode, len(dataset), preprocessing.resize_size, budget)
    if choice.reason and on_plan is not None and world.is_main:
        on_plan(choice.reason)
    if shards is None and choice.mode == "ram":
        decoded = DecodedCache(
            dataset.paths, preprocessing, progress=progress, with_facts=with_facts
        )
        decoded.build()
        return decoded
    if shards is None:
        folder = distributed.decided_by_main(
            world,
            lambda: str(local_shards(dataset, preprocessing.resize_size, progress).root),
        )
        cache = shards_for_dataset(ShardSet.open(folder), dataset, preprocessing, progress)
    else:
        cache = shards.cache(preprocessing, dataset.paths, progress=progress)
    cache.build()
    return DecodedCache.decoded_from(cache, progress) if choice.mode == "ram" else cache


def _shared_split(
    world: distributed.World,
    dataset: Dataset,
    split_on_main: Callable[[], tuple[Dataset, Dataset, Dataset]],
) -> tuple[Dataset, Dataset, Dataset]:
    """(train, val, test) as rank 0 chose them; under DDP they travel as paths, and every
    process, rank 0 included, rebuilds them the same way, so their order is the same."""
    if not world.distributed:
        return split_on_main()

    def names() -> dict[str, str]:
        parts = zip(("train", "val", "test"), split_on_main(), strict=True)
        return {str(sample.path): name for name, part in parts for sample in part}

    chosen = distributed.decided_by_main(world, names)
    assigned = dataset.with_splits({Path(p): name for p, name in chosen.items()})
    return assigned.subset("train"), assigned.subset("val"), assigned.subset("test")


def _refuse_used_folder(folder: Path) -> None:
    if folder.exists() and any(folder.iterdir()):
        prepare_folder(folder, resume=False, exist_ok=False)


def _split_and_record(
    dataset: Dataset,
    decoded: DecodedCache,
    folder: Path,
    config: TrainConfig,
    source: str | Path,
    split_from: tuple[tuple[float, float, float], Path | None],
    resume: bool,
    exist_ok: bool,
    audit: bool,
    on_audit: Callable[[AuditResult], None] | None,
) -> tuple[Dataset, Dataset, Dataset]:
    """The quick audit (unless resuming), the split, and the run folder's first files:
    audit, config and split. The folder is (re)made only now, so bad data leaves none."""
    checked = quick_audit(dataset, decoded) if audit and not resume else None
    if checked is not None and on_audit is not None:
        on_audit(checked)
    ratios, split_file = split_from
    train, val, test = split_data(dataset, ratios, split_file, config.seed, checked)
    if not resume:
        prepare_folder(folder, resume, exist_ok)
    if checked is not None:
        write_audit(folder, checked, _crossing(checked, train, val, test))
    write_config(folder, config.to_dict(), source)
    write_split_file(RunFiles(folder).split, {"train": train, "val": val, "test": test})
    return train, val, test


def _ensemble_within_limit(
    config: TrainConfig, n_images: int, clock: float, on_plan: Callable[[str], None] | None
) -> TrainConfig:
    """An ensemble under a time limit keeps the members whose forward passes fit it
    (train/ensemble_budget.py); the config then names the ensemble actually trained."""
    from imgrec.models.ensemble import is_ensemble

    if config.time_limit is None or not is_ensemble(config.model):
        return config
    from imgrec.train.ensemble_budget import members_within

    left = config.time_limit - (time.perf_counter() - clock)
    choice = members_within(config.model, n_images, left)
    if choice.reason is None:
        return config
    if on_plan is not None:
        on_plan(choice.reason)
    return TrainConfig.from_dict({**config.to_dict(), "model": choice.model})


def _evaluate(
    clf: ImageClassifier, decoded: DecodedCache, val: Dataset, test: Dataset, phases: dict
) -> tuple[EvaluationResult, str]:
    """Score the test split (else validation; returned with the split's name) and keep the
    drift reference of the held-out images; the run's phases, this one included, go into the
    metrics and the model file."""
    tic = time.perf_counter()
    held_out = [*val.paths, *test.paths]
    seed = clf.config.seed
    ran: dict[Path, np.ndarray] = {}  # probabilities the reference computed, reused below
    reference = reference_summary(clf, decoded, held_out, seed, ran)
    clf.metadata["monitor"] = {"reference": reference}
    evaluated_on, target = ("test", test) if len(test) else ("val", val)
    # ONNX Runtime where it exports (the session the drift reference just built): 2-3x eager
    # PyTorch on a CPU, within 1e-5 of it (tests/test_export.py checks the parity)
    result = clf.evaluate(target, engine="auto", decoded=decoded, known=ran)
    result.info = {**(result.info or {}), "images scored": scored_note(len(test), len(val))}
    phases = {**phases, **clf.metadata.get("phases", {})}
    phases["evaluation"] = {"seconds": round(time.perf_counter() - tic, 2), "split": evaluated_on}
    clf.metadata["phases"] = result.metrics["phases"] = phases
    return result, evaluated_on


def scored_note(n_test: int, n_val: int) -> str:
    """Which images a run's figures come from, and whether those images chose anything."""
    if n_test:
        return (
            f"the {n_test} test images, which chose nothing (the best epoch and settings were "
            f"chosen on {n_val} validation images)"
        )
    return (
        f"the {n_val} validation images, which also chose the best epoch and settings: the "
        "figures are optimistic (give a test split for an unbiased one)"
    )


def _find_lr(
    clf: ImageClassifier,
    train: Dataset,
    val: Dataset,
    decoded: DecodedCache,
    folder: Path,
    source: str | Path,
    progress: bool,
    on_lr: Callable[[float], None] | None,
) -> TrainConfig:
    """A learning-rate range test on the training split sets `clf`'s lr (plot lr_find.png)."""
    from imgrec.train.lr_find import find_lr, plot_lr

    finding = find_lr(
        ImageClassifier(**clf.config.to_dict()), train, val, decoded, progress=progress
    )
    plot_lr(finding, RunFiles(folder).lr_find)
    clf.config = TrainConfig.from_dict({**clf.config.to_dict(), "lr": finding.suggestion})
    write_config(folder, clf.config.to_dict(), source)
    if on_lr is not None:
        on_lr(finding.suggestion)
    return clf.config


def reference_summary(
    clf: ImageClassifier,
    decoded: DecodedCache,
    held_out: list[Path],
    seed: int,
    probabilities: dict[Path, np.ndarray] | None = None,
) -> dict:
    """The validation and test images (the weights never trained on them) as the model sees
    them, kept in the model file as the reference of `imgrec drift`: one forward pass, no
    decode. Both splits, because the validation split alone can be small (15% of train)."""
    from imgrec.monitor.image_window import reference_window

    window = reference_window(
        clf.batch_predictor("auto"),
        decoded.subset(held_out),
        "held-out images",
        seed=seed,
        probabilities=probabilities,
    )
    return {**window.to_metadata(), "temperature": clf.temperature}
