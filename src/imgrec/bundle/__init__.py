"""The model file format (model.imgrec): safetensors + JSON metadata, never pickle."""

from imgrec.bundle.format import (
    FORMAT,
    FORMAT_VERSION,
    BundleError,
    load_bundle,
    read_metadata,
    save_bundle,
)

__all__ = ["FORMAT", "FORMAT_VERSION", "BundleError", "load_bundle", "read_metadata", "save_bundle"]
