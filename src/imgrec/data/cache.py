"""In-memory cache of decoded, short-side-resized images, so epochs never re-decode JPEGs.

At resize_size 256 an image is about 200 KB as uint8, so 3000 images fit in well under a
gigabyte. Decoding runs in threads: PIL and torch release the GIL while they work.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

from imgrec.data.dataset import Skipped
from imgrec.data.decode import UnreadableImage, open_image
from imgrec.data.facts import ImageFacts, decode_with_facts
from imgrec.data.preprocess import Preprocessing, prepare_input
from imgrec.data.threads import run_threaded
from imgrec.data.transforms import resize_for_cache


class DecodedCache:
    """Decode + short-side resize every image once, in parallel threads (PIL releases the GIL),
    so epochs never re-decode JPEGs."""

    def __init__(
        self,
        paths: list[Path],
        p: Preprocessing,
        workers: int | None = None,
        progress: bool = False,
        with_facts: bool = False,
    ) -> None:
        self.paths = [Path(x) for x in paths]
        self.preprocessing = p
        self.workers = workers or os.cpu_count() or 1
        self.progress = progress
        self.with_facts = with_facts
        self.valid_indices: list[int] = []
        self.skipped: list[Skipped] = []
        # the audit's per-file facts, gathered on the same decode when `with_facts`
        self.facts: list[ImageFacts | None] = [None] * len(self.paths)
        self._images: list[torch.Tensor | None] = [None] * len(self.paths)
        self._built = False

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        if not self._built:
            self.build()
        image = self._images[i]
        if image is None:
            raise KeyError(f"image {i} ({self.paths[i]}) could not be decoded")
        return image

    @property
    def nbytes(self) -> int:
        """Memory held by the cached pixels."""
        return sum(t.numel() for t in self._images if t is not None)

    def build(self) -> list[Skipped]:
        """Decode everything not yet decoded; return the files that failed, with reasons."""
        if self._built:
            return list(self.skipped)
        p = self.preprocessing

        def load(i: int) -> torch.Tensor:
            if not self.with_facts:
                return resize_for_cache(open_image(self.paths[i], draft=p.resize_size), p)
            image, self.facts[i] = decode_with_facts(self.paths[i], p.resize_size)
            return resize_for_cache(image, p)

        failed: dict[int, str] = {}
        for i, result in run_threaded(load, len(self.paths), self.workers, self.progress):
            if isinstance(result, UnreadableImage):
                failed[i] = str(result)
            else:
                self._images[i] = result
        self.skipped = [Skipped(self.paths[i], failed[i]) for i in sorted(failed)]
        self.valid_indices = [i for i, t in enumerate(self._images) if t is not None]
        self._built = True
        return list(self.skipped)

    @classmethod
    def decoded_from(cls, source, progress: bool = False) -> DecodedCache:
        """Every readable image of another cache that decodes on access (a ShardCache: its
        records' facts and skipped files included), decoded once into RAM, in threads."""
        source.build()
        out = cls(source.paths, source.preprocessing, progress=progress)
        valid = list(source.valid_indices)
        for j, result in run_threaded(lambda j: source[valid[j]], len(valid), None, progress):
            if not isinstance(result, UnreadableImage):
                out._images[valid[j]] = result
        out.facts = list(source.facts)
        failed = {i for i in valid if out._images[i] is None}
        out.skipped = list(source.skipped) + [
            Skipped(out.paths[i], "could not be decoded from its shard") for i in sorted(failed)
        ]
        out.valid_indices = [i for i in valid if i not in failed]
        out._built = True
        return out

    def subset(self, paths: list[Path]) -> DecodedCache:
        """A built cache over some of these paths, sharing the decoded pixels (no copies)."""
        self.build()
        rows = rows_of(self.paths, paths)
        part = DecodedCache([self.paths[i] for i in rows], self.preprocessing, self.workers)
        part._images = [self._images[i] for i in rows]
        part.facts = [self.facts[i] for i in rows]
        part.valid_indices = [j for j, image in enumerate(part._images) if image is not None]
        chosen = set(part.paths)
        part.skipped = [s for s in self.skipped if s.path in chosen]
        part._built = True
        return part


def rows_of(held: list[Path], wanted: list[Path]) -> list[int]:
    """The positions in a cache's paths (`held`) of `wanted`, in order; ValueError names the
    first path it does not hold (what `subset` of any cache needs)."""
    index = {path: i for i, path in enumerate(held)}
    try:
        return [index[Path(x)] for x in wanted]
    except KeyError as err:
        raise ValueError(f"{err.args[0]} is not in this cache") from None


def cached_batches(
    cache: DecodedCache,
    rows: Sequence[int],
    transform: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
) -> Iterator[tuple[Sequence[int], torch.Tensor]]:
    """(rows, stacked transformed images) of the cached images at `rows`, `batch_size` at a
    time: what a forward pass over pixels decoded once takes, with no second decode."""
    step = max(1, batch_size)
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        yield chunk, torch.stack([transform(cache[i]) for i in chunk])


class ImageTensorDataset(torch.utils.data.Dataset):
    """Torch dataset over the cache's decodable images: (transformed float tensor, class index)."""

    def __init__(
        self,
        cache: DecodedCache,
        targets: list[int],
        transform: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        if len(targets) != len(cache):
            raise ValueError(f"got {len(targets)} targets for {len(cache)} cached images")
        cache.build()
        self.cache = cache
        self.targets = list(targets)
        self.transform = transform
        self.indices = list(cache.valid_indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, int]:
        i = self.indices[j]
        return self.transform(self.cache[i]), self.targets[i]


def decode_batch_for_inference(
    paths: list[Path], p: Preprocessing, workers: int | None = None
) -> tuple[torch.Tensor, list[int], list[Skipped]]:
    """Decode, resize and eval-transform `paths` in threads, as training's validation did.

    Returns the (N, 3, S, S) normalised batch of readable images, their indices in `paths`,
    and the files that could not be decoded.
    """
    paths = [Path(x) for x in paths]

    def load(i: int) -> torch.Tensor:
        return torch.from_numpy(prepare_input(paths[i], p))

    tensors: dict[int, torch.Tensor] = {}
    failed: dict[int, str] = {}
    for i, result in run_threaded(load, len(paths), workers):
        if isinstance(result, UnreadableImage):
            failed[i] = str(result)
        else:
            tensors[i] = result
    ok = sorted(tensors)
    size = p.input_size
    batch = torch.stack([tensors[i] for i in ok]) if ok else torch.empty(0, 3, size, size)
    return batch, ok, [Skipped(paths[i], failed[i]) for i in sorted(failed)]
