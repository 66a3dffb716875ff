"""Response bodies as probes read them: a byte cap on what is kept, decoded (inflated) bytes counted against it.

We ask every target for `Accept-Encoding: identity`. A target that compresses anyway gets its gzip or deflate body
inflated step by step, never more than the cap (plus one byte, to know it was cut) at a time, so a gzip bomb
(1 MB that inflates to 1 GB) costs the cap and no more. Any other encoding (br, zstd, compress, a chain) is not
decoded: the encoded bytes are kept, capped like any body, and the result says the target ignored identity.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

import httpx

EXCERPT_CHARS = 200
INFLATABLE = frozenset({"gzip", "x-gzip", "deflate"})
_STEP = 64 * 1024  # inflated bytes per zlib call: the temporary copy beside the buffer stays this small
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


@dataclass(frozen=True, slots=True)
class Body:
    """What was kept of a body: at most `cap` bytes (decoded), whether more followed, and the Content-Encoding
    left undecoded ('' when the bytes are the real body)."""

    data: bytes
    truncated: bool
    undecoded: str = ""


def content_encoding(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The response's Content-Encoding, lower-cased, '' for none or identity ('gzip, br' for a chain)."""
    codings = [
        part.strip().lower()
        for name, value in headers if name.lower() == b"content-encoding"
        for part in value.decode("latin-1").split(",")
    ]
    return ", ".join(c for c in codings if c and c != "identity")


async def read_body(chunks: AsyncIterator[bytes], encoding: str, cap: int) -> Body:
    """At most `cap` bytes of the body arriving in `chunks` (raw, as on the wire), inflated when `encoding` is
    gzip or deflate. Reading stops as soon as the cap is passed; a corrupt stream raises httpx.DecodingError."""
    if encoding and encoding not in INFLATABLE:
        raw = await _read_raw(chunks, cap)
        return Body(raw.data, raw.truncated, encoding)
    if not encoding:
        return await _read_raw(chunks, cap)
    inflater = _Inflater(encoding)
    buf = bytearray()
    async for chunk in chunks:
        try:
            inflater.feed(chunk, buf, cap)
        except zlib.error as exc:
            raise httpx.DecodingError(f"the {encoding} body is corrupt ({exc})") from None
        if len(buf) > cap:
            del buf[cap:]
            return Body(bytes(buf), True)
    return Body(bytes(buf), False)


async def _read_raw(chunks: AsyncIterator[bytes], cap: int) -> Body:
    buf = bytearray()
    async for chunk in chunks:
        room = cap - len(buf)
        if len(chunk) > room:
            buf += chunk[:room]
            return Body(bytes(buf), True)
        buf += chunk
    return Body(bytes(buf), False)


class _Inflater:
    """gzip (several members too) or deflate (zlib-wrapped or raw, as servers differ) inflated into a buffer that
    never grows past its cap plus one byte: zlib's max_length bounds each step, the rest waits unconsumed."""

    def __init__(self, encoding: str) -> None:
        self.gzip = encoding != "deflate"
        self._z: zlib._Decompress | None = zlib.decompressobj(31) if self.gzip else None
        self._done = False

    def feed(self, data: bytes, buf: bytearray, cap: int) -> None:
        if self._z is None:  # deflate: zlib-wrapped when the first two bytes are a zlib header, else raw
            wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._z = zlib.decompressobj(15 if wrapped else -15)
        z = self._z
        while data and not self._done and len(buf) <= cap:
            # At most 64 KiB a step, and never past cap + 1 (never 0 either, which zlib would read as "no limit").
            buf += z.decompress(data, min(cap + 1 - len(buf), _STEP))
            data = z.unconsumed_tail
            if z.eof:
                data = z.unused_data
                if self.gzip and data.startswith(b"\x1f\x8b"):  # another gzip member follows
                    self._z = z = zlib.decompressobj(31)
                else:
                    self._done = True  # trailing bytes after the stream are ignored, as browsers do


def body_excerpt(body: bytes, scrub: Callable[[str], str] | None = None) -> str:
    """Up to 200 printable characters of `body`, decoded leniently; control characters and runs of space become
    one space. `scrub` (a redactor) runs before the cut, so a cut never leaves the start of a secret behind."""
    # Four bytes a character at most, plus room for a secret that starts inside the excerpt and ends past it.
    text = body[: EXCERPT_CHARS * 4 + 8192].decode("utf-8", errors="replace")
    text = " ".join(_CONTROL.sub(" ", text).split())
    if scrub is not None:
        text = scrub(text)
    return text[:EXCERPT_CHARS]


def undecoded_phrase(encoding: str) -> str:
    """Why a body cannot be read: the target compressed it with an encoding pam-monitor does not decode."""
    return (f"the body is {encoding}-encoded although pam-monitor asked for identity, and {encoding} is not "
            "decoded (only gzip and deflate are)")


# ---------------------------------------------------------------------------------------------- missing tables

# Scanning more than this for a relation name buys nothing: error bodies are short.
_SCAN_CHARS = 64 * 1024


@dataclass(frozen=True, slots=True)
class MissingRelation:
    """A body's evidence that a table is gone: the table names (may be empty) and the error code seen."""

    tables: tuple[str, ...]
    code: str

    def describe(self) -> str:
        """'table user_settings does not exist (42P01)' or a code-only variant."""
        if not self.tables:
            return f"the body reports a missing relation ({self.code}) without naming it"
        noun = "table" if len(self.tables) == 1 else "tables"
        return f"{noun} {', '.join(self.tables)} does not exist ({self.code})"


_IDENT = r"[A-Za-z0-9_$.\-]{1,128}"
_PG_RELATION = re.compile(r'relation\s+"(' + _IDENT + r')"\s+does not exist', re.IGNORECASE)
_PGRST_TABLE = re.compile(r"Could not find the table '(" + _IDENT + r")' in the schema cache", re.IGNORECASE)
_CODE_42P01 = re.compile(r"\b42P01\b")
_CODE_PGRST205 = re.compile(r"\bPGRST205\b")


def find_missing_relation(body: bytes | str) -> MissingRelation | None:
    """Spot an error body that names a missing relation; None when it does not.

    Recognises PostgreSQL `relation "public.user_settings" does not exist`, SQLSTATE `42P01` and PostgREST
    `PGRST205` ("Could not find the table 'public.x' in the schema cache"), also inside JSON strings.
    A leading `public.` is dropped so the name matches the db probe's table names.
    """
    text = body[: _SCAN_CHARS].decode("utf-8", errors="replace") if isinstance(body, bytes) else body[:_SCAN_CHARS]
    text = text.replace('\\"', '"')
    names: dict[str, None] = {}
    code: str | None = None
    for pattern, found_code in ((_PG_RELATION, "42P01"), (_PGRST_TABLE, "PGRST205")):
        for match in pattern.finditer(text):
            names.setdefault(_normalise_table(match.group(1)))
            code = code or found_code
    if _CODE_PGRST205.search(text):
        code = "PGRST205"
    elif code is None and _CODE_42P01.search(text):
        code = "42P01"
    if code is None:
        return None
    return MissingRelation(tuple(list(names)[:5]), code)


def _normalise_table(name: str) -> str:
    return name[len("public."):] if name.startswith("public.") else name
