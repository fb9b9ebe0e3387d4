"""Which frozen backbones, joined, make the fewest errors: the choice behind `--preset best`.

For each dataset: every image decoded once (short side 292, centre crop 260, the ensemble's
shared input), pooled features from EfficientNet-Lite0, Lite1 and Lite2 (ImageNet weights, ONNX
Runtime), of each image and of its mirror image. Then, for every non-empty set of backbones,
with and without horizontal flips (the flipped images as extra training rows; at test time the
probabilities of an image and its mirror averaged), imgrec's head (train/head.py: logistic
regression along an L2 path) is fitted on 85% of train/, its L2 strength chosen on the other
15% (stratified, seed 0), and it is scored on the data's own validation folder, which chose
nothing. One JSON line per combination, appended to `--out` with the date and commit.

    PYTHONPATH=src python benchmarks/ensemble_ablation.py [--datasets ...]
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from presets import ROOT, appender, commit, cpu  # noqa: E402
from transfer import DATASETS, SHARED  # noqa: E402

from imgrec.data.cache import DecodedCache  # noqa: E402
from imgrec.data.preprocess import Preprocessing  # noqa: E402
from imgrec.data.transforms import eval_transform  # noqa: E402
from imgrec.models.fast_features import onnx_feature_extractor  # noqa: E402
from imgrec.models.registry import create_model, get_spec  # noqa: E402
from imgrec.runtime import tune_malloc  # noqa: E402
from imgrec.train.head import fit_head  # noqa: E402

BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
SHARED_INPUT = Preprocessing(260, (0.5,) * 3, (0.5,) * 3, 292)


def files(folder: Path) -> tuple[list[Path], list[int]]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    pairs = [(f, i) for i, c in enumerate(classes) for f in sorted((folder / c).iterdir())]
    return [f for f, _ in pairs], [y for _, y in pairs]


def features(cache: DecodedCache, name: str, flip: bool) -> tuple[torch.Tensor, float]:
    model = create_model(get_spec(name), 2).eval()
    engine = onnx_feature_extractor(model, SHARED_INPUT.input_size)
    transform = eval_transform(SHARED_INPUT)
    start = time.perf_counter()
    chunks = []
    for first in range(0, len(cache), 64):
        batch = torch.stack(
            [transform(cache[i]) for i in range(first, min(first + 64, len(cache)))]
        )
        chunks.append(engine(batch.flip(3) if flip else batch))
    return torch.cat(chunks), time.perf_counter() - start


def selection_split(targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    chosen = []
    for label in targets.unique():
        rows = (targets == label).nonzero().flatten()
        rows = rows[torch.randperm(len(rows), generator=generator)]
        chosen += rows[: round(0.15 * len(rows))].tolist()
    held = torch.tensor(sorted(chosen))
    fit = torch.tensor(sorted(set(range(len(targets))) - set(chosen)))
    return fit, held


def run(dataset: str, emit) -> None:
    train_dir, val_dir, _ = DATASETS[dataset]
    train_paths, train_y = files(SHARED / dataset / train_dir)
    val_paths, val_y = files(SHARED / dataset / val_dir)
    cache = DecodedCache(train_paths + val_paths, SHARED_INPUT)
    cache.build()
    n = len(train_paths)
    ty, vy = torch.tensor(train_y), torch.tensor(val_y)
    feats, seconds = {}, {}
    for name in BACKBONES:
        for flip in (False, True):
            feats[name, flip], seconds[name, flip] = features(cache, name, flip)
    fit, held = selection_split(ty)
    for k in range(1, len(BACKBONES) + 1):
        for combo in itertools.combinations(BACKBONES, k):
            for flip in (False, True):
                plain = torch.cat([feats[b, False] for b in combo], 1)
                mirror = torch.cat([feats[b, True] for b in combo], 1)
                x, y = plain[:n][fit], ty[fit]
                if flip:
                    x, y = torch.cat([x, mirror[:n][fit]]), torch.cat([y, y])
                head = torch.nn.Linear(plain.shape[1], int(ty.max()) + 1)
                chosen = fit_head(head, x, y, plain[:n][held], ty[held])
                with torch.no_grad():
                    probs = head(plain[n:]).softmax(1)
                    if flip:
                        probs = probs + head(mirror[n:]).softmax(1)
                errors = int((probs.argmax(1) != vy).sum())
                emit(
                    {
                        "dataset": dataset,
                        "backbones": list(combo),
                        "flips": flip,
                        "selection_accuracy": chosen["val_acc"],
                        "test_accuracy": 1 - errors / len(vy),
                        "test_errors": errors,
                        "n_test": len(vy),
                        "feature_seconds": sum(seconds[b, False] for b in combo)
                        * (2 if flip else 1),
                        "images": len(cache),
                    }
                )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "ensemble-ablation.jsonl"
    )
    args = parser.parse_args()
    tune_malloc()
    torch.set_num_threads(2)
    stamp = {"date": datetime.date.today().isoformat(), "commit": commit(ROOT), "cpu": cpu()}

    emit = appender(args.out, stamp)
    for dataset in args.datasets:
        run(dataset, emit)


if __name__ == "__main__":
    main()
