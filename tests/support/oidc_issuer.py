"""A local OIDC issuer, as a CI system is one: a real HTTP server on a loopback port serving its
discovery document and JWKS, with signing keys the test generates (cryptography) and can rotate.

`oidc_issuer` starts one per test; `issuer.mint(...)` signs a token with the current key (or any
key, algorithm or header the test chooses), and `issuer.fetches` counts the key-set requests, so
a test can see the cache, the rotation refetch and its rate limit at work.

It also hands tokens to a job the way the CI systems do, for running the examples/ pipelines:
GitHub Actions' `GET {ACTIONS_ID_TOKEN_REQUEST_URL}&audience=…` (answer `{"value": …}`) and
Azure DevOps' `POST {System.OidcRequestUri}?…&serviceConnectionId=…` (answer
`{"oidcToken": …}`), each behind the job's own bearer token (`job_token`) and minting a token
with `job_claims`.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

AUDIENCE = "api://workload-identity-portal"
MOVED = "/moved/.well-known/openid-configuration"  # the discovery document, never redirected


@dataclass
class SigningKey:
    kid: str
    algorithm: str
    private: Any

    @property
    def public_jwk(self) -> dict[str, Any]:
        converter = RSAAlgorithm if self.algorithm[:2] in ("RS", "PS") else ECAlgorithm
        jwk: dict[str, Any] = json.loads(converter.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.algorithm}


def new_key(algorithm: str = "RS256") -> SigningKey:
    if algorithm.startswith("ES"):
        curve = ec.SECP256R1() if algorithm == "ES256" else ec.SECP384R1()
        private: Any = ec.generate_private_key(curve)
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(kid=uuid.uuid4().hex[:16], algorithm=algorithm, private=private)


@dataclass
class LocalIssuer:
    """The issuer's state; the server reads it on each request."""

    url: str = ""
    keys: list[SigningKey] = field(default_factory=list)
    fetches: int = 0
    discovery_fetches: int = 0
    job_token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    job_claims: dict[str, Any] = field(default_factory=dict)
    tokens_handed_out: int = 0
    down: bool = False  # answer 503 to discovery and key-set requests
    # SSRF knobs: the discovery document's jwks_uri (default: this server's), a redirect of the
    # discovery request (to be followed to MOVED on any host), the key set sent a few bytes at a
    # time over `drip_seconds`, and padding that makes the key set `pad_bytes` longer.
    jwks_uri: str = ""
    discovery_location: str = ""
    drip_seconds: float = 0.0
    pad_bytes: int = 0

    @property
    def current(self) -> SigningKey:
        return self.keys[-1]

    def rotate(self, algorithm: str = "RS256", *, keep_old: bool = False) -> SigningKey:
        """Publish a new key (and drop the old ones unless `keep_old`)."""
        key = new_key(algorithm)
        self.keys = [*self.keys, key] if keep_old else [key]
        return key

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """GitHub Actions-shaped claims for contoso/payments on main, valid for 5 minutes."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "repo:contoso/payments:ref:refs/heads/main",
            "repository": "contoso/payments",
            "ref": "refs/heads/main",
            "environment": "production",
            "jti": uuid.uuid4().hex,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def mint(
        self,
        *,
        key: SigningKey | None = None,
        algorithm: str | None = None,
        headers: dict[str, Any] | None = None,
        **claim_overrides: Any,
    ) -> str:
        key = key or self.current
        return jwt.encode(
            self.claims(**claim_overrides),
            key.private,
            algorithm=algorithm or key.algorithm,
            headers={"kid": key.kid, **(headers or {})},
        )


def _handler_for(issuer: LocalIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _job_token(self, answer_key: str, audience: str | None) -> None:
            scheme, _, credentials = self.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or credentials != issuer.job_token:
                self.send_error(401)
                return
            issuer.tokens_handed_out += 1
            claims = {**issuer.job_claims, **({"aud": audience} if audience else {})}
            self._json({answer_key: issuer.mint(**claims)})

        def do_POST(self) -> None:
            # Azure DevOps: the audience is not the caller's to choose.
            if urlsplit(self.path).path == "/oidctoken":
                self._job_token("oidcToken", None)
            else:
                self.send_error(404)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/token":
                self._job_token("value", parse_qs(url.query).get("audience", [None])[0])
                return
            if self.path.startswith("/.well-known/") and issuer.down:
                issuer.discovery_fetches += self.path.endswith("openid-configuration")
                self.send_error(503)
                return
            if url.path in ("/.well-known/openid-configuration", MOVED):
                issuer.discovery_fetches += 1
                if issuer.discovery_location and url.path != MOVED:
                    self.send_response(302)
                    self.send_header("Location", issuer.discovery_location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = {
                    "issuer": issuer.url,
                    "jwks_uri": issuer.jwks_uri or f"{issuer.url}/.well-known/jwks",
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                }
            elif self.path == "/.well-known/jwks":
                issuer.fetches += 1
                body = {"keys": [key.public_jwk for key in issuer.keys]}
                if issuer.pad_bytes:
                    body["padding"] = "x" * issuer.pad_bytes
            else:
                self.send_error(404)
                return
            self._json(body)

        def _json(self, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if not issuer.drip_seconds:
                self.wfile.write(payload)
                return
            pieces = [payload[i : i + 64] for i in range(0, len(payload), 64)]
            for piece in pieces:
                self.wfile.write(piece)
                self.wfile.flush()
                time.sleep(issuer.drip_seconds / len(pieces))

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def oidc_issuer(settings: Any) -> Iterator[LocalIssuer]:
    """A running local issuer with one RS256 key, at http://127.0.0.1:<port>, admitted by the
    SSRF guard by its host name (so `localhost`, the same address, is still refused)."""
    settings.OIDC_ALLOWED_HOSTS = ["127.0.0.1"]
    issuer = LocalIssuer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(issuer))
    issuer.url = f"http://127.0.0.1:{server.server_address[1]}"
    issuer.rotate()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
