"""ImageClassifier: scikit-learn's contract (settings at init, data at fit) over the layers.

It holds no logic of its own: training is train.fit_model, prediction infer/, evaluation
evaluate/, calibration evaluate/calibrate.py, the file bundle/model.py. The jobs (runs/) and
the Python API (imgrec.api) both use it.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from imgrec.bundle.model import TrainedModel, load_model, save_model
from imgrec.data.cache import DecodedCache, cached_batches
from imgrec.data.dataset import Dataset, Skipped, check_known_labels, load_dataset
from imgrec.data.inputs import expand_inputs
from imgrec.data.preprocess import Preprocessing
from imgrec.data.split import check_split
from imgrec.errors import ImgrecError
from imgrec.infer.predict import Prediction, top_k_predictions
from imgrec.models.families import train_config
from imgrec.models.registry import create_model, get_spec
from imgrec.runtime import configure_cpu_runtime

if TYPE_CHECKING:  # scikit-learn and matplotlib load only when evaluating
    from imgrec.evaluate import EvaluationResult
    from imgrec.evaluate.calibrate import CalibrationReport
    from imgrec.infer.predict import BatchPredictor


class ImageClassifier:
    """An image classifier with scikit-learn's contract: settings at init, data at fit.

    >>> clf = ImageClassifier("efficientnet_lite0", epochs=4).fit(train, val)
    >>> clf.predict(["cat.jpg"])[0].label
    """

    def __init__(self, model: str = "efficientnet_lite0", **settings):
        self.config = train_config(model, **settings)
        self.spec = get_spec(model)
        size = self.config.image_size or self.spec.input_size
        self.preprocessing = Preprocessing(
            input_size=size,
            mean=tuple(self.spec.mean),
            std=tuple(self.spec.std),
            # the backbone's own crop ratio, at any size
            resize_size=round(size * self.spec.resize_size / self.spec.input_size),
        )
        self.classes: list[str] = []
        self.temperature = 1.0  # calibration: probabilities are softmax(logits / temperature)
        self.network: torch.nn.Module | None = None
        self.metadata: dict = {}
        self.history: list[dict] = []
        self.skipped: list[Skipped] = []

    # ---- training -------------------------------------------------------------------------
    def fit(
        self,
        train: Dataset,
        val: Dataset | None = None,
        *,
        work_dir: str | Path | None = None,
        resume: bool = False,
        progress: bool = True,
        decoded: DecodedCache | None = None,
        on_epoch: Callable[[dict], None] | None = None,
        warm_start: bool = False,
        started: float | None = None,
        eval_images: int = 0,
        on_plan: Callable[[str], None] | None = None,
    ) -> ImageClassifier:
        """Two-phase transfer learning; without `val`, 15% of `train` is held out (stratified).

        `work_dir` keeps checkpoints so an interrupted fit continues with `resume=True`.
        `decoded` is a DecodedCache (this classifier's `preprocessing`) that already holds the
        images, so they are not decoded twice; `imgrec train` decodes once for audit and fit.
        `on_epoch` sees every history row as it is written (a search prunes trials with it).
        `warm_start` continues from this classifier's current weights instead of new ones
        (`imgrec retrain`); the data must then have exactly the model's classes.
        `started` (a time.perf_counter() value) starts `time_limit`'s clock before the fit, and
        `eval_images` are the images the caller scores afterwards, whose time fine-tuning
        leaves them; `on_plan` sees the one-line reason of the fine-tuning plan (auto_finetune).
        What each phase took and reached lands in metadata["phases"].
        """
        from imgrec.train.fit import fit_model  # Lightning loads only when training

        configure_cpu_runtime()
        if val is None or len(val) == 0:
            train, val, _ = train.split(0.85, 0.15, 0.0, seed=self.config.seed)
        check_split(train, val)
        if warm_start and self.network is not None:
            if list(train.classes) != self.classes:
                raise ImgrecError(
                    f"the data's classes ({', '.join(train.classes)}) differ from the model's "
                    f"({', '.join(self.classes)}), so training cannot continue from it."
                )
        else:
            self.classes = list(train.classes)
            self.network = create_model(
                self.spec, len(self.classes), self.config.weights, self.config.dropout
            )
        # without a work folder the checkpoints go to a temporary one, and nothing resumes
        folder = (
            tempfile.TemporaryDirectory(prefix="imgrec-")
            if work_dir is None
            else nullcontext(work_dir)
        )
        with folder as where:
            outcome = fit_model(
                self.network,
                self.preprocessing,
                train,
                val,
                self.config,
                Path(where),
                resume=resume and work_dir is not None,
                progress=progress,
                decoded=decoded,
                on_epoch=on_epoch,
                started=started,
                eval_images=eval_images,
                on_plan=on_plan,
            )
        self.history = outcome.history
        self.skipped = outcome.skipped
        self.metadata = {
            "best_epoch": {k: outcome.best[k] for k in ("phase", "epoch", "val_acc", "val_loss")},
            "data": {
                "source": str(train.root),
                "fingerprint": train.fingerprint(),
                "train_images": len(train),
                "val_images": len(val),
                "class_counts": train.class_counts(),
            },
            "phases": outcome.phases,
        }
        return self

    def _require_fitted(self) -> torch.nn.Module:
        if self.network is None:
            raise ImgrecError("this classifier is not trained yet; call fit() or load() first.")
        return self.network

    # ---- inference ------------------------------------------------------------------------
    def batch_predictor(
        self,
        engine: str = "auto",
        batch_size: int = 32,
        on_fallback: Callable[[str], None] | None = None,
    ) -> BatchPredictor:
        """A BatchPredictor of this model (see TrainedModel.predictor); the engine (an ONNX
        session is built once) is reused while the network, engine, batch size and
        temperature stay the same."""

        network = self._require_fitted()
        key = (engine, batch_size, self.temperature)
        cached = getattr(self, "_engine_cache", None)  # (network, key, predictor)
        if cached is None or cached[0] is not network or cached[1] != key:
            made = self.trained().predictor(engine, batch_size, on_fallback)
            self._engine_cache = cached = (network, key, made)
        return dataclasses.replace(cached[2])  # a copy: a caller may attach a log to it

    def made_graph(self) -> bytes | None:
        """The ONNX graph batch_predictor last exported for this network at this temperature,
        or None: `imgrec train` keeps it for predict without exporting it a second time."""
        cached = getattr(self, "_engine_cache", None)
        if cached is None or cached[0] is not self.network or cached[1][2] != self.temperature:
            return None
        return getattr(cached[2].engine, "graph", None)

    def predict_proba(
        self, inputs, batch_size: int = 32, engine: str = "torch"
    ) -> tuple[list[Path], np.ndarray, list[Skipped]]:
        """Probabilities for every readable image in `inputs` (files, folders, globs).

        `engine="onnx"` (or "auto") runs ONNX Runtime, several times faster on a CPU; the
        default stays eager PyTorch, the reference the other engines are checked against.
        """
        return self.batch_predictor(engine, batch_size).predict_proba(_as_paths(inputs))

    def predict(
        self, inputs, top_k: int = 1, batch_size: int = 32, engine: str = "torch"
    ) -> list[Prediction]:
        """Top-k predictions, one per readable image; see `predict_proba` for skipped files."""
        paths, probs, _ = self.predict_proba(inputs, batch_size, engine)
        return self.predictions(paths, probs, top_k)

    def _predict_decoded(
        self,
        cache: DecodedCache,
        batch_size: int,
        engine: str,
        known: Mapping[Path, np.ndarray],
    ) -> tuple[list[Path], np.ndarray, list[Skipped]]:
        """predict_proba on pixels already decoded (and resized) in `cache`; the images in
        `known` keep the probabilities given there."""
        from imgrec.data.transforms import eval_transform

        paths = [cache.paths[i] for i in cache.valid_indices]
        probs = np.zeros((len(paths), len(self.classes)), dtype=np.float32)
        todo = []
        for row, path in enumerate(paths):
            if path in known:
                probs[row] = known[path]
            else:
                todo.append(row)
        run = self.batch_predictor(engine, batch_size).engine
        transform = eval_transform(self.preprocessing)
        where = {index: row for row, index in enumerate(cache.valid_indices)}
        indices = [cache.valid_indices[row] for row in todo]
        for chunk, batch in cached_batches(cache, indices, transform, batch_size):
            probs[[where[i] for i in chunk]] = run(batch)
        return paths, probs, list(cache.skipped)

    def predictions(self, paths: list[Path], probs: np.ndarray, top_k: int = 1) -> list[Prediction]:
        return top_k_predictions(self.classes, paths, probs, top_k)

    def evaluate(
        self,
        data: Dataset | str | Path,
        batch_size: int = 32,
        group_by: list[str] | None = None,
        source: str | Path | None = None,
        engine: str = "torch",
        decoded: DecodedCache | None = None,
        known: Mapping[Path, np.ndarray] | None = None,
    ) -> EvaluationResult:
        """Metrics, plots and a report on any labelled data (a Dataset, folder or CSV).

        `group_by` names extra CSV columns (e.g. ["camera"]): metrics per value of each, with
        bootstrap intervals and the gaps between groups, land in metrics["groups"]. `source`
        is the folder or CSV a Dataset `data` came from (default: the path given as `data`).
        `engine` as in `predict_proba`: `imgrec train` scores with "auto", the engine its
        model will predict with, reusing the session the drift reference built. `decoded`
        (a cache holding `data`'s images in this classifier's preprocessing) spares decoding
        them again, and `known` (probabilities by path, from the same engine) running those.
        """
        dataset = load_dataset(data) if isinstance(data, str | Path) else data
        if source is None and isinstance(data, str | Path):
            source = data
        columns: list[str] = []
        if group_by is not None:
            from imgrec.evaluate.groups import select_columns

            is_csv = source is not None and Path(source).suffix.lower() == ".csv"
            columns = select_columns(dataset.attribute_names(), group_by, is_csv)
        check_known_labels(dataset, self.classes)
        label_of = {s.path: s.label for s in dataset.samples}
        files = [s.path for s in dataset.samples]
        if decoded is not None:
            paths, probs, skipped = self._predict_decoded(
                decoded.subset(files), batch_size, engine, known or {}
            )
        else:
            paths, probs, skipped = self.predict_proba(files, batch_size, engine)
        targets = np.array([self.classes.index(label_of[p]) for p in paths], dtype=int)
        if len(paths) == 0:
            raise ImgrecError("none of the images could be read, so there is nothing to evaluate.")
        from imgrec.evaluate import EvaluationResult

        result = EvaluationResult.from_predictions(
            probs,
            targets,
            self.classes,
            [str(p) for p in paths],
            history=self.history or None,
            temperature=self.temperature,
            info=self.describe(),
            skipped=[(str(s.path), s.reason) for s in dataset.skipped + skipped] or None,
        )
        if columns:
            attributes = {s.path: s.attributes for s in dataset.samples}
            values = {c: [attributes[p].get(c, "") for p in paths] for c in columns}
            origin = str(Path(source).resolve()) if source is not None else str(dataset.root)
            result.add_groups(values, origin, seed=self.config.seed)
        return result

    def calibrate(
        self, data: Dataset | str | Path, split: str = "val", batch_size: int = 32
    ) -> CalibrationReport:
        """Fit `temperature` on held-out images so confidence matches accuracy (the ranking,
        so accuracy, never changes). `data`'s `split` ("val" or "test") when it has splits,
        else all of it: images the model did not train on. `save` keeps the temperature."""
        from imgrec.evaluate.calibrate import calibrate_classifier

        report = calibrate_classifier(self, data, split, batch_size)
        self.metadata["calibration"] = {
            **self.metadata.get("calibration", {}),
            **report.to_metadata(),
        }
        return report

    def check_labels(self, dataset: Dataset) -> None:
        """One clear sentence (ImgrecError) when `dataset` has labels this model does not know."""
        check_known_labels(dataset, self.classes)

    # ---- persistence ----------------------------------------------------------------------
    def describe(self) -> dict:
        """Short key facts shown in reports and `imgrec info`."""
        return {
            "model": self.spec.name,
            "classes": ", ".join(self.classes),
            "input": f"{self.preprocessing.input_size}px, mean {self.preprocessing.mean}, "
            f"std {self.preprocessing.std}",
            "trained on": self.metadata.get("data", {}).get("source", "?"),
            "data fingerprint": self.metadata.get("data", {}).get("fingerprint", "?")[:16],
        }

    def trained(self) -> TrainedModel:
        """This classifier as the model file's TrainedModel (shares the network)."""
        return TrainedModel(
            self._require_fitted(),
            self.spec,
            self.config,
            self.preprocessing,
            self.classes,
            self.temperature,
            {**self.metadata, "history": self.history},
        )

    def save(self, path: str | Path, metrics: dict | None = None) -> Path:
        """Write one safe file (safetensors + JSON metadata); loading it never runs code."""
        path = Path(path)
        self.metadata = save_model(path, self.trained(), metrics)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ImageClassifier:
        return cls.from_trained(load_model(path))

    @classmethod
    def from_trained(cls, model: TrainedModel) -> ImageClassifier:
        settings = model.config.to_dict()
        settings.pop("model", None)
        clf = cls(model.spec.name, **settings)
        clf.preprocessing = model.preprocessing
        clf.classes = list(model.classes)
        clf.temperature = model.temperature
        clf.network = model.network
        clf.metadata = model.metadata
        clf.history = model.history
        return clf


def _as_paths(inputs) -> list[Path]:
    if isinstance(inputs, str | Path):
        inputs = [inputs]
    return expand_inputs(inputs)
