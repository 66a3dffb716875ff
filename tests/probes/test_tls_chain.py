"""probes/_tls_chain.py reads CPython's C-level SSL object (no public API gives the presented chain before 3.13):
these tests fail the day a CPython release moves or changes it, rather than letting the chain expiries go None."""

from __future__ import annotations

import asyncio
import ssl
import sys
from pathlib import Path

import pytest

from probes import _tls_chain
from tests.support.targets import self_signed_tls


@pytest.mark.process  # makes its certificates with openssl
async def test_the_private_accessor_still_gives_both_chains(tmp_path: Path) -> None:
    """On a real TLS connection to 127.0.0.1 (a self-signed certificate trusted through its file), the C object
    sits at `_sslobj` and both chains come back as certificates whose get_info() has the notAfter getpeercert()
    shows; the verified chain is that certificate too."""
    cert, server_tls = self_signed_tls(tmp_path)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]
    client = ssl.create_default_context(cafile=str(cert))
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="127.0.0.1")
        ssl_object = writer.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        assert hasattr(ssl_object, _tls_chain.PRIVATE_OBJECT), f"CPython {sys.version} moved it"
        presented = _tls_chain.chain(ssl_object, verified=False)
        verified = _tls_chain.chain(ssl_object, verified=True)
        leaf = ssl_object.getpeercert()
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    assert presented is not None, f"CPython {sys.version} changed the chain accessors"
    assert verified is not None, f"CPython {sys.version} changed the chain accessors"
    assert leaf["notAfter"] == presented[0].get_info()["notAfter"] == verified[0].get_info()["notAfter"]
