"""Data stage: list labelled images, decode them safely, audit, split, augment and cache them.

Names load on first use: listing, decoding and the audit's scan need no torch, so commands
that only look at files start in a fraction of a second.
"""

from importlib import import_module

_WHERE = {
    "DecodedCache": "cache",
    "ImageTensorDataset": "cache",
    "decode_batch_for_inference": "cache",
    "Dataset": "dataset",
    "Sample": "dataset",
    "Skipped": "dataset",
    "load_dataset": "dataset",
    "IMAGE_EXTENSIONS": "decode",
    "MAX_PIXELS": "decode",
    "UnreadableImage": "decode",
    "open_image": "decode",
    "probe_image": "decode",
    "check_split": "split",
    "read_split_file": "split",
    "write_split_file": "split",
    "AUGMENT_PRESETS": "transforms",
    "Preprocessing": "preprocess",
    "model_input": "preprocess",
    "prepare_input": "preprocess",
    "eval_transform": "transforms",
    "resize_for_cache": "transforms",
    "train_transform": "transforms",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"imgrec.data.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'imgrec.data' has no attribute {name!r}")
