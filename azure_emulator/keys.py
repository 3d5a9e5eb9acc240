"""RS256 signing keys: the Entra token signer and one per sandbox cluster's OIDC issuer.

Keys are stored as PEM strings inside the state document so they survive restarts; loaded key
objects are cached by key id because parsing a PEM on every request would be wasteful.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from typing import Any, TypedDict

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


class KeyRecord(TypedDict):
    """A signing key as persisted: its key id and the private key in PKCS#8 PEM."""

    kid: str
    pem: str


_cache: dict[str, rsa.RSAPrivateKey] = {}
_cache_lock = threading.Lock()


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def generate() -> KeyRecord:
    """A fresh 2048-bit RSA key; its kid is the RFC 7638 thumbprint, as Kubernetes uses."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    canonical = f'{{"e":"{_b64url_uint(numbers.e)}","kty":"RSA","n":"{_b64url_uint(numbers.n)}"}}'
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    record = KeyRecord(kid=kid.decode("ascii"), pem=pem)
    with _cache_lock:
        _cache[record["kid"]] = key
    return record


def private_key(record: KeyRecord) -> rsa.RSAPrivateKey:
    """The key object for a stored record (parsed once, then cached)."""
    with _cache_lock:
        cached = _cache.get(record["kid"])
        if cached is not None:
            return cached
    key = serialization.load_pem_private_key(record["pem"].encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("stored signing key is not RSA")
    with _cache_lock:
        _cache[record["kid"]] = key
    return key


def public_jwk(record: KeyRecord) -> dict[str, str]:
    """The public half as a JWK (what a JWKS endpoint publishes)."""
    numbers = private_key(record).public_key().public_numbers()
    return {
        "use": "sig",
        "kty": "RSA",
        "kid": record["kid"],
        "alg": "RS256",
        "n": _b64url_uint(numbers.n),
        "e": _b64url_uint(numbers.e),
    }


def sign(record: KeyRecord, claims: dict[str, Any], *, typ: str = "JWT") -> str:
    """An RS256 JWT over ``claims`` with this key's kid in the header."""
    return jwt.encode(
        claims, private_key(record), algorithm="RS256", headers={"kid": record["kid"], "typ": typ}
    )


def verify(record: KeyRecord, token: str, **options: Any) -> dict[str, Any]:
    """The verified claims of an RS256 JWT signed by this key; ``jwt.PyJWTError`` otherwise.

    Extra keyword arguments go to ``jwt.decode`` (``audience``, ``options``, ``leeway``...).
    """
    return jwt.decode(token, private_key(record).public_key(), algorithms=["RS256"], **options)
