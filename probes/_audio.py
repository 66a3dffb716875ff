"""Recognise MP3, WAV and OGG by their headers, strictly enough that zeros, text or HTML are never audio."""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Bitrates in kbit/s by [version is MPEG-1][layer 1..3][index]; index 0 is "free", 15 is invalid.
_BITRATES = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
# Sample rates by version bits (0 = MPEG-2.5, 2 = MPEG-2, 3 = MPEG-1) and index 0..2.
_SAMPLE_RATES = {0: (11025, 12000, 8000), 2: (22050, 24000, 16000), 3: (44100, 48000, 32000)}
# Encoders pad the space after an ID3 tag with zeros; allow that much before the first frame.
_MAX_PADDING = 4096


@dataclass(frozen=True, slots=True)
class Sniffed:
    """What the first bytes are: a format name ('mp3', 'wav', 'ogg') or None, and why in words."""

    format: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class _Frame:
    length: int | None  # None for free-format bitrate, where the length is not in the header
    sample_rate: int


def _mpeg_frame(header: bytes) -> _Frame | None:
    """Parse a 4-byte MPEG audio frame header; None if sync or any field is reserved/invalid."""
    if len(header) < 4:
        return None
    b0, b1, b2, b3 = header[0], header[1], header[2], header[3]
    if b0 != 0xFF or b1 & 0xE0 != 0xE0:
        return None
    version = (b1 >> 3) & 0x03
    layer_bits = (b1 >> 1) & 0x03
    bitrate_index = b2 >> 4
    rate_index = (b2 >> 2) & 0x03
    if version == 1 or layer_bits == 0 or bitrate_index == 0x0F or rate_index == 3 or b3 & 0x03 == 2:
        return None
    layer = 4 - layer_bits
    mpeg1 = version == 3
    sample_rate = _SAMPLE_RATES[version][rate_index]
    bitrate = _BITRATES[(mpeg1, layer)][bitrate_index] * 1000
    if bitrate == 0:
        return _Frame(None, sample_rate)
    padding = (b2 >> 1) & 0x01
    if layer == 1:
        length = (12 * bitrate // sample_rate + padding) * 4
    elif layer == 3 and not mpeg1:
        length = 72 * bitrate // sample_rate + padding
    else:
        length = 144 * bitrate // sample_rate + padding
    return _Frame(length, sample_rate)


def _sniff_mp3(data: bytes) -> Sniffed:
    offset = 0
    tagged = data.startswith(b"ID3")
    if tagged:
        if len(data) < 10:
            return Sniffed(None, "ID3 tag header is cut short")
        major, revision, flags = data[3], data[4], data[5]
        size_bytes = data[6:10]
        if not 2 <= major <= 4 or revision == 0xFF or any(b & 0x80 for b in size_bytes):
            return Sniffed(None, "ID3 tag header has invalid version or size fields")
        size = (size_bytes[0] << 21) | (size_bytes[1] << 14) | (size_bytes[2] << 7) | size_bytes[3]
        offset = 10 + size + (10 if flags & 0x10 else 0)
        limit = min(len(data), offset + _MAX_PADDING)
        while offset < limit and data[offset] == 0:
            offset += 1
        if offset + 4 > len(data):
            return Sniffed(None, f"ID3 tag ({size} bytes) but no MPEG audio frame after it")
    frame = _mpeg_frame(data[offset : offset + 4])
    if frame is None:
        where = "after the ID3 tag" if tagged else "at the start"
        return Sniffed(None, f"no valid MPEG audio frame header {where}")
    if frame.length is not None and len(data) >= offset + frame.length + 4:
        following = _mpeg_frame(data[offset + frame.length : offset + frame.length + 4])
        if following is None:
            return Sniffed(None, "first MPEG frame header is not followed by another frame")
    return Sniffed("mp3", f"MPEG audio, {frame.sample_rate} Hz" + (" after an ID3 tag" if tagged else ""))


def _sniff_wav(data: bytes) -> Sniffed:
    if len(data) < 12 or data[8:12] != b"WAVE":
        return Sniffed(None, "RIFF container but not WAVE")
    offset = 12
    # Chunks are walked in order; a bounded number keeps a hostile body from spinning us.
    for _ in range(64):
        if offset + 8 > len(data):
            break
        chunk_id = data[offset : offset + 4]
        (chunk_size,) = struct.unpack_from("<I", data, offset + 4)
        if chunk_id == b"fmt ":
            if chunk_size < 16 or offset + 8 + 16 > len(data):
                return Sniffed(None, "WAVE fmt chunk is too short")
            audio_format, channels, sample_rate, _, _, bits = struct.unpack_from("<HHIIHH", data, offset + 8)
            if audio_format == 0 or channels == 0 or sample_rate == 0 or bits == 0:
                return Sniffed(None, "WAVE fmt chunk has zero format, channels, rate or sample size")
            return Sniffed("wav", f"WAVE, {channels} channel(s), {sample_rate} Hz, {bits} bit")
        offset += 8 + chunk_size + (chunk_size & 1)
    return Sniffed(None, "WAVE without a fmt chunk")


def _sniff_ogg(data: bytes) -> Sniffed:
    if len(data) < 27:
        return Sniffed(None, "OggS page header is cut short")
    version, header_type, segments = data[4], data[5], data[26]
    if version != 0:
        return Sniffed(None, f"OggS page with stream structure version {version}, expected 0")
    if header_type & ~0x07:
        return Sniffed(None, "OggS page header type has undefined flag bits set")
    if len(data) < 27 + segments:
        return Sniffed(None, "OggS page segment table is cut short")
    return Sniffed("ogg", "Ogg page, version 0")


def sniff(data: bytes) -> Sniffed:
    """Recognise the audio container/stream at the start of `data`."""
    if data.startswith(b"RIFF"):
        return _sniff_wav(data)
    if data.startswith(b"OggS"):
        return _sniff_ogg(data)
    if data.startswith(b"ID3") or data[:1] == b"\xff":
        return _sniff_mp3(data)
    return Sniffed(None, f"unknown header {data[:8].hex(' ') or '(empty)'}")
