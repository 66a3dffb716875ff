"""HTTP status classes: the one table every probe, rule and sink reads a status code through.

RFC 9110 15: a status code is three digits and its first digit is its class; only 1xx-5xx are defined. A code
outside 100-599 (600, 999, 099) is not an HTTP status at all, so the transport refuses the answer as
invalid_response before any rule sees it; `status_class` answers None for one, never "server error".
"""

from __future__ import annotations

from typing import Literal

StatusClass = Literal["informational", "success", "redirect", "client_error", "server_error"]

_CLASSES: dict[int, StatusClass] = {
    1: "informational", 2: "success", 3: "redirect", 4: "client_error", 5: "server_error",
}


def valid_status(code: int) -> bool:
    """Whether `code` is an HTTP status code (100-599)."""
    return 100 <= code <= 599


def status_class(code: int | None) -> StatusClass | None:
    """The class of a status code, None for no code or one outside 100-599."""
    if code is None or not valid_status(code):
        return None
    return _CLASSES[code // 100]


def is_server_error(code: int | None) -> bool:
    """Whether `code` is a 5xx (500-599): the target's server failed; 600 and above are not."""
    return status_class(code) == "server_error"


__all__ = ["StatusClass", "is_server_error", "status_class", "valid_status"]
