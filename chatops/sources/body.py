"""Reading a webhook's request body with a size limit, gzip included.

aiohttp already undoes ``Content-Encoding: gzip``/``deflate`` while streaming, so the limit applies to the
decoded bytes and a small compressed bomb cannot grow past it. A gzip body sent *without* the header (some
proxies strip it) is recognised by its magic bytes and decompressed here, under the same limit.
"""

from __future__ import annotations

import zlib

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["BodyError", "read_body"]

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 256 * 1024


class BodyError(Exception):
    """The body could not be read; ``status`` (400 or 413) and ``message`` say why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _too_large(limit: int) -> BodyError:
    return BodyError(413, f"request body larger than {limit} bytes (after decompression); send smaller batches")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole (decoded) body, at most ``limit`` bytes; raises :class:`BodyError`."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    parts: list[bytes] = []
    size = 0
    try:
        while chunk := await request.content.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            parts.append(chunk)
    except (web.RequestPayloadError, HttpProcessingError, zlib.error) as exc:  # a corrupt compressed stream
        raise BodyError(400, f"cannot decode the request body ({exc})") from exc
    body = b"".join(parts)
    if body.startswith(_GZIP_MAGIC):
        body = _gunzip(body, limit)
    return body


def _gunzip(data: bytes, limit: int) -> bytes:
    decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = decoder.decompress(data, limit + 1)
    except zlib.error as exc:
        raise BodyError(400, f"body looks gzip-compressed but does not decompress ({exc})") from exc
    if len(out) > limit:
        raise _too_large(limit)
    if not decoder.eof:
        raise BodyError(400, "gzip body is truncated")
    return out
