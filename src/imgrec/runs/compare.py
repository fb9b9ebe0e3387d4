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

from imgrec.classifier import ImageClassifier
from imgrec.data.cache import DecodedCache
from imgrec.data.dataset import Dataset, load_dataset
from imgrec.data.split import write_split_file
from imgrec.data.transforms import Preprocessing
from imgrec.errors import ImgrecError
from imgrec.models.families import LEADERBOARD, get_family
from imgrec.runs.leaderboard import Entry, Leaderboard, rank_key, save_leaderboard
from imgrec.runs.train import MODEL_FILE, prepare_folder, quick_audit, split_data

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
    write_split_file(folder / "split.csv", {"train": train, "val": val, "test": test})
    target, evaluated_on = (test, "test") if len(test) else (val, "val")
    say(
        f"{len(train)} training, {len(val)} validation images; scoring on the {evaluated_on} "
        f"split ({len(target)} images)"
    )

    entries: list[Entry] = []
    for position, name in enumerate(names):
        traits = get_family(name).traits
        kind = traits.name
        elapsed = time.perf_counter() - started
        rest = [get_family(n).traits for n in names[position + 1 :]]
        later = sum(k.least_seconds(len(train)) for k in rest if k.budget_share is None)
        evaluation = traits.eval_seconds_per_image * len(target) + 5.0
        left = budget - elapsed - evaluation
        need = traits.least_seconds(len(train))
        if need > left:
            entries.append(
                Entry(name, kind, "skipped", f"needs ~{need:.0f} s, {max(0.0, left):.0f} s left")
            )
            say(f"{name}: skipped, needs ~{need:.0f} s and {max(0.0, left):.0f} s are left")
            continue
        limit = None
        if traits.budget_share is not None:  # deep families split what the others leave
            shares = traits.budget_share + sum(k.budget_share or 0.0 for k in rest)
            limit = max(need, (left - later) * traits.budget_share / shares)
        say(f"{name}: training" + (f" (at most {limit:.0f} s)" if limit else ""))
        entries.append(
            _run_family(
                name, kind, train, val, target, caches, folder / name, seed, limit, progress
            )
        )
        e = entries[-1]
        say(
            f"{name}: {e.status}"
            + (
                f", accuracy {e.accuracy:.2%} in {e.train_seconds:.0f} s"
                if e.status == "ok"
                else f" ({e.note})"
            )
        )

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


def _run_family(
    name: str,
    kind: str,
    train: Dataset,
    val: Dataset,
    target: Dataset,
    caches: dict[Preprocessing, DecodedCache],
    folder: Path,
    seed: int,
    limit: float | None,
    progress: bool,
) -> Entry:
    settings = {"seed": seed} | ({"time_limit": limit} if limit else {})
    try:
        clf = ImageClassifier(name, **settings)
        decoded = decoded_for(clf.preprocessing, caches, train, val, progress)
        folder.mkdir(parents=True, exist_ok=True)
        tic = time.perf_counter()
        clf.fit(train, val, work_dir=folder / "checkpoints", progress=progress, decoded=decoded)
        trained = time.perf_counter() - tic
        tic = time.perf_counter()
        result = clf.evaluate(target)
        scored = time.perf_counter() - tic
    except ImgrecError as exc:
        return Entry(name, kind, "failed", str(exc))
    except Exception as exc:  # noqa: BLE001 - one family's failure must not cost the others
        log.exception("%s failed", name)
        return Entry(name, kind, "failed", f"{type(exc).__name__}: {exc}".splitlines()[0])
    m = result.metrics
    result.title = f"imgrec compare — {name}"
    result.save_report(folder / "report.html")
    result.save_metrics(folder / "metrics.json")
    path = clf.save(folder / MODEL_FILE, metrics={k: m[k] for k in ("n", "accuracy", "macro_f1")})
    return Entry(
        family=name,
        kind=kind,
        accuracy=float(m["accuracy"]),
        balanced_accuracy=float(m.get("balanced_accuracy", m["accuracy"])),
        macro_f1=float(m["macro_f1"]),
        train_seconds=round(trained, 1),
        ms_per_image=round(1000 * scored / max(1, m["n"]), 2),
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
