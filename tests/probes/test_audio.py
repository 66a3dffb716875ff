"""Audio header sniffing: real and hand-built MP3/WAV/OGG are recognised; zeros, text and near-misses are not."""

from __future__ import annotations

import io
import math
import struct
import wave

import pytest

from probes._audio import sniff
from tests.support.targets import mp3_bytes, ogg_bytes, wav_bytes


def stdlib_wav() -> bytes:
    """0.1 s of a 440 Hz sine written by the standard library's wave module."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 16000 * 2 * math.pi * 440)))
                                 for i in range(1600)))
    return buf.getvalue()


MPEG_FRAME_HEADER = bytes([0xFF, 0xFB, 0x90, 0x64])  # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (stdlib_wav(), "wav"),
        (wav_bytes(), "wav"),
        (mp3_bytes(), "mp3"),
        (mp3_bytes()[20:], "mp3"),  # no ID3 tag: starts with a frame
        (b"ID3\x03\x00\x00\x00\x00\x00\x00" + MPEG_FRAME_HEADER, "mp3"),  # minimal: empty tag + one header
        (ogg_bytes(), "ogg"),
    ],
    ids=["stdlib-wav", "built-wav", "id3-mp3", "bare-mp3", "minimal-mp3", "ogg"],
)
def test_real_audio_is_recognised(data: bytes, expected: str) -> None:
    """Valid headers of each allowed format are recognised as that format."""
    assert expected == sniff(data).format


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 200,
        b"<html><body>Service Unavailable</body></html>",
        b'{"error": "tts failed"}',
        b"RIFF\x24\x00\x00\x00AVI LIST",  # RIFF but not WAVE
        b"RIFF\x04\x00\x00\x00WAVEdata\x00\x00\x00\x00",  # WAVE without fmt
        b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"not a frame",  # tag then garbage
        b"ID3\x04\x00\x00\x00\x00\x00\x80" + MPEG_FRAME_HEADER,  # size byte with the high bit set
        bytes([0xFF, 0xEB, 0x90, 0x64]),  # reserved MPEG version
        bytes([0xFF, 0xF9, 0x90, 0x64]),  # reserved layer
        bytes([0xFF, 0xFB, 0xF0, 0x64]),  # bitrate index 15
        bytes([0xFF, 0xFB, 0x9C, 0x64]),  # sample-rate index 3
        MPEG_FRAME_HEADER + b"\x00" * 500,  # a lone header followed by zeros where the next frame should be
        b"OggS\x01\x02" + b"\x00" * 30,  # Ogg version 1
        b"OggS\x00\x02",  # Ogg header cut short
    ],
    ids=["empty", "zeros", "html", "json", "riff-avi", "wave-no-fmt", "id3-garbage", "id3-bad-size",
         "mpeg-reserved-version", "mpeg-reserved-layer", "mpeg-bad-bitrate", "mpeg-bad-rate", "mpeg-lone",
         "ogg-v1", "ogg-short"],
)
def test_non_audio_is_refused(data: bytes) -> None:
    """Bytes that are not audio, or whose header has a reserved/invalid field, are not recognised."""
    found = sniff(data)
    assert None is found.format
    assert found.reason
