"""An https webhook receiver the test starts on 127.0.0.1, with a certificate signed by a CA the
test generates (its PEM is the bundle the portal is told to trust). The receiver keeps each
request, the TLS server name (SNI) each client sent, and the client's address."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.http_receiver import Received


@dataclass
class TestCA:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    bundle: Path  # the CA's certificate as PEM: what WEBHOOK_CA_BUNDLE points to

    __test__ = False  # not a pytest test class

    def issue(self, directory: Path, dns_name: str) -> tuple[Path, Path]:
        """A server certificate for `dns_name` only (no IP address in it): (cert, key) paths."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path = directory / f"{dns_name}.pem"
        key_path = directory / f"{dns_name}-key.pem"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


def make_ca(directory: Path) -> TestCA:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Webhook test CA")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    bundle = directory / "ca.pem"
    bundle.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return TestCA(key, certificate, bundle)


@dataclass
class TlsReceiver:
    server: ThreadingHTTPServer
    status: int = 200
    requests: list[Received] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)  # SNI of each handshake
    peers: list[str] = field(default_factory=list)  # the client address of each request

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, host: str) -> str:
        return f"https://{host}:{self.port}/hooks/portal"


def start_tls_receiver(cert: Path, key: Path) -> TlsReceiver:
    receiver: TlsReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            receiver.requests.append(
                Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            receiver.peers.append(self.client_address[0])
            self.send_response(receiver.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def remember_sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        receiver.server_names.append(name)

    context.sni_callback = remember_sni

    class Server(ThreadingHTTPServer):
        def get_request(self) -> tuple[ssl.SSLSocket, tuple[str, int]]:
            sock, address = self.socket.accept()
            return context.wrap_socket(sock, server_side=True), address

        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a refused handshake (the client distrusts us) is the expected outcome

    server = Server(("127.0.0.1", 0), Handler)
    receiver = TlsReceiver(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver


TlsReceiverFactory = Callable[[str], TlsReceiver]


@pytest.fixture
def test_ca(tmp_path: Path) -> TestCA:
    return make_ca(tmp_path)


@pytest.fixture
def tls_receiver_for(tmp_path: Path, test_ca: TestCA) -> Iterator[TlsReceiverFactory]:
    """Start an https receiver whose certificate names `dns_name` (signed by `test_ca`)."""
    started: list[TlsReceiver] = []

    def start(dns_name: str) -> TlsReceiver:
        receiver = start_tls_receiver(*test_ca.issue(tmp_path, dns_name))
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.server.shutdown()
        receiver.server.server_close()
