"""Who is calling: JWTs (HS256 secret, RS256/ES256 public key or JWKS by `kid`) and API keys.

A credential becomes a ``Principal`` (subject, tenant, scopes) or an ``AuthError`` (401 / close
4401); a principal lacking a scope gets ``ForbiddenError`` (403 / close 4403). The algorithm is
fixed by the key that verifies it, never by the token: `alg: none` is refused, and an HS256
token is only ever checked against the HS secret, so one signed with an RSA public key (the
"algorithm confusion" attack) fails.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jwt

from voxindex.api.keys import KEY_PREFIX, ApiKeyStore
from voxindex.config import Settings
from voxindex.errors import InvalidRequestError, VoxError

SCOPES = ("transcribe", "search", "admin")
LEEWAY_S = 30
ASYMMETRIC = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256")


class AuthError(VoxError):
    code = "unauthenticated"


class ForbiddenError(VoxError):
    code = "forbidden"


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant: str
    scopes: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    def require(self, scope: str) -> Principal:
        if scope not in self.scopes and not self.is_admin:
            raise ForbiddenError(f"this credential lacks the {scope!r} scope")
        return self

    def tenant_filter(self) -> str | None:
        """The tenant a query is limited to; None (all tenants) for admins."""
        return None if self.is_admin else self.tenant


ANONYMOUS = Principal("anonymous", "default", frozenset(SCOPES))


@dataclass(frozen=True)
class AuthConfig:
    enabled: bool = True
    hs_secret: str | None = None
    public_key_file: Path | None = None
    jwks_file: Path | None = None
    audience: str | None = None
    issuer: str | None = None

    @property
    def has_verifier(self) -> bool:
        return bool(self.hs_secret or self.public_key_file or self.jwks_file)


class Authenticator:
    def __init__(self, config: AuthConfig, keys: ApiKeyStore | None = None) -> None:
        self.config = config
        self.keys = keys
        self._public: dict[str | None, jwt.PyJWK] = {}
        if config.public_key_file is not None:
            pem = config.public_key_file.read_text()
            self._public[None] = _pyjwk_from_pem(pem)
        if config.jwks_file is not None:
            data = json.loads(config.jwks_file.read_text())
            for entry in data.get("keys", []):
                key = jwt.PyJWK(entry)
                self._public[key.key_id] = key

    def authenticate(self, authorization: str | None = None, token: str | None = None) -> Principal:
        """From an ``Authorization`` header value ("Bearer x" / "Token x") or a bare token."""
        if not self.config.enabled:
            return ANONYMOUS
        credential = token
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() not in ("bearer", "token") or not value.strip():
                raise AuthError("Authorization must be 'Bearer <token>' or 'Token <api key>'")
            credential = value.strip()
        if not credential:
            raise AuthError("a credential is required: Authorization header, access_token, or subprotocol")
        if credential.startswith(KEY_PREFIX):
            return self._api_key(credential)
        return self._jwt(credential)

    def _api_key(self, key: str) -> Principal:
        record = self.keys.verify(key) if self.keys is not None else None
        if record is None:
            raise AuthError("unknown or revoked API key")
        return Principal(f"key:{record.id}", record.tenant, frozenset(record.scopes))

    def _jwt(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise AuthError(f"malformed token: {e}") from None
        alg = str(header.get("alg", "none"))
        key: Any
        if alg == "HS256":
            if not self.config.hs_secret:
                raise AuthError("HS256 tokens are not accepted by this server")
            key = self.config.hs_secret
        elif alg in ASYMMETRIC:
            found = self._public.get(header.get("kid")) or (
                self._public.get(None) if len(self._public) else None
            )
            if found is None:
                raise AuthError(f"no public key for kid {header.get('kid')!r}")
            if found.algorithm_name and found.algorithm_name != alg:
                raise AuthError(f"token algorithm {alg} does not match its key")
            key = found.key
        else:
            raise AuthError(f"token algorithm {alg!r} is not accepted")
        try:
            claims: Mapping[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "sub"], "verify_aud": self.config.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise AuthError("token audience is wrong") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token issuer is wrong") from None
        except jwt.PyJWTError as e:
            raise AuthError(f"invalid token: {e}") from None
        return principal_from_claims(claims)


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    subject = str(claims["sub"])
    raw = claims.get("scope", "")
    scopes = raw if isinstance(raw, list) else str(raw).replace(",", " ").split()
    return Principal(subject, str(claims.get("tenant") or subject), frozenset(str(s) for s in scopes))


def mint_token(secret: str, subject: str, tenant: str, scopes: list[str], ttl_s: int) -> str:
    """An HS256 development token (`voxindex token`)."""
    now = int(time.time())
    claims = {"sub": subject, "tenant": tenant, "scope": " ".join(scopes), "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm="HS256")


def _pyjwk_from_pem(pem: str) -> jwt.PyJWK:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    public = serialization.load_pem_public_key(pem.encode())
    if isinstance(public, rsa.RSAPublicKey):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
        jwk["alg"] = "RS256"
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
        jwk["alg"] = "ES256"
    else:
        raise ValueError("public key must be RSA or EC")
    return jwt.PyJWK(jwk)


# ---------------- credential set-up (at start) ----------------
def auth_config(settings: Settings) -> AuthConfig:
    secret = settings.jwt_secret
    if secret is None and settings.jwt_secret_file is not None:
        secret = settings.jwt_secret_file.read_text().strip()
    return AuthConfig(
        enabled=not settings.no_auth,
        hs_secret=secret,
        public_key_file=settings.jwt_public_key,
        jwks_file=settings.jwks_file,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )


def build_authenticator(settings: Settings) -> Authenticator:
    return Authenticator(auth_config(settings), ApiKeyStore(settings.data_dir / "keys.sqlite3"))


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_secure(settings: Settings) -> Settings:
    """Refuse to serve unauthenticated anywhere but loopback, or with no way to verify anyone.

    ``--dev`` makes a secret in the data dir (once) and prints a token ready to use.
    """
    if settings.no_auth:
        if settings.host not in LOOPBACK:
            raise InvalidRequestError(f"--no-auth only binds loopback (127.0.0.1), not {settings.host}")
        return settings
    if settings.dev and not auth_config(settings).has_verifier:
        path = settings.data_dir / "dev-jwt-secret"
        if not path.exists():
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        settings = replace(settings, jwt_secret_file=path)
        token = mint_token(path.read_text().strip(), "dev", "default", list(SCOPES), 7 * 24 * 3600)
        print(
            f"voxindex dev mode: a token for tenant 'default' with every scope (7 days):\n  {token}\n"
            f"  stream: ws://{settings.host}:{settings.port}/v1/stream?access_token=<token>\n"
            f"  search: curl -H 'Authorization: Bearer <token>' "
            f"'http://{settings.host}:{settings.port}/v1/search?q=hello'",
            flush=True,
        )
        return settings
    has_keys = any(k.revoked is None for k in ApiKeyStore(settings.data_dir / "keys.sqlite3").list())
    if not auth_config(settings).has_verifier and not has_keys:
        raise InvalidRequestError(
            "no credentials configured: set --jwt-secret-file / --jwt-public-key / --jwks-file, "
            "create an API key (voxindex keys create), use --dev for a generated development secret, "
            "or --no-auth on loopback"
        )
    return settings
