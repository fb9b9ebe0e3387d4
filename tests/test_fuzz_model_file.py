"""Property-based fuzzing of model files (issue 15): crafted metadata and safetensors headers.

Invariant for every input: read_metadata / load_bundle / load_model return a result or raise
ImgrecError whose message is one line naming the file, never another exception, and parsing a
header stays within a bounded amount of memory (tracemalloc peak). `make test` runs the short
"ci" profile (40 examples each), `make fuzz` the long one.
"""

from __future__ import annotations

import copy
import json
import struct
import tracemalloc

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as save_safetensors

from imgrec.bundle import FORMAT, load_bundle, read_metadata
from imgrec.bundle.model import TrainedModel, load_model, model_metadata
from imgrec.config import TrainConfig
from imgrec.data.preprocess import Preprocessing
from imgrec.errors import ImgrecError
from imgrec.models.registry import create_model, get_spec

pytestmark = pytest.mark.fuzz
PEAK_BYTES = 256 << 20  # far above a real header's ~1 MB of Python objects
QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
FIXTURE = settings(suppress_health_check=QUIET)  # a fresh file name per example is enough


def _real_model() -> tuple[dict[str, torch.Tensor], dict]:
    spec = get_spec("cnn-scratch")
    torch.manual_seed(0)
    network = create_model(spec, 2, weights="none").eval()
    config = TrainConfig(model=spec.name, weights="none", head=False, epochs=1)
    prep = Preprocessing(spec.input_size, spec.mean, spec.std, spec.resize_size)
    model = TrainedModel(network, spec, config, prep, ["ants", "bees"])
    metadata = model_metadata(model, {"accuracy": 0.9, "best_epoch": {"val_acc": 0.9}})
    state = {k: v.contiguous() for k, v in network.state_dict().items()}
    return state, metadata


STATE, METADATA = _real_model()
DEEP = "[" * 3000 + "]" * 3000


def _paths(value, prefix=()):
    """Every key path of the metadata, so a mutation can reach any field."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            yield from _paths(v, (*prefix, i))


PATHS = [p for p in _paths(METADATA) if p]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 60000, 10**12, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e-45, -0.0, 1e308]),
    st.text(max_size=30),
    st.sampled_from(["", "\x1b[31m", "\ud800", "[/]", "a" * 300, DEEP]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated_metadata(draw) -> str:
    """The real metadata with a few fields replaced by hostile values or removed."""
    metadata = copy.deepcopy(METADATA)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = metadata
        try:
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced a parent
    return json.dumps(metadata).replace(json.dumps(DEEP), DEEP)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _file(metadata_text: str, state=STATE) -> bytes:
    header = {"format": FORMAT, "format_version": "1", "imgrec": metadata_text}
    return save_safetensors(state, metadata=header)


def _holds(path, reader):
    """The invariant: a result or one line of ImgrecError naming the file; bounded memory."""
    tracemalloc.start()
    try:
        reader(path)
    except ImgrecError as exc:
        message = str(exc)
        assert "\n" not in message and str(path) in message, message
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"{reader.__name__} peaked at {peak:,} bytes"


@FIXTURE
@given(text=mutated_metadata())
def test_mutated_metadata(tmp_path, text):
    path = _write(tmp_path / "m.imgrec", _file(text))
    _holds(path, read_metadata)
    _holds(path, load_bundle)


@settings(suppress_health_check=QUIET, max_examples=min(settings().max_examples, 25))
@given(text=mutated_metadata())
def test_mutated_metadata_through_load_model(tmp_path, text):
    _holds(_write(tmp_path / "m.imgrec", _file(text)), load_model)


REAL = _file(json.dumps(METADATA))
(REAL_LENGTH,) = struct.unpack("<Q", REAL[:8])
REAL_HEADER = REAL[8 : 8 + REAL_LENGTH]


@st.composite
def crafted_files(draw) -> bytes:
    """Safetensors files with a lying length, a mangled header or a cut data section."""
    header = draw(
        st.one_of(
            st.just(REAL_HEADER),
            st.binary(max_size=200),
            st.builds(
                lambda i, b: REAL_HEADER[:i] + b + REAL_HEADER[i + len(b) :],
                st.integers(0, len(REAL_HEADER)),
                st.binary(min_size=1, max_size=8),
            ),
            st.builds(lambda n: b"[" * n + b"]" * n, st.integers(30, 20_000)),
            st.builds(
                lambda a, b: json.dumps(
                    {"w": {"dtype": "F32", "shape": [1], "data_offsets": [a, b]}}
                ).encode(),
                st.integers(-(2**65), 2**65),
                st.integers(-(2**65), 2**65),
            ),
        )
    )
    length = draw(
        st.one_of(
            st.just(len(header)),
            st.integers(0, 2**64 - 1),
            st.integers(-8, 8).map(lambda d: max(0, len(header) + d)),
        )
    )
    data = REAL[8 + REAL_LENGTH :]
    data = data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data
    return struct.pack("<Q", length) + header + data


@FIXTURE
@given(content=crafted_files())
def test_crafted_safetensors_headers(tmp_path, content):
    path = _write(tmp_path / "h.imgrec", content)
    _holds(path, read_metadata)
    _holds(path, load_bundle)


def test_the_unmutated_file_loads(tmp_path):
    path = _write(tmp_path / "real.imgrec", REAL)
    assert read_metadata(path)["classes"] == ["ants", "bees"]
    assert load_model(path).classes == ["ants", "bees"]
