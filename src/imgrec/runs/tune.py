"""`imgrec tune`: hyper-parameter search with Optuna, resumable from its SQLite study.

TPE proposes settings; each fine-tuning epoch reports the trial's best score so far, and the
median pruner stops a trial that is behind the median of completed trials at the same epoch.
The defaults run first, so the search can only match or beat them on validation. Each
finished trial that beats the best so far is saved as best.imgrec at once, so an
interruption loses at most the running trial.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from imgrec.bundle.run_folder import RunFiles
from imgrec.classifier import ImageClassifier
from imgrec.data.cache import DecodedCache
from imgrec.data.dataset import Dataset, load_dataset
from imgrec.data.preprocess import Preprocessing
from imgrec.data.split import write_split_file
from imgrec.errors import ImgrecError
from imgrec.models.efficientnet_lite import VARIANTS
from imgrec.models.families import train_config
from imgrec.runs.compare import decoded_for
from imgrec.runs.finish import finish_run
from imgrec.runs.train import quick_audit, split_data
from imgrec.runs.tune_settings import require_tunable, search_source
from imgrec.train.head import score
from imgrec.train.state import TrainingInterrupted

log = logging.getLogger(__name__)

STUDY = "imgrec-tune"
BEST_FILE = "best.imgrec"
AUGMENTS = ("light", "default", "strong")
IMAGE_SIZES = (224, 256)
# A trial can be stopped from its second fine-tuning epoch: the first one still warms up.
_WARMUP_EPOCHS = 2
_FINISH_RESERVE = 60.0  # seconds of a budget kept for evaluating (or retraining) the best


@dataclass
class TuneResult:
    folder: Path
    best_value: float
    best_params: dict
    best_model: Path
    default_value: float | None
    finished: int
    pruned: int
    failed: int
    evaluated_on: str
    test_accuracy: float


def suggest(trial, backbones: Sequence[str]) -> dict:
    """The search space: optimisation, regularisation, augmentation, image size, backbone."""
    return {
        "model": trial.suggest_categorical("model", list(backbones)),
        "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-4, 0.1, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "label_smoothing": trial.suggest_float("label_smoothing", 0.0, 0.2),
        "augment": trial.suggest_categorical("augment", list(AUGMENTS)),
        "image_size": trial.suggest_categorical("image_size", list(IMAGE_SIZES)),
    }


def default_params(backbone: str) -> dict:
    d = train_config(backbone)
    return {
        "model": backbone,
        "lr": d.lr,
        "weight_decay": d.weight_decay,
        "dropout": d.dropout,
        "label_smoothing": d.label_smoothing,
        "augment": d.augment,
        "image_size": _default_image_size(backbone),
    }


def _default_image_size(backbone: str) -> int:
    """The searched size nearest the backbone's own from above (256 for the offline Lites,
    224 for hub backbones), else the largest: the default trial is a point of the space."""
    offline = VARIANTS.get(backbone)
    own = offline.input_size if offline else 224
    return min((s for s in IMAGE_SIZES if s >= own), default=max(IMAGE_SIZES))


def tune(
    source: str | Path | None,
    folder: Path,
    trials: int = 30,
    budget: float | None = None,
    storage: str | None = None,
    backbones: Sequence[str] = ("efficientnet_lite0",),
    epochs: int | None = None,
    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    progress: bool = True,
    say: Callable[[str], None] = lambda _: None,
) -> TuneResult:
    """Run (or continue) a search of `trials` trials within `budget` seconds, counted from
    this call: decoding, the trials and retraining/evaluating the best all fit inside it."""
    import optuna

    started = time.perf_counter()
    require_tunable(backbones)
    for name in backbones:
        ImageClassifier(name)  # unknown names fail now
    folder = Path(folder)
    source = search_source(folder, source)
    storage = storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    caches: dict[Preprocessing, DecodedCache] = {}
    train, val, test = _split(source, folder, ratios, seed, backbones[0], caches, progress)

    study = open_study(storage, seed)
    if not study.trials:
        study.enqueue_trial(default_params(backbones[0]))
    kept = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = [t for t in study.trials if t.state in kept]  # an interrupted trial runs again
    todo = max(0, trials - len(done))
    say(f"{len(done)} trials done before, {todo} to run; study in {storage}")
    objective = _Objective(folder, train, val, caches, backbones, epochs, seed, progress, say)
    timeout = None
    if budget is not None:
        # the trial running at the deadline stops there too (its best epoch so far counts);
        # the end of the budget is kept for evaluating and saving the best trial
        deadline = started + budget - min(_FINISH_RESERVE, 0.05 * budget)
        objective.deadline = deadline
        timeout = max(1.0, deadline - time.perf_counter())
    with warnings.catch_warnings(), CtrlC() as objective.ctrl_c:
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        study.optimize(objective, n_trials=todo, timeout=timeout, catch=(ImgrecError,))
    say(f"searched for {time.perf_counter() - started:.0f} s")
    return _finish(study, folder, train, val, test, caches, epochs, seed, progress, say)


def _split(
    source: str | Path,
    folder: Path,
    ratios: tuple[float, float, float],
    seed: int,
    backbone: str,
    caches: dict[Preprocessing, DecodedCache],
    progress: bool,
) -> tuple[Dataset, Dataset, Dataset]:
    """The search's split: its split.csv when it continues, else a fresh audited one (the
    decode it needed is kept in `caches` for the trials)."""
    dataset = load_dataset(source)
    split_file = RunFiles(folder).split
    if split_file.exists():
        return split_data(dataset, ratios, split_file, seed)
    preprocessing = ImageClassifier(backbone).preprocessing
    cache = DecodedCache(dataset.paths, preprocessing, progress=progress, with_facts=True)
    cache.build()
    caches[preprocessing] = cache
    train, val, test = split_data(dataset, ratios, None, seed, quick_audit(dataset, cache))
    write_split_file(split_file, {"train": train, "val": val, "test": test})
    return train, val, test


def open_study(storage: str | None, seed: int = 0):
    """The search's study (TPE, median pruning), continued when `storage` already holds it."""
    import optuna

    # Optuna logs a failed trial as a warning with its traceback; the search says it in one line
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.create_study(
        study_name=STUDY,
        storage=storage,
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=5),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=_WARMUP_EPOCHS),
    )


