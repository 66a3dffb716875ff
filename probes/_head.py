"""A response head made plain before llhttp (httptools) parses it: as lenient as curl where RFC 9112 lets a user
agent be, strict where leniency would misjudge the answer.

llhttp is a strict parser (it was written for servers). A user agent may, and sometimes must, accept more:

- obs-fold (a header value continued on a line starting with a space or tab): RFC 9112 5.2 says a user agent
  MUST accept it in responses, replacing the fold with a space;
- bare LF line endings (RFC 9112 2.2: a recipient MAY recognise a single LF as a line terminator);
- whitespace between a header name and its colon (RFC 9112 5.1: removed from responses, as a proxy must);
- Content-Length repeated with one value, or as a list of one value ("2, 2") (RFC 9110 8.6);
- Transfer-Encoding with Content-Length: chunked wins, and the connection is closed after (RFC 9112 6.1, 6.3);
- Transfer-Encoding whose codings are only `identity` (no longer defined): no coding; a Content-Length frames the
  body, else it runs until the server closes.

Strict, as curl and httpx are too: Content-Length values that differ, a transfer coding other than chunked
(gzip, xchunked: nothing to decode it with, and a shape used for smuggling), a Content-Length that is not a
number (RFC 9112 6.3 makes that an unrecoverable error for a user agent; curl reads "2x" as 2), a head over
MAX_HEAD_BYTES. Those raise InvalidResponse.

Almost every real head needs none of this: `normalise` checks for the shapes with a few byte searches (C speed)
and returns the head untouched when none is there.
"""

from __future__ import annotations

from dataclasses import dataclass

from probes._errors import InvalidResponse

MAX_HEAD_BYTES = 256 * 1024
"""A response head larger than this is refused (curl's limit is 100 KB, httpx's 100 KB per line)."""


@dataclass(frozen=True, slots=True)
class Head:
    """A head llhttp will take (status line and header lines, CRLF-terminated, ending in a blank line), and
    whether the connection must be closed after this answer (Content-Length and Transfer-Encoding both came)."""

    data: bytes
    close_after: bool = False


def head_end(buf: bytes | bytearray, start: int = 0) -> int:
    """The index just past the blank line that ends the head in `buf` (CRLF or bare LF), or -1 while it has not
    arrived; `start` is where to search from (a few bytes before the previous end of the buffer)."""
    crlf = buf.find(b"\n\r\n", start)
    lf = buf.find(b"\n\n", start)
    if crlf < 0:
        return -1 if lf < 0 else lf + 2
    if lf < 0 or crlf < lf:
        return crlf + 3
    return lf + 2


def normalise(head: bytes) -> Head:
    """`head` (through its blank line) in the shape llhttp accepts, or InvalidResponse (see the module doc)."""
    if (b"\n " in head or b"\n\t" in head or b" :" in head or b"\t:" in head
            or head.count(b"\n") != head.count(b"\r\n")):
        return _rebuild(head)
    lowered = head.lower()
    # With no whitespace before a colon (checked above), a header name is followed by ':' at once.
    length = lowered.find(b"\ncontent-length:")
    if b"\ntransfer-encoding:" in lowered:
        if (length < 0 and lowered.count(b"\ntransfer-encoding:") == 1
                and b"\ntransfer-encoding: chunked\r\n" in lowered):
            return Head(head)  # the usual chunked answer
        return _rebuild(head)
    if length >= 0 and (lowered.find(b"\ncontent-length:", length + 1) >= 0
                        or b"," in lowered[length:lowered.find(b"\n", length + 1)]):
        return _rebuild(head)
    return Head(head)


def _rebuild(head: bytes) -> Head:
    lines = [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise InvalidResponse("the answer is an empty head")
    status, fields = lines[0], list[tuple[bytes, bytes | None]]()
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            previous = fields[-1] if fields else None
            if previous is None or previous[1] is None:
                raise InvalidResponse("a header line starts with whitespace but continues no header")
            folded = line.strip(b" \t")
            fields[-1] = (previous[0], previous[1] + b" " + folded if folded else previous[1])
            continue
        name, colon, value = line.partition(b":")
        # A line without a colon is passed on as it came: llhttp refuses it, as curl and httpx do.
        fields.append((name.rstrip(b" \t"), value.strip(b" \t")) if colon else (line, None))
    close_after = False
    lengths = [v for n, v in fields if v is not None and n.lower() == b"content-length"]
    codings_raw = [v for n, v in fields if v is not None and n.lower() == b"transfer-encoding"]
    codings = [c.strip().lower() for v in codings_raw for c in v.split(b",") if c.strip()]
    codings = [c for c in codings if c != b"identity"]
    # Only identity (no longer a defined coding) is no coding: the header goes, and a Content-Length beside it
    # frames the body; without one the body runs until the server closes the connection.
    fields = [(n, v) for n, v in fields if n.lower() != b"transfer-encoding"]
    if codings:
        fields = [(n, v) for n, v in fields if n.lower() != b"content-length"]
        if any(c != b"chunked" for c in codings):
            raise InvalidResponse(f"unsupported transfer coding {b', '.join(codings).decode('latin-1')[:60]!r}")
        fields.append((b"Transfer-Encoding", b"chunked"))
        close_after = bool(lengths)
    elif lengths:
        values = {part.strip() for value in lengths for part in value.split(b",")}
        if len(values) != 1:
            raise InvalidResponse("conflicting Content-Length values")
        fields = [(n, v) for n, v in fields if n.lower() != b"content-length"]
        fields.append((b"Content-Length", values.pop()))
    out = [status, b"\r\n"]
    for field_name, field_value in fields:
        out.extend((field_name, b"\r\n") if field_value is None else (field_name, b": ", field_value, b"\r\n"))
    out.append(b"\r\n")
    return Head(b"".join(out), close_after)


__all__ = ["MAX_HEAD_BYTES", "Head", "head_end", "normalise"]
