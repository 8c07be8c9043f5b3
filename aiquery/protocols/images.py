"""Images that ride along a chat message (ai_query's `files =>`): what the bytes are.

The type is sniffed from the bytes, never taken from a file name: PNG, JPEG, GIF and WebP,
the formats every vision API accepts. The header also gives the size in pixels, which the
emulator's vision models describe. The client refuses anything else before sending.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

FORMATS = ("PNG", "JPEG", "GIF", "WebP")


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str  # one of FORMATS
    media_type: str
    width: int
    height: int


def sniff(data: bytes) -> ImageInfo | None:
    """The image's format and size from its header, or None if it is not a whole header of
    a PNG, JPEG, GIF or WebP image."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return _info("PNG", "image/png", width, height)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack("<HH", data[6:10])
            return _info("GIF", "image/gif", width, height)
        if data.startswith(b"\xff\xd8"):
            return _jpeg(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
    except (struct.error, IndexError):
        return None
    return None


def _info(fmt: str, media_type: str, width: int, height: int) -> ImageInfo | None:
    return ImageInfo(fmt, media_type, width, height) if width > 0 and height > 0 else None


def _jpeg(data: bytes) -> ImageInfo | None:
    """Walk the JPEG's segments to its start-of-frame marker, which holds the size."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return _info("JPEG", "image/jpeg", width, height)
        at += 2 + length
    return None


def _webp(data: bytes) -> ImageInfo | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return _info("WebP", "image/webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return _info("WebP", "image/webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return _info("WebP", "image/webp", width, height)
    return None
