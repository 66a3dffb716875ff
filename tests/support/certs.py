"""Certificates made in the test (a CA, intermediates, leaves that expire when asked) and a TLS server that serves
them on 127.0.0.1, for the TLS probes, metrics and CertificateExpiring tests."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = 86400.0
OK_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def _name(common: str, org: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Leaf:
    """A server certificate on disk: `chain` (the leaf, then any intermediate, as the server presents them),
    `key`, and the notAfter of the leaf and of the earliest certificate in the chain, in Unix seconds."""

    chain: Path
    key: Path
    not_after: float
    earliest: float


class Authority:
    """A CA made in the test; `ca_file` is its PEM, for a target's `ca_file`. It issues leaves for 127.0.0.1 that
    expire `days_left` days from now (negative: already expired), directly or through an intermediate."""

    def __init__(self, directory: Path, name: str = "pam-monitor test CA", days: float = 365) -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name(name, "pam-monitor tests")
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(_pem(self.cert))
        self._issued = 0

    def issue(self, days_left: float, *, common: str = "api.pam.test", org: str = "PAM Backend",
              intermediate_days_left: float | None = None) -> Leaf:
        """A leaf for 127.0.0.1 and localhost; with `intermediate_days_left`, signed by an intermediate CA (itself
        signed by this one) that expires then, presented after the leaf."""
        now = dt.datetime.now(dt.UTC)
        signer_key, signer_cert, chain = self.key, self.cert, []
        if intermediate_days_left is not None:
            signer_key = ec.generate_private_key(ec.SECP256R1())
            signer_cert = self._sign(
                x509.CertificateBuilder().subject_name(_name("pam-monitor test intermediate", "pam-monitor tests"))
                .public_key(signer_key.public_key())
                .not_valid_before(now - dt.timedelta(days=2))
                .not_valid_after(now + dt.timedelta(days=intermediate_days_left))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(_ca_usage(), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False),
                self.key, self.cert)
            chain.append(signer_cert)
        key = ec.generate_private_key(ec.SECP256R1())
        not_after = now + dt.timedelta(days=days_left)
        leaf = self._sign(
            x509.CertificateBuilder().subject_name(_name(common, org)).public_key(key.public_key())
            .not_valid_before(min(now, not_after) - dt.timedelta(days=30)).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False),
            signer_key, signer_cert)
        self._issued += 1
        chain_path = self.directory / f"leaf-{self._issued}.pem"
        key_path = self.directory / f"leaf-{self._issued}.key"
        chain_path.write_bytes(b"".join(_pem(c) for c in (leaf, *chain)))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        expiries = [c.not_valid_after_utc.timestamp() for c in (leaf, *chain)]
        return Leaf(chain_path, key_path, expiries[0], min(expiries))

    def _sign(self, builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey,
              issuer: x509.Certificate) -> x509.Certificate:
        return (builder.issuer_name(issuer.subject).serial_number(x509.random_serial_number())
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                         encipher_only=False, decipher_only=False)


def server_context(leaf: Leaf, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A server-side context presenting `leaf`'s chain; `maximum` caps the protocol (TLS 1.2-only servers)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(leaf.chain, leaf.key)
    if maximum is not None:
        context.maximum_version = maximum
    return context


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: _TlsServer = self.server  # type: ignore[assignment]
        raw: socket.socket = self.request
        raw.settimeout(5)
        # A client that refuses the certificate ends the handshake: nothing to answer.
        with contextlib.suppress(OSError), server.context.wrap_socket(raw, server_side=True) as tls:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = tls.recv(4096)
                if not chunk:
                    return
                head += chunk
            tls.sendall(OK_ANSWER)


class _TlsServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(("127.0.0.1", 0), _Handler)


@contextlib.contextmanager
def serve_tls(context: ssl.SSLContext) -> Iterator[str]:
    """An https server on 127.0.0.1 answering every request 200 `ok`, in threads; yields its base URL. Load another
    chain into `context` (load_cert_chain) to renew its certificate: new connections present it."""
    server = _TlsServer(context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
