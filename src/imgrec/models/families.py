"""The model families imgrec trains, by name: what each is and the settings it starts from.

Every name `imgrec train --model` accepts is one of these families or a timm backbone
("transfer"). Classic learners are named LEARNER-FEATURES (svm-hog, rf-embed, ...): any
learner on either feature kind works, and the table lists the five the leaderboard runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from imgrec.config import TrainConfig
from imgrec.errors import ImgrecError

LEARNERS = {
    "svm": "RBF support-vector machine",
    "rf": "random forest",
    "tree": "decision tree",
    "logreg": "logistic regression",
}
FEATURES = {
    "hog": "HOG (histograms of oriented gradients) of a 128 px grayscale image",
    "embed": "frozen EfficientNet-Lite0 ImageNet embeddings",
}
# The backbone whose embeddings the *-embed families and mlp-embed build on (offline weights).
EMBED_BACKBONE = "efficientnet_lite0"

# Settings every non-deep family trains with: there are no epochs of back-propagation.
_NO_FINETUNE = {"weights": "imagenet", "head": True, "epochs": 0}


@dataclass(frozen=True)
class Kind:
    """What every family of one kind shares: how it trains, runs, exports, and what it costs.

    Code that must behave differently per kind asks these fields, never the kind's name, so a
    new kind is one entry in KINDS.
    """

    name: str
    backprop: bool  # trained by back-propagation through a network: epochs, lr, lr-find
    sklearn: bool  # a scikit-learn learner inside: its own engine, no ONNX graph to export
    tunable: bool  # `imgrec tune` searches its settings
    # Rough training cost on this project's 2-core reference CPU: seconds per training image
    # plus a fixed part; enough for `imgrec compare` to decide what cannot fit its budget.
    seconds_per_image: float
    fixed_seconds: float
    eval_seconds_per_image: float
    min_seconds: float | None = None  # below this it learns little worth ranking
    # How the deep kinds split the time the others leave in a budget: a CNN from scratch
    # gains from every extra epoch, transfer learning is usually done after a few.
    budget_share: float | None = None
    # False: a head on frozen features and nothing else, so --epochs above 0 is refused
    # rather than silently ignored (the scikit-learn learners have no epochs to refuse)
    fine_tunes: bool = True

    @property
    def exportable(self) -> bool:
        return not self.sklearn

    @property
    def has_learning_rate(self) -> bool:
        return not self.sklearn

    def least_seconds(self, n_train: int) -> float:
        """The least time a family of this kind needs on `n_train` images."""
        if self.min_seconds is not None:
            return self.min_seconds
        return self.fixed_seconds + self.seconds_per_image * n_train


KINDS = {
    k.name: k
    for k in (
        Kind("transfer", True, False, True, 0.06, 30.0, 0.015, budget_share=1.0),
        Kind("scratch", True, False, False, 0.06, 30.0, 0.005, 120.0, budget_share=1.5),
        Kind("mlp", False, False, False, 0.02, 10.0, 0.01),
        Kind("classic", False, True, False, 0.02, 10.0, 0.01),
        # a head on several frozen backbones: one forward pass per image and member
        Kind("ensemble", False, False, False, 0.03, 15.0, 0.03, fine_tunes=False),
    )
}


@dataclass(frozen=True)
class Family:
    """A kind of model: how it is built and trained, and its starting settings."""

    name: str
    kind: str  # a key of KINDS: "transfer" | "scratch" | "mlp" | "classic" | "ensemble"
    summary: str
    learner: str | None = None
    features: str | None = None  # built on fixed features (HOG or frozen embeddings)
    defaults: dict = field(default_factory=dict)  # TrainConfig values unless given

    @property
    def traits(self) -> Kind:
        return KINDS[self.kind]

    def train_config(self, **given) -> TrainConfig:
        """Settings for this family: its starting values, overridden by those given (None
        means "not given"), so `--model cnn-scratch` alone trains from scratch."""
        chosen = {k: v for k, v in given.items() if v is not None}
        if "epochs" in chosen:  # a number of epochs given is the number to run
            chosen.setdefault("auto_finetune", False)
        config = TrainConfig(**{"model": self.name, **self.defaults, **chosen})
        if not self.traits.fine_tunes and (
            config.epochs or config.weights != "imagenet" or not config.head
        ):
            raise ImgrecError(
                f"'{self.name}' trains a head on frozen ImageNet features only: leave out "
                "--epochs, --weights and --no-head."
            )
        if not self.traits.backprop:
            return config  # no epochs of back-propagation through a backbone
        if config.epochs == 0 and not config.head:
            raise ImgrecError("nothing to train: --epochs is 0 and the head phase is off.")
        if config.weights == "none" and config.epochs == 0:
            raise ImgrecError(
                "training from scratch (--weights none) needs --epochs of at least 1."
            )
        return config


def _classic(learner: str, features: str) -> Family:
    return Family(
        name=f"{learner}-{features}",
        kind="classic",
        summary=f"{LEARNERS[learner]} on {FEATURES[features]}",
        learner=learner,
        features=features,
        defaults={**_NO_FINETUNE, "weights": "imagenet" if features == "embed" else "none"},
    )


MLP = Family(
    name="mlp-embed",
    kind="mlp",
    summary="deep fully connected network (2 hidden layers, dropout, early stopping) on "
    + FEATURES["embed"],
    features="embed",
    defaults={**_NO_FINETUNE, "dropout": 0.5},
)

# The best recipe found for cats_and_dogs_filtered (2000 training images) on a 2-core CPU
# (benchmarks/scratch_cnn_experiments.md), as TrainConfig fields: 86% in ten minutes. Patience
# equals the epochs: validation accuracy swings between epochs at the peak learning rate, so
# early stopping would cut the cosine schedule before its low-LR tail, where most of the gain
# is; the best epoch is kept anyway. The "default" augmentation (crops from 35% of the image,
# rotation, colour jitter) is what lets ~100 epochs learn without memorising 2000 photos; with
# "light" the network reached 95% training accuracy and stalled near 79% validation. 95 epochs
# take about ten minutes on two idle cores with native bf16 (~6 s each; ~7.5 s in float32);
# `--time-limit` bounds them on slower machines, and the learning-rate schedule follows it.
SCRATCH_RECIPE = {
    "weights": "none",
    "head": False,
    "epochs": 95,
    "patience": 95,
    "optimizer": "adamw",
    "lr": 3e-3,
    "batch_size": 32,
    "weight_decay": 0.05,
    "label_smoothing": 0.1,
    "augment": "default",
    "mix": "none",
    "warmup_fraction": 0.15,
    "dropout": 0.2,
}

SCRATCH = Family(
    name="cnn-scratch",
    kind="scratch",
    summary="small residual CNN (BatchNorm, 4 stages, 1.2 M parameters) trained from random "
    "weights at 128 px",
    defaults=SCRATCH_RECIPE,
)

# The families `imgrec compare` puts on its leaderboard, in the order it trains them.
LEADERBOARD = (
    "logreg-embed",
    "svm-embed",
    "mlp-embed",
    "svm-hog",
    "rf-hog",
    "tree-hog",
    "efficientnet_lite0",
    "cnn-scratch",
)

_FAMILIES: dict[str, Family] = {
    f.name: f for f in [_classic(lr, ft) for lr in LEARNERS for ft in FEATURES] + [MLP, SCRATCH]
}


def ensemble_family(name: str) -> Family:
    """Backbones joined with '+' (models/ensemble.py): a head on their joined features."""
    return Family(
        name=name,
        kind="ensemble",
        summary=f"one head on the joined frozen features of {name.replace('+', ', ')}",
        defaults=_NO_FINETUNE,
    )


def get_family(name: str) -> Family:
    """The family of a model name; names joined with '+' are an ensemble, anything not listed
    is a timm backbone (transfer)."""
    if name in _FAMILIES:
        return _FAMILIES[name]
    if "+" in name:
        return ensemble_family(name)
    return Family(name=name, kind="transfer", summary=f"transfer learning from {name}")


def require_learning_rate(name: str) -> None:
    """ImgrecError for a family that fits without a learning rate (the classic learners),
    which the learning-rate range test cannot run on."""
    if not get_family(name).traits.backprop:
        raise ImgrecError(f"{name} has no learning rate to find; it fits in seconds.")


def families() -> list[Family]:
    """Every named family: the leaderboard's first, in its order, then the other combinations."""
    first = [_FAMILIES[n] for n in LEADERBOARD if n in _FAMILIES]
    return first + [f for f in _FAMILIES.values() if f not in first]


