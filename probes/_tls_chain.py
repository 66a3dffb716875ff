"""The certificate chains of a TLS connection (presented and verified): the one place that reaches past the ssl
module's public API, and why.

blackbox_exporter reports two expiries: the earliest notAfter of the chain the server presented and of the chain
OpenSSL verified. Python exposes both chains publicly only from 3.13 (`SSLObject.get_unverified_chain()` and
`get_verified_chain()`, as DER bytes); on 3.11 and 3.12 the same methods exist on the C-level `_ssl._SSLSocket`
that `ssl.SSLObject` wraps (`_sslobj`, since 3.10), returning `_ssl.Certificate` objects. No public 3.11 API gives
the presented chain at all (`getpeercert()` is the verified leaf only, and {} without verification), and rebuilding
the verified chain from the trust store would need a certificate parser the standard library does not have.
The public 3.13 methods return DER bytes, which again only a private helper decodes. So the C object is read
here, and only here:
tests/probes/test_tls_chain.py fails the day a CPython release changes it (the attribute, the method names or what
they return), instead of the expiries silently turning None. A missing accessor degrades to the verified leaf
from `getpeercert()`.
"""

from __future__ import annotations

import ssl
from typing import Any

PRIVATE_OBJECT = "_sslobj"
"""The attribute of ssl.SSLObject that holds the C-level connection (CPython 3.10-3.12)."""


def chain(ssl_object: ssl.SSLObject, verified: bool) -> list[Any] | None:
    """The chain's certificates, leaf first, each with `get_info()` (the decoded dict getpeercert() returns), or
    None when this Python offers no way to read it."""
    sslobj = getattr(ssl_object, PRIVATE_OBJECT, None)
    getter = getattr(sslobj, "get_verified_chain" if verified else "get_unverified_chain", None)
    if getter is None:
        return None
    return list(getter() or ())


__all__ = ["PRIVATE_OBJECT", "chain"]
