"""The SSRF guard: outbound HTTP(S) to a URL a user named (a webhook receiver, a pipeline's OIDC
issuer) reaches public addresses only.

Shared by `notifications.webhooks` and `accounts.oidc`, which are siblings and may not import
each other (docs/architecture.md), hence here. It reads no settings: each caller passes its own
allow-list (WEBHOOK_ALLOWED_*, OIDC_ALLOWED_*), time limit and CA bundle.

The rules: the host is resolved with getaddrinfo and every address must be public (no private,
loopback, link-local (169.254/16, the instance metadata service 169.254.169.254 included),
unique-local, multicast, reserved, unspecified or otherwise not globally routable address,
IPv4-mapped IPv6 ones judged as the IPv4 they carry) unless the host name or the address is
allow-listed; the connection goes to the vetted address itself (never a fresh lookup, so DNS
rebinding between the check and the connect cannot switch it), the Host header and TLS SNI carry
the name, the certificate is checked against the name, and the connected socket's peer address
is checked again. Redirects are the caller's to follow (each hop through `open_http` again).

Behind an egress proxy (HTTPS_PROXY in the environment, as curl, requests and azure-core read it,
with NO_PROXY's exceptions: `proxy_for`), an https destination is reached through the proxy's
CONNECT tunnel. The name is still resolved and judged here, and the tunnel is asked for the
vetted address, not the name, so the proxy cannot resolve it to another; TLS inside the tunnel
still names the host (SNI) and checks its certificate. The proxy itself is the operator's: its
address is not judged, and the socket's peer (the proxy) is not checked again.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import socket
import ssl
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class DestinationRefusedError(Exception):
    """The guard refused the destination (the message says which rule); `host`, `address` and
    `reason` ("loopback", "private", …) are set when an address was refused."""

    def __init__(
        self, message: str, *, host: str = "", address: str = "", reason: str = ""
    ) -> None:
        super().__init__(message)
        self.host, self.address, self.reason = host, address, reason


class UnresolvableError(DestinationRefusedError):
    """The name does not resolve (no address to judge yet)."""


@dataclass(frozen=True)
class AllowList:
    """Hosts (by name, lowercase) and networks admitted although their addresses are not
    public: on-premises receivers, the tests' local servers."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, hosts: Iterable[str], cidrs: Iterable[str]) -> AllowList:
        return cls(
            hosts=frozenset(host.lower() for host in hosts),
            networks=tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs),
        )

    def admits(self, host: str, address: IPAddress) -> bool:
        return host.lower() in self.hosts or any(address in net for net in self.networks)


def forbidden_reason(address: IPAddress) -> str:
    """Why an address is no place to send to ("" when it is public)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return forbidden_reason(address.ipv4_mapped)
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        # is_private covers 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7 (unique-local)…
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not globally routable", not address.is_global),
    )
    return next((name for name, hit in checks if hit), "")


def vet_address(host: str, address: str, allow: AllowList) -> IPAddress:
    """Refuse `address` (one that `host` resolved to) unless it is public or allow-listed."""
    parsed = ipaddress.ip_address(address.split("%", 1)[0])
    reason = forbidden_reason(parsed)
    if reason and not allow.admits(host, parsed):
        raise DestinationRefusedError(
            f"{host} resolves to {parsed}, a {reason} address: refused.",
            host=host,
            address=str(parsed),
            reason=reason,
        )
    return parsed


def resolve(host: str, port: int, allow: AllowList) -> IPAddress:
    """The address to connect to; every address the name resolves to must pass (one bad
    answer among good ones is refused: DNS could hand out either)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnresolvableError(f"{host} does not resolve: {exc}.", host=host) from exc
    addresses = [vet_address(host, str(info[4][0]), allow) for info in infos]
    return addresses[0]


def connect(
    host: str,
    port: int,
    address: IPAddress,
    *,
    allow: AllowList,
    tls: bool,
    timeout: float,
    ca_bundle: str = "",
) -> Any:
    """A socket to the vetted address (never a fresh lookup of the name), its peer checked."""
    sock = socket.create_connection((str(address), port), timeout=timeout)
    try:
        vet_address(host, str(sock.getpeername()[0]), allow)
        if tls:
            sock = _tls(sock, host, ca_bundle)
    except BaseException:
        sock.close()
        raise
    return sock


def _tls(sock: socket.socket, host: str, ca_bundle: str) -> ssl.SSLSocket:
    # The system's trust store, plus `ca_bundle` (an on-premises CA) when set;
    # create_default_context verifies the chain and the host name (CERT_REQUIRED,
    # check_hostname), and server_hostname is also the SNI the receiver sees.
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context.wrap_socket(sock, server_hostname=host)