def train_config(model: str = "efficientnet_lite0", **given) -> TrainConfig:
    """Settings for `model` (see Family.train_config)."""
    return get_family(model).train_config(**given)


# The offline backbones whose joined features `--preset best` trains a head on. Each one adds a
# forward pass per image (Lite0 ~140, Lite1 ~110, Lite2 ~100 img/s at 260 px on 2 idle cores)
# and fewer errors than fine-tuning any one of them (benchmarks/RESULTS.md, issue 16 section).
BEST_ENSEMBLE = "efficientnet_lite0+efficientnet_lite1+efficientnet_lite2"

# What each preset (config.PRESETS) sets; options given on the command line still win.
#   fast:    the head on frozen EfficientNet-Lite0 features only, no fine-tuning (seconds to
#            a minute; at least baseline logistic regression's accuracy in half its time);
#   default: the head, then fine-tuning only when the validation errors it leaves and the
#            measured epoch time say it can pay (train/plan.py);
#   best:    a head on three offline backbones' joined features (models/ensemble.py).
PRESET_SETTINGS: dict[str, dict] = {
    "fast": {"model": EMBED_BACKBONE, "epochs": 0},
    "default": {"model": EMBED_BACKBONE},
    "best": {"model": BEST_ENSEMBLE},
}


def preset_config(preset: str = "default", model: str | None = None, **given) -> TrainConfig:
    """Settings for a preset; `model` and the `given` settings (None = not given) override it.

    A model given with a preset keeps only the preset's other settings: `--preset fast
    --model efficientnet_lite2` trains Lite2's head only.
    """
    if preset not in PRESET_SETTINGS:
        raise ImgrecError(f"unknown preset '{preset}'; use one of {', '.join(PRESET_SETTINGS)}.")
    settings = dict(PRESET_SETTINGS[preset])
    chosen = model or settings.pop("model")
    settings.pop("model", None)
    return train_config(chosen, **{**settings, **{k: v for k, v in given.items() if v is not None}})