class CtrlC:
    """Ctrl-C raises KeyboardInterrupt as usual and is also remembered. CPython drops the
    exception when the signal lands while a weakref callback or __del__ runs, printing
    "Exception ignored in ..." with a traceback, and a trial would then run on as if nothing
    was pressed. Here that report is left out (the press is remembered, not lost) and the
    objective checks `pressed` after each trial, so the search stops either way."""

    def __init__(self) -> None:
        self.pressed = False
        self._previous = None
        self._previous_hook = sys.unraisablehook

    def __enter__(self) -> CtrlC:
        self._previous = signal.getsignal(signal.SIGINT)
        self._previous_hook = sys.unraisablehook
        signal.signal(signal.SIGINT, self._handle)
        sys.unraisablehook = self._unraisable
        return self

    def _handle(self, signum, frame) -> None:
        self.pressed = True
        raise KeyboardInterrupt

    def _unraisable(self, unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and self.pressed:
            return  # the dropped Ctrl-C: remembered in `pressed`
        self._previous_hook(unraisable)

    def __exit__(self, *exc_info: object) -> None:
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
        sys.unraisablehook = self._previous_hook


class _Objective:
    """One trial: train with the suggested settings, reporting each epoch for pruning."""

    def __init__(self, folder, train, val, caches, backbones, epochs, seed, progress, say):
        self.folder, self.train, self.val, self.caches = folder, train, val, caches
        self.backbones, self.epochs, self.seed = backbones, epochs, seed
        self.progress, self.say = progress, say
        self.deadline: float | None = None
        self.ctrl_c: CtrlC | None = None

    def __call__(self, trial) -> float:
        import optuna

        params = suggest(trial, self.backbones)
        clf = _classifier(params, self.epochs, self.seed)
        report = PruningReport(trial)
        decoded = decoded_for(clf.preprocessing, self.caches, self.train, self.val, self.progress)
        if self.deadline is not None:  # after decoding: the limit counts training only
            clf.config.time_limit = max(10.0, self.deadline - time.perf_counter())
        work = self.folder / "trials" / f"{trial.number:03d}"
        try:
            clf.fit(
                self.train,
                self.val,
                work_dir=work,
                progress=self.progress,
                decoded=decoded,
                on_epoch=report,
            )
        except optuna.TrialPruned as pruned:
            self.say(f"trial {trial.number}: {pruned}")
            raise
        except TrainingInterrupted as stop:  # Ctrl-C in fine-tuning ends the search, not a trial
            raise KeyboardInterrupt from stop
        except ImgrecError as error:  # this trial fails; the search goes on
            self.say(f"trial {trial.number}: failed: {error}")
            raise
        if self.ctrl_c is not None and self.ctrl_c.pressed:  # pressed, the exception lost
            raise KeyboardInterrupt
        best = clf.metadata["best_epoch"]
        value = score(float(best["val_acc"]), float(best["val_loss"]))
        trial.set_user_attr("val_acc", float(best["val_acc"]))
        self.say(f"trial {trial.number}: val accuracy {best['val_acc']:.2%} ({_short(params)})")
        study = trial.study
        try:
            leader = study.best_value
        except ValueError:  # no finished trial yet
            leader = float("-inf")
        if value > leader or not (self.folder / BEST_FILE).exists():
            clf.metadata["tune"] = {"trial": trial.number, "params": params, "value": value}
            clf.save(self.folder / BEST_FILE)
        return value


class PruningReport:
    """Reports each fine-tuning epoch's best score so far to Optuna; stops a losing trial.

    Phase 1 (the head on frozen features) is not reported: its score depends on the image
    size alone, and the pruner takes a trial's best reported value, so a good head would
    shield bad fine-tuning settings from it. Reporting the best so far, which is what a
    trial's value is at its end, compares like with like: what this trial has reached by
    epoch k against what completed trials had reached by epoch k.
    """

    def __init__(self, trial):
        self.trial = trial
        self.epochs = 0
        self.best = float("-inf")

    def __call__(self, row: dict) -> None:
        import optuna

        if row["phase"] != "finetune":
            return
        self.epochs += 1
        self.best = max(self.best, float(row["val_score"]))
        self.trial.report(self.best, self.epochs)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after {self.epochs} fine-tuning epochs")


def _classifier(params: dict, epochs: int | None, seed: int) -> ImageClassifier:
    # a search compares fine-tuning settings: every trial fine-tunes (no plan may skip it)
    settings = {k: v for k, v in params.items() if k != "model"} | {"auto_finetune": False}
    if epochs is not None:
        settings["epochs"] = epochs
    return ImageClassifier(params["model"], seed=seed, **settings)


def _short(params: dict) -> str:
    return ", ".join(
        f"{k}={v:.2g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def _finish(study, folder, train, val, test, caches, epochs, seed, progress, say) -> TuneResult:
    import optuna

    states = [t.state for t in study.trials]
    finished = states.count(optuna.trial.TrialState.COMPLETE)
    if finished == 0:
        raise ImgrecError("no trial finished; give the search more time or trials.")
    best = study.best_trial
    best_path = folder / BEST_FILE
    saved = ImageClassifier.load(best_path).metadata.get("tune", {}) if best_path.exists() else {}
    if saved.get("trial") != best.number:  # e.g. the file was lost: retrain the best trial
        say(f"retraining the best trial ({best.number})")
        clf = _classifier(best.params, epochs, seed)
        decoded = decoded_for(clf.preprocessing, caches, train, val, progress)
        clf.fit(train, val, progress=progress, decoded=decoded)
        clf.metadata["tune"] = {"trial": best.number, "params": best.params, "value": best.value}
        clf.save(best_path)
    clf = ImageClassifier.load(best_path)
    target, evaluated_on = (test, "test") if len(test) else (val, "val")
    result = clf.evaluate(target)
    result.title = f"imgrec tune — best trial {best.number} ({evaluated_on} split)"
    finish_run(folder, clf, result, evaluated_on, model_file=BEST_FILE, full=False)
    _save_tables_and_plots(study, folder)
    first = study.trials[0] if study.trials else None
    default_value = (
        first.value
        if first is not None and first.state == optuna.trial.TrialState.COMPLETE
        else None
    )
    return TuneResult(
        folder=folder,
        best_value=best.value,
        best_params=best.params,
        best_model=best_path,
        default_value=default_value,
        finished=finished,
        pruned=states.count(optuna.trial.TrialState.PRUNED),
        failed=states.count(optuna.trial.TrialState.FAIL),
        evaluated_on=evaluated_on,
        test_accuracy=float(result.metrics["accuracy"]),
    )


def _save_tables_and_plots(study, folder: Path) -> None:
    """trials.csv, and Optuna's history and importance plots (importance needs variety)."""
    import optuna.visualization.matplotlib as ovm

    study.trials_dataframe().to_csv(folder / "trials.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, plot in (
            ("history", ovm.plot_optimization_history),
            ("importance", ovm.plot_param_importances),
        ):
            try:
                axes = plot(study)
                axes.figure.set_size_inches(9, 5)
                axes.figure.tight_layout()
                axes.figure.savefig(folder / f"{name}.png", dpi=110)
                import matplotlib.pyplot as plt

                plt.close(axes.figure)
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:
                log.info("no %s plot: %s", name, exc)
