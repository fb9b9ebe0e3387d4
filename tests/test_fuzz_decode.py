"""Property-based tests of safe decoding (`imgrec.data.decode`): whatever bytes arrive, the
answer is an RGB image or one short line (UnreadableImage, an ImgrecError), never another
exception, a crash, a hang or unbounded memory.

Images of every mode Pillow writes (1, L, LA, P, RGB, RGBA, I;16, I, F, CMYK), sizes down to
one pixel and aspect ratios up to 4000:1, in every format imgrec lists; then truncated, bit
flipped, overwritten, spliced, with headers that lie about the size, or other formats' magic
numbers in front of noise. Decoding runs in a worker process under an address-space limit
(RLIMIT_AS), so an allocation the size of a lie fails there and not in the test run; the worker
also reports its peak resident memory, and a worker that dies or takes too long is a failure.

`make test` runs the "ci" Hypothesis profile (40 examples per test), `make fuzz` thousands.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import selectors
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

pytestmark = pytest.mark.fuzz

ADDRESS_SPACE_LIMIT = 2 << 30  # the worker's RLIMIT_AS: about 13 times its size at rest
PEAK_RSS_LIMIT_MB = 1024  # resident memory the worker may ever reach
REPLY_TIMEOUT_S = 60.0  # one decode on a busy 2-core machine: far beyond any honest file
MAX_REASON = 200  # characters in a skip reason: one line in a CSV cell and on stderr

MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I", "F", "CMYK")
FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP")
MAGIC = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff\xe0",
    b"GIF89a",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"II*\x00",
    b"MM\x00*",
    b"BM",
    b"%!PS-Adobe-3.0 EPSF-3.0\n",
    b"8BPS",
    b"P6\n",
    b"\x00\x00\x01\x00",  # ICO
    b"DDS ",
    b"\x00\x00\x00\x0cjP  \r\n\x87\n",  # JPEG 2000
    b"SIMPLE  =                    T",  # FITS
)


# ---- the worker: decodes under a memory limit, one request per line ---------------------------
def _worker() -> None:
    """Read length-prefixed byte strings on stdin; answer one JSON line each with what
    open_image (on the bytes) and probe_image (on a file of them) did."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
    from imgrec.data.decode import open_image, probe_image

    file = Path(tempfile.mkdtemp()) / "input.img"
    while header := sys.stdin.buffer.read(4):
        data = sys.stdin.buffer.read(struct.unpack("<I", header)[0])
        file.write_bytes(data)
        _reset_peak()
        reply = {"open": _outcome(open_image, data), "probe": _outcome(probe_image, file)}
        reply["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(reply), flush=True)


def _reset_peak() -> None:
    """Start this example's peak afresh (Linux: writing 5 to clear_refs resets VmHWM)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mb() -> float:
    """The worker's own peak resident memory: VmHWM, not ru_maxrss, which Linux carries over
    from the parent across exec (a pytest process that has loaded torch is over a GB)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def _outcome(decode, source) -> dict:
    from imgrec.errors import ImgrecError

    try:
        result = decode(source)
    except ImgrecError as exc:
        return {"kind": "imgrec", "message": str(exc)}
    except BaseException as exc:  # noqa: BLE001 - exactly what the property forbids
        import traceback

        return {"kind": "other", "message": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc()}  # fmt: skip
    if isinstance(result, Image.Image):
        return {"kind": "image", "mode": result.mode, "size": list(result.size)}
    return {"kind": "size", "size": list(result)}


class Decoder:
    """The test side of the worker: restarts it when it died (a shrinking Hypothesis replays
    the example that killed it)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process: subprocess.Popen | None = None

    def decode(self, data: bytes) -> dict:
        if self.process is None or self.process.poll() is not None:
            self._start()
        assert self.process is not None and self.process.stdin is not None
        try:
            self.process.stdin.write(struct.pack("<I", len(data)) + data)
            self.process.stdin.flush()
        except BrokenPipeError:
            pytest.fail(f"the decoding worker died before reading the input:\n{self._log()}")
        line = self._reply()
        return json.loads(line)

    def _reply(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            ready = selector.select(REPLY_TIMEOUT_S)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.close()
            why = "took too long" if not ready else "died (crashed or was killed)"
            pytest.fail(f"decoding {why}:\n{self._log()}")
        return line

    def _start(self) -> None:
        self.log = self.folder / f"worker-{os.getpid()}-{id(self)}.log"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        with open(self.log, "ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, __file__, "--worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=sink,
                text=False,
                env=env,
            )
        self.process.stdout = io.TextIOWrapper(self.process.stdout, encoding="utf-8")

    def _log(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture(scope="module")
def decoder(tmp_path_factory):
    worker = Decoder(tmp_path_factory.mktemp("fuzz-decode"))
    yield worker
    worker.close()


def assert_safe(reply: dict) -> None:
    """The property: each call gave a result or one short imgrec line, in bounded memory."""
    for call in ("open", "probe"):
        outcome = reply[call]
        assert outcome["kind"] != "other", f"{call}: {outcome['message']}\n{outcome['trace']}"
        if outcome["kind"] == "imgrec":
            message = outcome["message"]
            assert message and "\n" not in message and len(message) <= MAX_REASON, message
    if reply["open"]["kind"] == "image":
        assert reply["open"]["mode"] == "RGB"
    assert reply["peak_rss_mb"] < PEAK_RSS_LIMIT_MB, reply


# ---- strategies ---------------------------------------------------------------------------------
SIZES = st.one_of(
    st.tuples(st.integers(1, 200), st.integers(1, 200)),
    st.sampled_from([(1, 1), (1, 4000), (4000, 1), (2, 3000), (3000, 3), (1, 2), (2, 1)]),
)


def _pixels(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    """An image of `mode` filled with seeded noise (float modes include NaN and infinity)."""
    rng = np.random.default_rng(seed)
    if mode == "F":
        values = rng.normal(0, 1e3, size[::-1]).astype(np.float32)
        values.flat[rng.integers(0, values.size, 3)] = [np.nan, np.inf, -np.inf]
        return Image.fromarray(values, "F")
    n = len(Image.new(mode, size).tobytes())
    im = Image.frombytes(mode, size, rng.bytes(n))
    if mode == "P":
        im.putpalette(list(rng.integers(0, 256, 768, dtype=np.uint8)))
    return im


def _encode(im: Image.Image, fmt: str) -> bytes:
    """`im` in `fmt`; a mode the format cannot hold is sent as RGB (Pillow refuses it)."""
    for candidate in (im, im.convert("RGB")):
        buffer = io.BytesIO()
        try:
            candidate.save(buffer, fmt)
            return buffer.getvalue()
        except (OSError, ValueError, KeyError, TypeError):
            continue
    raise AssertionError(f"cannot write {im.mode} as {fmt}")


@st.composite
def valid_images(draw) -> bytes:
    mode, fmt, size = draw(st.sampled_from(MODES)), draw(st.sampled_from(FORMATS)), draw(SIZES)
    return _encode(_pixels(mode, size, draw(st.integers(0, 2**32 - 1))), fmt)


@st.composite
def damaged(draw) -> bytes:
    """A valid image, then one to four edits: truncation, bit flips, overwrites, insertions,
    deletions and repeated spans."""
    data = bytearray(draw(valid_images()))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        edit = draw(st.sampled_from(("cut", "flip", "set", "insert", "delete", "repeat")))
        if edit == "cut":
            del data[at:]
        elif edit == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "set":
            data[at] = draw(st.sampled_from((0, 0xFF, 0x7F, 0x80, draw(st.integers(0, 255)))))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif edit == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 256))] * draw(st.integers(1, 8))
    return bytes(data)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@st.composite
def lying_headers(draw) -> bytes:
    """Well-formed headers (valid checksums) that claim another size, bit depth or colour
    type than the data that follows; dimensions up to 2**31 - 1."""
    width = draw(st.one_of(st.integers(1, 70_000), st.sampled_from([0, 2**31 - 1, 65_535])))
    height = draw(st.one_of(st.integers(1, 70_000), st.sampled_from([0, 2**31 - 1, 1])))
    kind = draw(st.sampled_from(("png", "bmp", "gif")))
    body = draw(st.binary(max_size=2048))
    if kind == "png":
        depth, colour = draw(st.sampled_from([(8, 2), (16, 6), (1, 0), (8, 3), (16, 0), (4, 4)]))
        ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
        idat = zlib.compress(body)
        return (
            b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b"")
        )  # fmt: skip
    if kind == "bmp":
        bits = draw(st.sampled_from([1, 4, 8, 16, 24, 32]))
        info = struct.pack("<IiiHHIIiiII", 40, width, -height, 1, bits, 0, len(body), 0, 0, 0, 0)
        return b"BM" + struct.pack("<IHHI", 54 + len(body), 0, 0, 54) + info + body
    screen = struct.pack("<HHBBB", width & 0xFFFF, height & 0xFFFF, 0x80, 0, 0)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width & 0xFFFF, height & 0xFFFF, 0)
    return b"GIF89a" + screen + bytes(6) + frame + b"\x08" + body[:255] + b"\x00;"


# ---- the properties ---------------------------------------------------------------------------
# Five times the profile's examples: a decode takes milliseconds, and the file stays within seconds.
FUZZ = settings(
    max_examples=5 * settings.default.max_examples,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(data=valid_images())
def test_valid_images_decode_to_rgb_of_the_probed_size(decoder, data):
    reply = decoder.decode(data)
    assert_safe(reply)
    assert reply["open"]["kind"] == "image", reply["open"]
    assert reply["open"]["size"] == reply["probe"]["size"]


@FUZZ
@given(data=damaged())
def test_damaged_images_give_an_image_or_one_line(decoder, data):
    assert_safe(decoder.decode(data))


@FUZZ
@given(data=lying_headers())
def test_lying_headers_give_an_image_or_one_line(decoder, data):
    assert_safe(decoder.decode(data))


@FUZZ
@given(magic=st.sampled_from(MAGIC), tail=st.binary(max_size=4096))
def test_other_formats_and_noise_give_an_image_or_one_line(decoder, magic, tail):
    assert_safe(decoder.decode(magic + tail))


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    _worker()
