"""The learning-rate range test (Lightning's Tuner.lr_find) on the fine-tuning phase.

The rate grows exponentially over ~100 training steps while the loss is recorded; the
suggestion is the steepest descent of the smoothed loss curve (Smith, "Cyclical Learning Rates
for Training Neural Networks", 2017). For transfer learning the test runs after phase 1, on
the network fine-tuning will start from, so the suggestion is for phase 2.
"""

from __future__ import annotations

import logging
import math
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from imgrec.errors import ImgrecError
from imgrec.models.families import require_learning_rate


@dataclass
class LRFinding:
    suggestion: float
    lrs: list[float]
    losses: list[float]


def find_lr(
    classifier,
    train,
    val,
    decoded=None,
    steps: int = 100,
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    progress: bool = True,
) -> LRFinding:
    """Run the range test for `classifier` (an unfitted ImageClassifier) on `train`."""
    from torch.utils.data import DataLoader

    from imgrec.data.cache import DecodedCache, ImageTensorDataset
    from imgrec.data.transforms import train_transform
    from imgrec.models.anatomy import freeze_early_layers
    from imgrec.train.module import FineTuneModule

    config = classifier.config
    require_learning_rate(config.model)
    from_scratch = config.weights == "none"
    model = _start_network(classifier, train, val, decoded, progress)
    cache = decoded.subset(train.paths) if decoded is not None else None
    if cache is None:
        cache = DecodedCache(train.paths, classifier.preprocessing, progress=progress)
    cache.build()
    data = ImageTensorDataset(
        cache, train.targets(), train_transform(classifier.preprocessing, config.augment)
    )
    if len(data) < config.batch_size:
        raise ImgrecError("too few readable training images for a learning-rate test.")
    loader = DataLoader(
        data,
        batch_size=config.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(config.seed),
    )
    if not from_scratch:
        freeze_early_layers(model, config.freeze_stride)  # as fine-tuning will
    module = FineTuneModule(model, config, total_steps=steps, freeze_bn=not from_scratch)
    module.lr = config.lr
    finder = _range_test(module, loader, steps, min_lr, max_lr, progress)
    if finder is None or finder.suggestion() is None:
        raise ImgrecError("the learning-rate test found no clear slope; keep the default.")
    lrs = [float(x) for x in finder.results["lr"]]
    losses = [float(x) for x in finder.results["loss"]]
    if not all(math.isfinite(x) for x in lrs):
        raise ImgrecError("the learning-rate test diverged; keep the default.")
    return LRFinding(float(finder.suggestion()), lrs, losses)


def _start_network(classifier, train, val, decoded, progress: bool) -> torch.nn.Module:
    """The network fine-tuning will start from: after phase 1 (the head on frozen features),
    or freshly initialised when training from scratch."""
    config = classifier.config
    if config.weights == "none":
        from imgrec.models.registry import create_model

        return create_model(classifier.spec, len(train.classes), "none", config.dropout)
    classifier.config = config.__class__.from_dict({**config.to_dict(), "epochs": 0, "head": True})
    try:
        with tempfile.TemporaryDirectory(prefix="imgrec-lr-") as tmp:
            classifier.fit(train, val, work_dir=Path(tmp), progress=progress, decoded=decoded)
    finally:
        classifier.config = config
    return classifier.network


def _range_test(module, loader, steps: int, min_lr: float, max_lr: float, progress: bool):
    """Lightning's learning-rate finder over `steps` batches (exponentially rising rate)."""
    import lightning as L
    from lightning.pytorch.tuner import Tuner

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="imgrec-lr-") as tmp:
        trainer = L.Trainer(
            accelerator="cpu" if not torch.cuda.is_available() else "gpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=progress,
            default_root_dir=tmp,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            finder = Tuner(trainer).lr_find(
                module,
                train_dataloaders=loader,
                min_lr=min_lr,
                max_lr=max_lr,
                num_training=steps,
                early_stop_threshold=4.0,
                update_attr=False,
            )
    return finder


def plot_lr(finding: LRFinding, path: Path) -> Path:
    """Loss against learning rate (log scale) with the suggestion marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(finding.lrs, finding.losses, color="#2563eb")
    ax.axvline(finding.suggestion, color="#b91c1c", linestyle="--")
    ax.annotate(
        f"suggested {finding.suggestion:.2g}",
        (finding.suggestion, max(finding.losses)),
        xytext=(6, -12),
        textcoords="offset points",
        color="#b91c1c",
    )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log)")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_title("learning-rate range test")
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
