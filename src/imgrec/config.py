"""Training settings and every choice list, declared once.

TrainConfig is written to config.json and into the model file; the CLI's choices, the model
card's "settings" section and the data layer's augmentation all read the lists below. No torch
here, so `imgrec --help` can import it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields

from imgrec.errors import ImgrecError

AUGMENT_PRESETS = ("none", "light", "default", "strong")  # weakest to strongest
MIXES = ("none", "mixup", "cutmix", "both")
BALANCES = ("none", "weights", "sampler")
OPTIMIZERS = ("adamw", "sgd")
WEIGHTS = ("imagenet", "none")
ENGINES = ("auto", "onnx", "torch")  # how a model runs: see imgrec.infer.engine
PLACES = ("local", "ray")  # where a batch job runs: see imgrec.infer.jobs
PRECISIONS = ("auto", "32", "bf16", "16")  # arithmetic of training steps: see runtime.py
PRESETS = ("fast", "default", "best")  # what each sets: imgrec.models.families.PRESET_SETTINGS


@dataclass
class TrainConfig:
    """Defaults reach a good transfer-learning result with zero flags on a CPU.

    Phase 1 fits the new head on frozen, cached backbone features as logistic regression
    (seconds; `head=False` skips it); phase 2 unfreezes
    the backbone with a 10x lower learning rate, warm-up + cosine, and early stopping. Layers up
    to stride `freeze_stride` stay frozen (0 = none): generic features, most of the CPU cost.

    `mix` adds MixUp and/or CutMix to phase 2's batches. Off by default: on a few hundred
    images it slows convergence more than it regularises within the short default schedule.
    `mix_alpha` is the Beta(alpha, alpha) concentration of the mixing ratio; 1.0 (a uniform
    ratio) is the CutMix paper's value and torchvision's default for both, so "both" needs a
    single knob; 0.2-0.4 (the mixup paper's ImageNet range) mixes more gently.
    `precision` "auto" trains in bf16 mixed precision on GPUs that have it (fp16 on older
    ones) and in float32 on CPUs, except from scratch on a CPU with native bf16; "32",
    "bf16" and "16" force one.
    `balance` counters class imbalance: "weights" weights the training loss of both phases by
    inverse class frequency; "sampler" draws phase 2's batches class-balanced instead (phase 1,
    a full-batch fit, uses the weights). Validation and model selection stay unweighted.

    `auto_finetune` (the default) lets the run decide after phase 1 whether phase 2 can pay and
    for how many epochs, at most `epochs` (train/plan.py: the errors the head leaves on the
    validation split and the measured time of an epoch against the time left); it then stops
    at the first epoch that does not beat the best so far, the head included. Giving `epochs`
    (ImageClassifier, train_config, `imgrec train --epochs`) turns it off unless it is given
    too: `epochs` is then the number to run, with early stopping after `patience` epochs.
    """

    model: str = "efficientnet_lite0"
    weights: str = "imagenet"
    augment: str = "default"
    mix: str = "none"
    mix_alpha: float = 1.0
    balance: str = "none"
    optimizer: str = "adamw"
    lr: float = 5e-4
    backbone_lr_mult: float = 0.1
    head: bool = True
    epochs: int = 6
    patience: int = 2
    warmup_fraction: float = 0.15
    weight_decay: float = 0.01
    dropout: float = 0.2
    label_smoothing: float = 0.1
    batch_size: int = 16
    precision: str = "auto"
    freeze_stride: int = 8
    seed: int = 0
    workers: int | None = None
    image_size: int | None = None  # input size; None = the backbone's own
    auto_finetune: bool = True  # decide fine-tuning's epochs from measurements (see above)
    # seconds for the whole run: `imgrec train` counts decode, audit, head, fine-tuning and
    # evaluation (a bare fit, the fit); fine-tuning gets what is left after an estimate of
    # evaluation, and the best epoch so far is kept
    time_limit: float | None = None

    def __post_init__(self) -> None:
        choices = {
            "optimizer": ("optimizer", OPTIMIZERS),
            "weights": ("weights", WEIGHTS),
            "augment": ("augmentation preset", AUGMENT_PRESETS),
            "mix": ("mix", MIXES),
            "balance": ("balance", BALANCES),
            "precision": ("precision", PRECISIONS),
        }
        for field, (what, allowed) in choices.items():
            value = getattr(self, field)
            if value not in allowed:
                raise ImgrecError(f"unknown {what} '{value}'; use one of {', '.join(allowed)}.")
        checks = {
            "lr": self.lr > 0,
            "mix_alpha": self.mix_alpha > 0,
            "backbone_lr_mult": 0 <= self.backbone_lr_mult <= 1,
            "epochs": self.epochs >= 0,
            "patience": self.patience >= 1,
            "warmup_fraction": 0 <= self.warmup_fraction < 1,
            "weight_decay": self.weight_decay >= 0,
            "dropout": 0 <= self.dropout < 1,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "batch_size": self.batch_size >= 1,
            "freeze_stride": self.freeze_stride >= 0,
            "time_limit": self.time_limit is None or self.time_limit > 0,
            "image_size": self.image_size is None or 32 <= self.image_size <= 1024,
        }
        for name, ok in checks.items():
            if not ok:
                raise ImgrecError(f"invalid value {getattr(self, name)!r} for {name}.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# TrainConfig fields that `imgrec train` has no option for (set them in Python or config.json);
# every other field is the option "--" + its name with dashes, and "head" is --head/--no-head.
NO_OPTION = ("mix_alpha", "warmup_fraction", "freeze_stride", "auto_finetune")


def option_for(field: str) -> str | None:
    """The `imgrec train` option that sets TrainConfig `field`, or None when there is none."""
    if field in NO_OPTION:
        return None
    return "--" + field.replace("_", "-")


def parse_duration(text: str) -> float:
    """'20m', '1h', '90s', '1h30m' or plain seconds -> seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", text)
        if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
            raise ImgrecError(f"cannot read the duration '{text}'; use e.g. 20m, 1h, 90s.")
        seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if seconds <= 0:
        raise ImgrecError(f"the duration '{text}' must be positive.")
    return seconds
