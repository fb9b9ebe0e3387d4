"""Which input size for each offline EfficientNet-Lite: its TF reference size vs the "FixRes"
step above it (x 8/7, as Lite0's 224 -> 256), on hymenoptera_data.

Per backbone and size, the ImageNet network (offline weights) sees every image through
imgrec's own preprocessing (data/preprocess.py: resize the short side, centre crop, mean = std
= 0.5). One JSON line each with, on the 153 validation images: how many it calls "ant" (310)
or "bee" (309) among all 1000 ImageNet classes (a check that the weights map right), how many
it gets right choosing between those two classes only, and how many a logistic regression on
its frozen pooled features (trained on the 245 training images) gets right.

    python benchmarks/backbone_sizes.py [--data ../shared/datasets/hymenoptera_data]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hymenoptera_data"
# (variant, input size, resize size): reference size with timm's crop, then x 8/7 (crop 0.875)
CONFIGS = [(0, 224, 256), (0, 256, 292), (1, 240, 272), (1, 272, 310), (2, 260, 292)]
CONFIGS += [(2, 296, 338)]
ANT, BEE = 310, 309


def load_split(root: Path, split: str, p) -> tuple[list, list[int]]:
    from imgrec.data.preprocess import prepare_input
    from imgrec.errors import ImgrecError

    images, labels = [], []
    for label, cls in enumerate(("ants", "bees")):
        for path in sorted((root / split / cls).iterdir()):
            try:
                images.append(prepare_input(path, p))
            except (ImgrecError, OSError):  # the GIF placeholder and other unreadable files
                continue
            labels.append(label)
    return images, labels


def features_and_logits(model, images: list):
    import numpy as np
    import torch

    feats, logits = [], []
    with torch.inference_mode():
        for i in range(0, len(images), 32):
            batch = torch.from_numpy(np.stack(images[i : i + 32]))
            pooled = model.forward_head(model.forward_features(batch), pre_logits=True)
            feats.append(pooled.numpy())
            logits.append(model.classifier(pooled).numpy())
    return np.concatenate(feats), np.concatenate(logits)


def one(root: Path, variant: int, size: int, resize: int) -> dict:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from imgrec.data.preprocess import Preprocessing
    from imgrec.models.efficientnet_lite import imagenet_model

    start = time.perf_counter()
    model = imagenet_model(f"tf_efficientnet_lite{variant}")
    p = Preprocessing(size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), resize)
    train_x, train_y = load_split(root, "train", p)
    val_x, val_y = load_split(root, "val", p)
    train_f, _ = features_and_logits(model, train_x)
    val_f, val_logits = features_and_logits(model, val_x)
    truth = np.where(np.asarray(val_y) == 0, ANT, BEE)
    pair = np.where(val_logits[:, ANT] > val_logits[:, BEE], ANT, BEE)
    logreg = LogisticRegression(max_iter=2000).fit(train_f, train_y)
    return {
        "backbone": f"efficientnet_lite{variant}",
        "input": size,
        "resize": resize,
        "n_val": len(val_y),
        "imagenet_top1_hits": int((val_logits.argmax(1) == truth).sum()),
        "ant_vs_bee_hits": int((pair == truth).sum()),
        "logreg_hits": int((logreg.predict(val_f) == np.asarray(val_y)).sum()),
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    for variant, size, resize in CONFIGS:
        print(json.dumps(one(args.data, variant, size, resize)), flush=True)


if __name__ == "__main__":
    main()
