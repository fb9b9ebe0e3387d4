"""Two-phase transfer learning with checkpoints after every epoch, resumable after a crash."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from imgrec.config import TrainConfig
from imgrec.data.cache import DecodedCache, ImageTensorDataset
from imgrec.data.dataset import Dataset, Skipped
from imgrec.data.preprocess import Preprocessing
from imgrec.data.transforms import eval_transform, train_transform
from imgrec.errors import ImgrecError
from imgrec.models.families import get_family
from imgrec.models.mlp_head import MLPHead
from imgrec.runtime import device, torch_threads
from imgrec.train import distributed
from imgrec.train.features import backbone_features, job_features
from imgrec.train.head import class_weights, fit_head, fit_mlp_head
from imgrec.train.job import Fitting
from imgrec.train.plan import DEFAULT_FINETUNE_BUDGET, MIN_ERRORS, decide, errors_left
from imgrec.train.precision import training_dtype
from imgrec.train.state import RunState
from imgrec.train.steptime import StepTimes, dataset_batches, measure_steps

log = logging.getLogger(__name__)


@dataclass
class FitOutcome:
    history: list[dict]
    best: dict
    skipped: list[Skipped] = field(default_factory=list)
    # seconds and result per phase ("head" or "fit", "finetune" with its plan): see fit_model
    phases: dict = field(default_factory=dict)


PHASES_FILE = "phases.json"  # in the work folder: what each phase took, and the plan


def fit_model(
    model: torch.nn.Module,
    preprocessing: Preprocessing,
    train: Dataset,
    val: Dataset,
    config: TrainConfig,
    work_dir: Path,
    resume: bool = False,
    progress: bool = True,
    decoded: DecodedCache | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    started: float | None = None,
    eval_images: int = 0,
    on_plan: Callable[[str], None] | None = None,
) -> FitOutcome:
    """Train `model` in place and leave the best validation weights loaded in it.

    Everything needed to continue lives in `work_dir`: the best weights so far, history.csv,
    Lightning's last.ckpt and phases.json. With `resume`, finished phases and epochs are not
    repeated. `started` (a time.perf_counter() value, default now) is when the run's clock
    started, so that `config.time_limit` covers what came before the fit; `eval_images` are
    the images the caller will score after it, whose time fine-tuning leaves them. With
    `config.auto_finetune`, the plan's one-line reason goes to `on_plan` (see _plan_finetune).

    Started as one of several processes (train/distributed.py), every process computes its
    share of the frozen features and fine-tunes under DDP; rank 0 alone reads and writes
    `work_dir` and takes every decision, which the others receive (they keep their own
    throwaway state), and every process returns rank 0's outcome.
    """
    torch.manual_seed(config.seed)
    world = distributed.current()
    state = _process_state(world, config, work_dir, on_epoch, resume)
    history = distributed.broadcast(world, state.history())
    clock = time.perf_counter() if started is None else started
    started = clock - (history[-1]["seconds"] if history else 0.0)

    train_targets = train.targets()
    val_targets = val.targets()
    if decoded is not None:  # the caller decoded everything already (the workflow does)
        train_cache, val_cache = decoded.subset(train.paths), decoded.subset(val.paths)
    else:
        train_cache = DecodedCache(train.paths, preprocessing, progress=progress)
        val_cache = DecodedCache(val.paths, preprocessing, progress=progress)
    skipped = train_cache.build() + val_cache.build()
    if not train_cache.valid_indices or not val_cache.valid_indices:
        raise ImgrecError("no readable images left in the training or validation split.")

    job = Fitting(
        model,
        preprocessing,
        train_cache,
        val_cache,
        train_targets,
        val_targets,
        config,
        state,
        started,
        progress and world.is_main,
        world=world,
    )
    phases = distributed.broadcast(world, _read_phases(state) if resume else {})
    if get_family(config.model).traits.sklearn:
        if state.best() is None:
            from imgrec.train.classic import fit_classic  # loads scikit-learn

            tic = time.perf_counter()
            fit_classic(job)
            phases["fit"] = {"seconds": time.perf_counter() - tic}
        return _outcome(model, state, skipped, phases)
    from_scratch = config.weights == "none"
    if distributed.broadcast(world, state.best() is None) and not from_scratch and config.head:
        tic = time.perf_counter()
        _fit_head_phase(job)
        phases["head"] = {"seconds": time.perf_counter() - tic}
        _write_phases(state, phases)

    history = distributed.broadcast(world, state.history())
    finetuned_epochs = sum(1 for row in history if row["phase"] == "finetune")
    if config.epochs > finetuned_epochs:
        _finetune_phase(job, phases, finetuned_epochs, resume, eval_images, on_plan)
    outcome = _outcome(model, state, skipped, phases) if world.is_main else None
    return distributed.broadcast(world, outcome)


def _process_state(
    world: distributed.World,
    config: TrainConfig,
    work_dir: Path,
    on_epoch: Callable[[dict], None] | None,
    resume: bool,
) -> RunState:
    """Rank 0's state is the run's work folder; another process of a DDP run keeps a
    throwaway one, removed with it, since nothing it writes is the run's."""
    if world.distributed and get_family(config.model).traits.sklearn:
        raise ImgrecError(
            f"{config.model} is fitted by scikit-learn in one process; train it without "
            "--devices/--num-nodes (they split deep-network training across processes)."
        )
    if world.is_main:
        return _work_state(work_dir, on_epoch, resume)
    scratch = Path(tempfile.mkdtemp(prefix=f"imgrec-rank{world.rank}-"))
    state = RunState(scratch)
    weakref.finalize(state, shutil.rmtree, scratch, True)
    return state


