"""`imgrec evaluate`: score a model on images that taught it nothing, and say which ones.

Scoring a model on the images it was trained on flatters it (the shipped sample: 97.6% on all
170 images against 92% on the 50 it never saw). So the images scored are chosen, in order:
- DATA is the data the model was trained on (its run folder's config.json names it): the split
  that run reported on, from the split.csv beside the model;
- DATA has a test split (a test/ folder or split column): that split;
- DATA has a validation split but no test split: that split;
- otherwise every image of DATA (new data, presumably: the model's own files cannot be told).
Training images are scored only when asked (`include_training`), and the report says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imgrec.bundle.run_folder import RunFiles, read_config
from imgrec.classifier import ImageClassifier
from imgrec.data.dataset import Dataset
from imgrec.data.shard_reader import ShardSet
from imgrec.data.sources import open_listing
from imgrec.data.split import read_split_file
from imgrec.errors import ImgrecError

if TYPE_CHECKING:
    from imgrec.evaluate import EvaluationResult


@dataclass
class Scored:
    """The images an evaluation scores and one sentence saying which they are."""

    dataset: Dataset
    description: str
    includes_training: bool = False
    shards: ShardSet | None = None  # when `data` is a shards folder: where the images are


def images_to_score(model_path: Path, data: str | Path, include_training: bool = False) -> Scored:
    """The images of `data` that `imgrec evaluate` scores (see the module docstring)."""
    dataset, shards = open_listing(data)
    scored = _chosen(model_path, data, dataset, include_training)
    return dataclasses.replace(scored, shards=shards)


def _chosen(model_path: Path, data: str | Path, dataset: Dataset, include_training: bool) -> Scored:
    n = len(dataset)
    if include_training:
        return Scored(dataset, f"all {n} images of {data}, training images included", True)
    run = RunFiles(Path(model_path).parent)
    if _trained_on(run, data):
        if not run.split.is_file():
            raise ImgrecError(
                f"{data} is the data {model_path} was trained on, and the split.csv that says "
                f"which images it did not train on is missing from {run.folder}; evaluate on "
                "other images, or pass --include-training to score them all anyway."
            )
        split = read_split_file(run.split, dataset)
        name = "test" if len(split.subset("test")) else "val"
        part = split.subset(name)
        return Scored(part, f"the {len(part)} {name} images the run held out ({run.split})")
    for name in ("test", "val"):
        part = dataset.subset(name)
        if len(part):
            return Scored(part, f"the {len(part)} images of {data}'s {name} split")
    return Scored(dataset, f"all {n} images of {data}")


def _trained_on(run: RunFiles, data: str | Path) -> bool:
    """Whether the run folder beside the model trained on `data` (its config.json says)."""
    try:
        source = read_config(run.folder)["source"]
    except (ImgrecError, KeyError, TypeError):
        return False
    return Path(source).resolve() == Path(data).resolve()


def evaluate_model(
    model_path: str | Path,
    data: str | Path,
    *,
    include_training: bool = False,
    batch_size: int = 32,
    group_by: list[str] | None = None,
) -> tuple[EvaluationResult, Scored]:
    """Evaluate the model file on the images `images_to_score` picks; the report names them."""
    clf = ImageClassifier.load(model_path)
    scored = images_to_score(Path(model_path), data, include_training)
    decoded = None
    if scored.shards is not None:
        decoded = scored.shards.cache(clf.preprocessing, scored.dataset.paths)
    result = clf.evaluate(scored.dataset, batch_size, group_by, source=data, decoded=decoded)
    result.info = {**(result.info or {}), "images scored": scored.description}
    if scored.includes_training:
        result.info["warning"] = (
            "training images are scored too, so these figures overstate how the model does "
            "on new photos"
        )
    return result, scored
