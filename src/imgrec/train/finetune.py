"""Phase 2 of transfer learning: fine-tuning on Lightning, checkpointed every epoch.

Imported only when phase 2 runs, so phase 1 (seconds) does not wait for Lightning to load.
"""

from __future__ import annotations

import logging
import math
import signal
import time
import warnings

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from safetensors.torch import load_file
from torch.utils.data import DataLoader, WeightedRandomSampler

from imgrec.config import TrainConfig
from imgrec.data.cache import ImageTensorDataset
from imgrec.data.transforms import eval_transform, train_transform
from imgrec.models.anatomy import freeze_early_layers
from imgrec.runtime import device, usable_cpus
from imgrec.train import distributed
from imgrec.train.callbacks import KeepBestAndHistory
from imgrec.train.distributed import World
from imgrec.train.head import class_weights
from imgrec.train.job import Fitting
from imgrec.train.module import FineTuneModule
from imgrec.train.precision import training_dtype
from imgrec.train.state import TrainingInterrupted


def default_workers(on_gpu: bool = False, processes: int = 1) -> int:
    """Loader worker processes for one of `processes` training processes on this machine.

    On a CPU the cores train: none on small machines, where the images are already decoded
    and a worker only competes with the training threads (measured 2x slower with one worker
    on 2 cores), else a quarter of the cores, at most 4. On a GPU the cores only augment, and
    the augmentation is what limits: on an H200 with 16 cores, 4 workers gave 726 images/s
    and 15 gave 1,682 (the default preset at 224 px), while EfficientNet-Lite0 itself trains
    at 4,000-7,000; so every core but one per process."""
    cores = usable_cpus() // max(1, processes)
    if on_gpu:
        return max(0, cores - 1)
    return 0 if cores <= 4 else min(4, cores // 4)


def balanced_sampler(
    targets: list[int], num_classes: int, generator: torch.Generator
) -> WeightedRandomSampler:
    """Draw an epoch's worth of training images (with replacement) with every class equally
    likely, so a minority class is seen as often as a majority one; seeded by `generator`."""
    per_class = class_weights(targets, num_classes)
    weights = per_class[torch.as_tensor(targets, dtype=torch.long)].double()
    return WeightedRandomSampler(weights, len(targets), replacement=True, generator=generator)


def _time_left(job: Fitting) -> dict | None:
    """Lightning's max_time: what the time limit leaves fine-tuning now, after the run so far
    and before the evaluation that follows (see Fitting.finetune_until)."""
    if job.finetune_until is None:
        return None
    return {"seconds": max(1.0, job.finetune_until - time.perf_counter())}


def _time_used(job: Fitting):
    """The fraction spent of the time from the run's start to fine-tuning's deadline, as a
    clock for the LR schedule (or None without a time limit)."""
    if job.finetune_until is None:
        return None
    started = job.started
    span = max(1e-9, job.finetune_until - started)
    return lambda: (time.perf_counter() - started) / span


def per_process_batch(batch_size: int, world: World) -> int:
    """`--batch-size` is the batch of one optimiser step, whatever the number of processes:
    each of N processes takes 1/N of it (rounded up), so a run's settings mean the same
    with --devices 1 or 4 and its learning rate needs no rescaling."""
    return max(1, math.ceil(batch_size / world.size))


def _loaders(job: Fitting) -> tuple[DataLoader, DataLoader, list[int]]:
    """Training and validation loaders over the decoded caches, and the training targets.

    Under DDP, Lightning swaps in its distributed sampler (wrapping the balanced one): each
    process then sees its 1/N of every epoch, seeded, so a world size gives one result."""
    config, preprocessing = job.config, job.preprocessing
    workers = (
        config.workers
        if config.workers is not None
        else default_workers(device().type == "cuda", job.world.local_size)
    )
    loader_args = {
        "num_workers": workers,
        "persistent_workers": workers > 0,
        "pin_memory": device().type == "cuda",  # page-locked batches copy to a GPU faster
    }
    train_data = ImageTensorDataset(
        job.train_cache, job.train_targets, train_transform(preprocessing, config.augment)
    )
    val_data = ImageTensorDataset(job.val_cache, job.val_targets, eval_transform(preprocessing))
    generator = torch.Generator().manual_seed(config.seed)
    num_classes = job.model.get_classifier().out_features
    targets = [train_data.targets[i] for i in train_data.indices]
    order = (
        {"sampler": balanced_sampler(targets, num_classes, generator)}
        if config.balance == "sampler"
        else {"shuffle": True, "generator": generator}
    )
    batch = per_process_batch(config.batch_size, job.world)
    train_loader = DataLoader(train_data, batch_size=batch, **order, **loader_args)
    val_loader = DataLoader(val_data, batch_size=batch, **loader_args)
    return train_loader, val_loader, targets


def _trainer(job: Fitting, config: TrainConfig, from_scratch: bool) -> L.Trainer:
    """Lightning's Trainer: best weights and history kept, early stopping, last.ckpt."""
    state = job.state
    # planned epochs stop at the first that does not beat the best so far (the head included);
    # epochs asked for stop after `patience` without a better score
    stopping = (
        []
        if job.stop_unless_better
        else [EarlyStopping(monitor="val_score", mode="max", patience=config.patience)]
    )
    callbacks = [
        KeepBestAndHistory(
            state,
            job.started,
            stop_unless_better=job.stop_unless_better,
            best_score=distributed.broadcast(job.world, (state.best() or {}).get("val_score")),
        ),
        *stopping,
        ModelCheckpoint(
            dirpath=state.folder,
            filename="last",
            monitor=None,
            save_top_k=1,
            enable_version_counter=False,
        ),
    ]
    if job.progress:
        callbacks.append(RichProgressBar())
    target = device()
    precision = {torch.bfloat16: "bf16-mixed", torch.float16: "16-mixed", None: "32-true"}[
        training_dtype(config.precision, target, from_scratch)
    ]
    world = job.world
    return L.Trainer(
        max_epochs=config.epochs,
        max_time=_time_left(job),
        accelerator="gpu" if target.type == "cuda" else "cpu",
        devices=world.local_size,
        num_nodes=world.nodes,
        strategy="ddp" if world.distributed else "auto",
        precision=precision,
        logger=False,
        callbacks=callbacks,
        enable_progress_bar=job.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=state.folder,
        deterministic=False,
    )


def fine_tune(job: Fitting, resume: bool, from_scratch: bool) -> list[int]:
    """Fine-tune `job.model` in place from the best weights so far; on resume, from last.ckpt.

    Returns the training batches each process ran (one entry per rank). Under DDP only rank
    0 loads the best weights: DDP copies rank 0's to the others when it wraps the model."""
    model, config, state, world = job.model, job.config, job.state, job.world
    L.seed_everything(config.seed, workers=True, verbose=False)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no device banners/tips
    if state.best() is not None:
        model.load_state_dict(load_file(state.best_weights))
    train_loader, val_loader, targets = _loaders(job)
    if not from_scratch:
        freeze_early_layers(model, config.freeze_stride)
    if from_scratch:
        config = TrainConfig.from_dict({**config.to_dict(), "backbone_lr_mult": 1.0})
    per_process = math.ceil(len(targets) / world.size)
    total_steps = config.epochs * math.ceil(
        per_process / per_process_batch(config.batch_size, world)
    )
    num_classes = model.get_classifier().out_features
    weight = class_weights(targets, num_classes) if config.balance == "weights" else None
    module = FineTuneModule(
        model,
        config,
        total_steps,
        freeze_bn=not from_scratch,
        class_weight=weight,
        time_used=_time_used(job),
    )
    trainer = _trainer(job, config, from_scratch)
    previous = signal.getsignal(signal.SIGINT)
    last = state.folder / "last.ckpt"
    # rank 0's checkpoint for every process: a resumed DDP run needs the run folder on a
    # filesystem all nodes share (as Lightning's own resume does)
    ckpt = distributed.broadcast(world, last if resume and last.exists() else None)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            warnings.filterwarnings("ignore", ".*The number of training batches.*")
            warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode.*")  # frozen BN
            warnings.filterwarnings("ignore", ".*exists and is not empty.*")  # resume folder
            warnings.filterwarnings("ignore", ".*LeafSpec.*")
            trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt, weights_only=True)
    except (RuntimeError, torch.distributed.DistError) as exc:
        if world.distributed and distributed.lost_peer(exc):
            raise distributed.PeerLost(
                f"another training process stopped ({distributed.first_line(exc)}); finished "
                f"epochs are saved in {state.folder}: continue with --resume"
            ) from None
        raise
    except SystemExit as stop:
        if trainer.interrupted:
            raise TrainingInterrupted(
                f"training interrupted; finished epochs are saved in {state.folder}."
            ) from stop
        raise
    finally:  # Lightning leaves its own handler installed: put back what was there
        signal.signal(signal.SIGINT, previous or signal.default_int_handler)
    return distributed.gather_objects(world, module.batches_seen)