def _work_state(work_dir: Path, on_epoch: Callable[[dict], None] | None, resume: bool) -> RunState:
    """The work folder's state: emptied for a fresh run, trimmed to what checkpoints back for
    a resumed one."""
    state = RunState(work_dir, on_epoch)
    if not resume:
        for stale in (
            state.history_path,
            state.best_info,
            state.best_weights,
            work_dir / "last.ckpt",
            work_dir / PHASES_FILE,
        ):
            stale.unlink(missing_ok=True)
    else:
        _forget_unfinished(state)
    return state


def _finetune_phase(
    job: Fitting,
    phases: dict,
    finetuned_epochs: int,
    resume: bool,
    eval_images: int,
    on_plan: Callable[[str], None] | None,
) -> None:
    """Phase 2, as planned (see _plan_finetune); its time is added to phases["finetune"]."""
    tic = time.perf_counter()
    job = _plan_finetune(job, phases, eval_images, on_plan)
    if job.config.epochs > finetuned_epochs:
        from imgrec.train.finetune import fine_tune  # loads Lightning

        batches = fine_tune(job, resume, job.config.weights == "none")
        if job.world.distributed:
            phases["finetune"]["batches_per_process"] = batches
    done = phases["finetune"]
    done["seconds"] = done.get("seconds", 0.0) + time.perf_counter() - tic
    _write_phases(job.state, phases)


def _outcome(
    model: torch.nn.Module, state: RunState, skipped: list[Skipped], phases: dict
) -> FitOutcome:
    """Load the best weights so far into `model` and describe the run."""
    best = state.best()
    if best is None:
        raise ImgrecError("training produced no validated epoch; check the data and settings.")
    model.load_state_dict(load_file(state.best_weights))
    history = state.history()
    return FitOutcome(
        history=history, best=best, skipped=skipped, phases=_phase_results(phases, history)
    )


def _best_row(history: list[dict], phase: str) -> dict | None:
    rows = [row for row in history if row["phase"] == phase]
    return max(rows, key=lambda row: row["val_score"]) if rows else None


def _phase_results(phases: dict, history: list[dict]) -> dict:
    """`phases` with what each phase reached on the validation split (from the history)."""
    result = {name: dict(value) for name, value in phases.items()}
    for value in result.values():
        if "seconds" in value:
            value["seconds"] = round(value["seconds"], 2)
    head = _best_row(history, "head")
    for name, rows in (("head", "head"), ("fit", "search")):  # fit: a scikit-learn search
        best_row = _best_row(history, rows)
        if name in result and best_row is not None:
            result[name]["val_acc"] = best_row["val_acc"]
    if "finetune" in result:
        best = _best_row(history, "finetune")
        done = result["finetune"]
        done["epochs"] = sum(1 for row in history if row["phase"] == "finetune")
        if best is not None:
            done["best_epoch"] = best["epoch"]
            done["val_acc"] = best["val_acc"]
            done["improved"] = head is None or best["val_score"] > head["val_score"]
    return result


def _read_phases(state: RunState) -> dict:
    path = state.folder / PHASES_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_phases(state: RunState, phases: dict) -> None:
    (state.folder / PHASES_FILE).write_text(json.dumps(phases, indent=2) + "\n")


def auto_applies(config: TrainConfig, history: list[dict]) -> bool:
    """Whether the run decides fine-tuning's epochs itself: asked for (auto_finetune), and a
    pretrained network fine-tuned after a head phase (from scratch, or --no-head, the
    epochs asked for are run)."""
    has_head = any(row["phase"] == "head" for row in history)
    return (
        config.auto_finetune
        and has_head
        and config.weights != "none"
        and get_family(config.model).traits.backprop
    )


def _plan_finetune(
    job: Fitting, phases: dict, eval_images: int, on_plan: Callable[[str], None] | None
) -> Fitting:
    """The fine-tuning `job`: its epochs (planned, with `auto_finetune`), its deadline (what
    the time limit leaves after an estimate of the evaluation of `eval_images`) and its
    stopping rule. The plan is kept in phases["finetune"]["plan"], so a resumed run keeps it."""
    config = job.config
    plan = phases.get("finetune", {}).get("plan")
    if plan is None:  # measured on rank 0 alone: every process must run the same epochs
        plan = distributed.decided_by_main(job.world, lambda: _make_plan(job, eval_images))
        phases["finetune"] = {"plan": plan}
        _write_phases(job.state, phases)
        if plan["auto"] and on_plan is not None and job.world.is_main:
            on_plan(plan["reason"])
    until = None
    if config.time_limit is not None:
        until = job.started + config.time_limit - plan.get("reserve_seconds", 0.0)
    return dataclasses.replace(
        job,
        config=dataclasses.replace(config, epochs=plan["epochs"]),
        finetune_until=until,
        stop_unless_better=plan["auto"],
    )