def proxy_for(url: str) -> str:
    """The egress proxy an https `url` goes through: HTTPS_PROXY (or https_proxy) from the
    environment, unless NO_PROXY names its host; "" for none (plain http, only ever to an
    allow-listed loopback receiver, goes direct)."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return ""
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get("https", "")
    # The standard library's NO_PROXY matching (what urllib's opener uses; not in the stubs).
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not proxy or bypass(parts.hostname or "", proxies):
        return ""
    return proxy


def proxy_split(proxy: str) -> tuple[str, str]:
    """An egress proxy's URL without its credentials, and the credentials ("user:password",
    percent-decoded; "" for none): clients that take Basic proxy credentials only as a header
    (urllib3's ProxyManager) get them apart."""
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    credentials = ""
    if parts.username:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return f"{parts.scheme}://{host}{port}", credentials


# The proxy's answer to CONNECT: its status line and headers, at most this long.
_CONNECT_ANSWER_MAX = 16 * 1024


def connect_through(
    proxy: str, host: str, port: int, address: IPAddress, *, timeout: float, ca_bundle: str = ""
) -> Any:
    """A TLS socket to the vetted `address` through `proxy`'s CONNECT tunnel (RFC 9110, 9.3.6),
    the handshake naming `host`. `proxy` is http://[user:password@]host[:port] (Basic
    credentials in Proxy-Authorization)."""
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.scheme != "http" or not parts.hostname:
        raise DestinationRefusedError(f"The proxy {parts.scheme}://{parts.hostname} is unusable.")
    sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)
    try:
        target = f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
        head = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        _url, credentials = proxy_split(proxy)
        if credentials:
            head.append(
                f"Proxy-Authorization: Basic {base64.b64encode(credentials.encode()).decode()}"
            )
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        status = _connect_status(sock)
        if status != 200:
            raise OSError(f"the proxy refused the tunnel to {host}:{port} (HTTP {status})")
        return _tls(sock, host, ca_bundle)
    except BaseException:
        sock.close()
        raise


def _connect_status(sock: socket.socket) -> int:
    """The status of the proxy's answer to CONNECT, read to the end of its headers and not a
    byte further (what follows is the tunnel's)."""
    answer = b""
    while not answer.endswith(b"\r\n\r\n"):
        if len(answer) > _CONNECT_ANSWER_MAX:
            raise OSError("the proxy's answer to CONNECT is too long")
        byte = sock.recv(1)
        if not byte:
            raise OSError("the proxy closed the connection instead of answering CONNECT")
        answer += byte
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1").split()
    if (
        len(status_line) < 2
        or not status_line[0].startswith("HTTP/")
        or not status_line[1].isdigit()
    ):
        raise OSError("the proxy's answer to CONNECT is not HTTP")
    return int(status_line[1])


def open_http(
    url: str,
    *,
    allow: AllowList,
    schemes: frozenset[str],
    timeout: float,
    ca_bundle: str = "",
    proxy: str | None = None,
) -> tuple[http.client.HTTPConnection, str]:
    """A connection to `url`'s host through the guard, and the path (with query) to ask for.
    DestinationRefusedError when the scheme, the name or the address is refused. `proxy`:
    the egress proxy for an https URL (None: `proxy_for(url)`, from the environment; "": none)."""
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise DestinationRefusedError(f"{parts.scheme}:// is not allowed; use https://.")
    host = parts.hostname or ""
    if not host:
        raise DestinationRefusedError("The URL names no host.")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    address = resolve(host, port, allow)
    if proxy is None:
        proxy = proxy_for(url)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    if tls and proxy:
        connection.sock = connect_through(
            proxy, host, port, address, timeout=timeout, ca_bundle=ca_bundle
        )
    else:
        connection.sock = connect(
            host, port, address, allow=allow, tls=tls, timeout=timeout, ca_bundle=ca_bundle
        )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return connection, path


def read_capped(
    response: http.client.HTTPResponse, *, limit: int, deadline: float
) -> tuple[bytes, str]:
    """The body, read up to `limit` + 1 bytes and until the `deadline` (time.monotonic());
    the second value says what cut it short ("too_large", "too_slow") or is ""."""
    received = b""
    while len(received) <= limit:
        if time.monotonic() > deadline:
            return received, "too_slow"
        # read1: whatever has arrived (one socket read), so a receiver dripping a byte at a
        # time cannot keep a read waiting past the deadline.
        chunk = response.read1(min(8192, limit + 1 - len(received)))
        if not chunk:
            return received, ""
        received += chunk
    return received, "too_large"
