"""`imgrec compare`: every model family on the same split, within a time budget, ranked.

The families train cheapest first, so a short budget still yields a leaderboard; the deep ones
get the time that is left as their training limit, and a family that cannot fit is skipped
and the table says so. Each family is scored on the same held-out images, end to end from the
files (decoding included), so its milliseconds per image are what a user would see.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from imgrec.bundle.run_folder import RunFiles
from imgrec.classifier import ImageClassifier
from imgrec.data.cache import DecodedCache
from imgrec.data.dataset import Dataset, load_dataset
from imgrec.data.preprocess import Preprocessing
from imgrec.data.split import write_split_file
from imgrec.errors import ImgrecError
from imgrec.models.families import LEADERBOARD, get_family
from imgrec.runs.finish import finish_run
from imgrec.runs.leaderboard import Entry, Leaderboard, rank_key, save_leaderboard
from imgrec.runs.train import prepare_folder, quick_audit, split_data

log = logging.getLogger(__name__)

BEST_FILE = "best.imgrec"


def compare(
    source: str | Path,
    folder: Path,
    names: Sequence[str] = LEADERBOARD,
    budget: float = 1200.0,
    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15),
    split_file: Path | None = None,
    seed: int = 0,
    exist_ok: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = lambda _: None,
) -> Leaderboard:
    """Train each family in `names` on one split of `source` within `budget` seconds."""
    started = time.perf_counter()
    folder = Path(folder)
    names = list(dict.fromkeys(names))
    for name in names:
        ImageClassifier(name)  # an unknown name fails now, not after minutes of work
    dataset = load_dataset(source)
    first = ImageClassifier(names[0])
    caches = {
        first.preprocessing: DecodedCache(
            dataset.paths, first.preprocessing, progress=progress, with_facts=True
        )
    }
    caches[first.preprocessing].build()
    audit = quick_audit(dataset, caches[first.preprocessing])
    train, val, test = split_data(dataset, ratios, split_file, seed, audit)
    prepare_folder(folder, resume=False, exist_ok=exist_ok)
    write_split_file(RunFiles(folder).split, {"train": train, "val": val, "test": test})
    target, evaluated_on = (test, "test") if len(test) else (val, "val")
    say(
        f"{len(train)} training, {len(val)} validation images; scoring on the {evaluated_on} "
        f"split ({len(target)} images)"
    )

    entries: list[Entry] = []
    for position, name in enumerate(names):
        left = budget - (time.perf_counter() - started)
        limit = _time_for(name, names[position + 1 :], left, len(train), len(target))
        if isinstance(limit, Entry):
            entries.append(limit)
            say(f"{name}: skipped, {limit.note}")
            continue
        say(f"{name}: training" + (f" (at most {limit:.0f} s)" if limit else ""))
        scored = (target, evaluated_on)
        e = _run_family(name, train, val, scored, caches, folder / name, seed, limit, progress)
        entries.append(e)
        say(f"{name}: {e.status}" + (_scored(e) if e.status == "ok" else f" ({e.note})"))

    entries.sort(key=rank_key)
    board = Leaderboard(
        folder=folder,
        entries=entries,
        evaluated_on=evaluated_on,
        eval_images=len(target),
        selection_split=evaluated_on == "val",
        budget_seconds=budget,
        wall_seconds=time.perf_counter() - started,
        source=str(Path(source).resolve()),
        classes=list(dataset.classes),
    )
    ranked = board.ranked()
    if ranked:
        board.best = folder / BEST_FILE
        shutil.copyfile(ranked[0].model, board.best)
    save_leaderboard(board)
    return board


def _scored(e: Entry) -> str:
    return f", accuracy {e.accuracy:.2%} in {e.train_seconds:.0f} s"


def _time_for(
    name: str, later: Sequence[str], left: float, n_train: int, n_scored: int
) -> float | None | Entry:
    """Seconds `name` may train (None: as long as it needs), or its skipped row when the
    budget `left` cannot fit it. Deep families split what the others leave, by their shares."""
    traits = get_family(name).traits
    rest = [get_family(n).traits for n in later]
    fixed_later = sum(k.least_seconds(n_train) for k in rest if k.budget_share is None)
    left -= traits.eval_seconds_per_image * n_scored + 5.0
    need = traits.least_seconds(n_train)
    if need > left:
        return Entry(
            name, traits.name, "skipped", f"needs ~{need:.0f} s, {max(0.0, left):.0f} s left"
        )
    if traits.budget_share is None:
        return None
    shares = traits.budget_share + sum(k.budget_share or 0.0 for k in rest)
    return max(need, (left - fixed_later) * traits.budget_share / shares)


def _run_family(
    name: str,
    train: Dataset,
    val: Dataset,
    scored: tuple[Dataset, str],
    caches: dict[Preprocessing, DecodedCache],
    folder: Path,
    seed: int,
    limit: float | None,
    progress: bool,
) -> Entry:
    kind = get_family(name).kind
    settings = {"seed": seed} | ({"time_limit": limit} if limit else {})
    try:
        clf = ImageClassifier(name, **settings)
        decoded = decoded_for(clf.preprocessing, caches, train, val, progress)
        folder.mkdir(parents=True, exist_ok=True)
        tic = time.perf_counter()
        work = RunFiles(folder).checkpoints
        clf.fit(train, val, work_dir=work, progress=progress, decoded=decoded)
        trained = time.perf_counter() - tic
        tic = time.perf_counter()
        result = clf.evaluate(scored[0])
        scoring = time.perf_counter() - tic
    except ImgrecError as exc:
        return Entry(name, kind, "failed", str(exc))
    except Exception as exc:  # noqa: BLE001 - one family's failure must not cost the others
        log.exception("%s failed", name)
        return Entry(name, kind, "failed", f"{type(exc).__name__}: {exc}".splitlines()[0])
    m = result.metrics
    result.title = f"imgrec compare — {name}"
    path = finish_run(folder, clf, result, scored[1], full=False).model_path
    return Entry(
        family=name,
        kind=kind,
        accuracy=float(m["accuracy"]),
        balanced_accuracy=float(m.get("balanced_accuracy", m["accuracy"])),
        macro_f1=float(m["macro_f1"]),
        train_seconds=round(trained, 1),
        ms_per_image=round(1000 * scoring / max(1, m["n"]), 2),
        size_mb=round(path.stat().st_size / 1e6, 2),
        model=str(path),
        note=_describe_best(clf.metadata.get("best_epoch", {})),
    )


def _describe_best(best: dict) -> str:
    if not best:
        return ""
    return f"best: {best.get('phase')} {best.get('epoch')}"


def decoded_for(
    p: Preprocessing,
    caches: dict[Preprocessing, DecodedCache],
    train: Dataset,
    val: Dataset,
    progress: bool,
) -> DecodedCache:
    """One decode per preprocessing for all the families that share it."""
    if p not in caches:
        caches[p] = DecodedCache(train.paths + val.paths, p, progress=progress)
        caches[p].build()
    return caches[p]