def _make_plan(job: Fitting, eval_images: int) -> dict:
    """Decide fine-tuning's epochs (train/plan.py) on measured step times, or keep the epochs
    asked for; either way, estimate what evaluation will need of a time limit."""
    config = job.config
    n_train, n_val = len(job.train_cache.valid_indices), len(job.val_cache.valid_indices)
    limited = config.time_limit is not None
    if not auto_applies(config, job.state.history()):
        plan = {"auto": False, "epochs": config.epochs, "reason": _asked(config)}
        if limited and eval_images > 0:
            times = _measure(job, steps=0)
            plan["reserve_seconds"] = times.eval_seconds(eval_images)
        return plan
    head = _best_row(job.state.history(), "head") or {"val_acc": 0.0}
    plan = {
        "auto": True,
        "head_val_acc": head["val_acc"],
        "val_images": n_val,
        "errors_left": errors_left(head["val_acc"], n_val),
    }
    if plan["errors_left"] < MIN_ERRORS:  # nothing to measure: too few errors to fix
        epochs, reason = decide(head["val_acc"], n_val, 0.0, 0.0, config.epochs)
        return {**plan, "epochs": epochs, "reason": reason}
    times = _measure(job, steps=2)
    reserve = times.eval_seconds(eval_images)
    left = (
        config.time_limit - (time.perf_counter() - job.started) - reserve
        if limited
        else DEFAULT_FINETUNE_BUDGET
    )
    epoch = times.epoch_seconds(n_train, n_val)
    epochs, reason = decide(head["val_acc"], n_val, epoch, left, config.epochs, limited)
    return {
        **plan,
        "epochs": epochs,
        "reason": reason,
        "epoch_seconds": epoch,
        "step_seconds": times.train_step,
        "eval_seconds_per_image": times.eval_batch / times.batch_size,
        "seconds_available": left,
        "reserve_seconds": reserve,
    }


def _asked(config: TrainConfig) -> str:
    if config.weights == "none":
        return f"training from scratch: up to {config.epochs} epochs"
    return f"fine-tuning up to {config.epochs} epochs as asked (epochs={config.epochs})"


def _measure(job: Fitting, steps: int) -> StepTimes:
    """Step times of this job's model on its own data (train/steptime.py)."""
    config, p = job.config, job.preprocessing
    train = ImageTensorDataset(
        job.train_cache, job.train_targets, train_transform(p, config.augment)
    )
    val = ImageTensorDataset(job.val_cache, job.val_targets, eval_transform(p))
    return measure_steps(
        job.model,
        dataset_batches(train, config.batch_size),
        dataset_batches(val, config.batch_size),
        config.batch_size,
        config.freeze_stride if config.weights != "none" else 0,
        config.label_smoothing,
        steps=steps,
        dtype=training_dtype(config.precision, device(), from_scratch=config.weights == "none"),
    )


def _forget_unfinished(state: RunState) -> None:
    """Drop history rows that the checkpoints do not back, before resuming.

    A row is written just before Lightning saves last.ckpt, so a kill in between would
    otherwise repeat that epoch in the history; an unfinished head phase is redone whole.
    """
    last = state.folder / "last.ckpt"
    done = (
        torch.load(last, map_location="cpu", weights_only=True)["epoch"] + 1 if last.exists() else 0
    )
    head_done = state.best() is not None
    state.keep_history(
        lambda row: row["epoch"] <= done if row["phase"] == "finetune" else head_done
    )


def _fit_head_phase(job: Fitting) -> None:
    """The head on frozen features. Under DDP every process computes its share of the
    features (train/features.py) and rank 0, which alone holds them all, fits the head: a
    full-batch fit of a few seconds gains nothing from splitting, and DDP's start copies
    rank 0's weights to the others before fine-tuning."""
    model = job.model
    model.eval()  # as extract_features always left it, even when every feature is cached
    train_x, train_y, val_x, val_y = job_features(
        job,
        backbone_features(
            model, job.config.model, job.config.weights, job.preprocessing, job.progress
        ).shared_by(job.world),
    )
    if not job.world.is_main:
        return
    head = model.get_classifier()
    # both balance modes weight the head fit: a full-batch fit has no sampling to balance
    weight = class_weights(train_y, head.out_features) if job.config.balance != "none" else None
    if isinstance(head, MLPHead):
        with torch_threads(1):  # small tensors: threads only wait on each other
            best = fit_mlp_head(
                head,
                train_x,
                train_y,
                val_x,
                val_y,
                job.config,
                job.state.append_history,
                job.started,
                weight,
            )
    else:
        best = fit_head(
            head, train_x, train_y, val_x, val_y, job.state.append_history, job.started, weight
        )
    job.state.save_best(model.state_dict(), best)
