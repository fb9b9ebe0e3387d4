"""How many pixels a request will decode, read from the image headers before any decoding.

A 1.4 MB request of 16 flat PNGs declares 16 x 88 megapixels; decoding them took 24 s and
5.5 GB. The bytes on the wire say nothing about that, the headers do: each upload's width x
height, at the reduced scale a JPEG will be drafted to (as data.decode.open_image does), is
summed before decoding. A request over the budget is refused with 413, and `PixelBudget`
holds concurrent requests to the same total, so many requests at the limit cannot add up.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from PIL import Image


def decoded_pixels(data: bytes, draft: int) -> int:
    """Pixels that decoding `data` will produce (0 when the header cannot be read: the decoder
    then refuses the file with its own reason, naming it)."""
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            if im.format == "JPEG" and draft:
                im.draft(None, (draft, draft))  # as open_image does: a reduced DCT scale
            width, height = im.size
    except Exception:  # any header PIL cannot parse, or a size it refuses outright
        return 0
    return width * height


def request_pixels(uploads: list[bytes], draft: int) -> int:
    """The sum of `decoded_pixels` over a request's uploads."""
    return sum(decoded_pixels(data, draft) for data in uploads)


def over_budget_message(pixels: int, limit: int, images: int) -> str:
    """The one sentence a client gets for a request over the budget."""
    count = "this image holds" if images == 1 else f"these {images} images hold"
    return (
        f"{count} {_megapixels(pixels)} megapixels, more than the {_megapixels(limit)} "
        "megapixels this server decodes per request: send fewer or smaller images"
    )


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f}".removesuffix(".0")


class PixelBudget:
    """At most `limit` pixels being decoded at once across all requests; others wait their turn.

    A request needs its whole share at once; one that alone exceeds the limit is refused
    before it gets here (413), so a waiting request always fits once the others finish.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def hold(self, pixels: int) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_use + pixels <= self.limit)
            self.in_use += pixels
        try:
            yield
        finally:
            async with self._changed:
                self.in_use -= pixels
                self._changed.notify_all()
