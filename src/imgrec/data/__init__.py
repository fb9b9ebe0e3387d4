"""Data stage: list labelled images, decode them safely, split, augment and cache them."""

from imgrec.data.cache import DecodedCache, ImageTensorDataset, decode_batch_for_inference
from imgrec.data.dataset import Dataset, Sample, Skipped, load_dataset
from imgrec.data.decode import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    UnreadableImage,
    open_image,
    probe_image,
)
from imgrec.data.split import check_split, read_split_file, write_split_file
from imgrec.data.transforms import (
    AUGMENT_PRESETS,
    Preprocessing,
    eval_transform,
    resize_for_cache,
    train_transform,
)

__all__ = [
    "AUGMENT_PRESETS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "Dataset",
    "DecodedCache",
    "ImageTensorDataset",
    "Preprocessing",
    "Sample",
    "Skipped",
    "UnreadableImage",
    "check_split",
    "decode_batch_for_inference",
    "eval_transform",
    "load_dataset",
    "open_image",
    "probe_image",
    "read_split_file",
    "resize_for_cache",
    "train_transform",
    "write_split_file",
]
