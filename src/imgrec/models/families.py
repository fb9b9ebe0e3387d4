"""The model families imgrec trains, by name: what each is and the settings it starts from.

Every name `imgrec train --model` accepts is one of these families or a timm backbone
("transfer"). Classic learners are named LEARNER-FEATURES (svm-hog, rf-embed, ...): any
learner on either feature kind works, and the table lists the five the leaderboard runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
class Family:
    """A kind of model: how it is built and trained, and its starting settings."""

    name: str
    kind: str  # "transfer" | "scratch" | "mlp" | "classic"
    summary: str
    learner: str | None = None
    features: str | None = None
    defaults: dict = field(default_factory=dict)  # TrainConfig values unless given


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


def get_family(name: str) -> Family:
    """The family of a model name; anything not listed is a timm backbone (transfer)."""
    if name in _FAMILIES:
        return _FAMILIES[name]
    return Family(name=name, kind="transfer", summary=f"transfer learning from {name}")


def families() -> list[Family]:
    """Every named family: the leaderboard's first, in its order, then the other combinations."""
    first = [_FAMILIES[n] for n in LEADERBOARD if n in _FAMILIES]
    return first + [f for f in _FAMILIES.values() if f not in first]


def is_classic(name: str) -> bool:
    return get_family(name).kind == "classic"
