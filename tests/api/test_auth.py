"""Nobody reaches audio, transcripts or search without a valid credential; tenants stay apart."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import numpy as np
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.api.conftest import Server, frames_of, pcm16, start_server
from tests.conftest import load_fixture
from voxindex.api.auth import check_secure
from voxindex.api.keys import ApiKeyStore
from voxindex.config import Settings
from voxindex.errors import InvalidRequestError
from voxindex.models.whisper import WhisperModel

SECRET = "test-secret-" + "x" * 32
AUD, ISS = "voxindex", "https://issuer.test"


@dataclass
class Keys:
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    rsa_public_pem: bytes
    api_key: str
    revoked_key: str


@dataclass
class AuthServer:
    server: Server
    keys: Keys


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": "alice",
        "tenant": "acme",
        "scope": "transcribe search",
        "aud": AUD,
        "iss": ISS,
        "iat": now,
        "exp": now + 600,
        **extra,
    }


def hs(**extra: Any) -> str:
    return jwt.encode(claims(**extra), SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def auth_server(tiny: WhisperModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    root = tmp_path_factory.mktemp("auth")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwks = {"keys": []}
    for kid, key, alg in (
        ("k1", rsa_key, jwt.algorithms.RSAAlgorithm),
        ("k2", ec_key, jwt.algorithms.ECAlgorithm),
    ):
        jwk = json.loads(alg.to_jwk(key.public_key()))
        jwk.update(kid=kid, alg="RS256" if kid == "k1" else "ES256", use="sig")
        jwks["keys"].append(jwk)
    (root / "jwks.json").write_text(json.dumps(jwks))
    store = ApiKeyStore(root / "data" / "keys.sqlite3")
    _, api_key = store.create("acme", ["transcribe", "search"])
    revoked, revoked_key = store.create("acme", ["search"])
    store.revoke(revoked.id)
    settings = Settings(
        cache_dir=root,
        data_dir=root / "data",
        jwt_secret=SECRET,
        jwks_file=root / "jwks.json",
        jwt_audience=AUD,
        jwt_issuer=ISS,
    )
    srv, uv, thread = start_server(settings, tiny)
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    yield AuthServer(srv, Keys(rsa_key, ec_key, pem, api_key, revoked_key))
    uv.should_exit = True
    thread.join(timeout=30)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any]) -> str:
    return f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{b64(json.dumps(payload).encode())}."


def hmac_signed_with(key: bytes, payload: dict[str, Any]) -> str:
    """An HS256 token whose HMAC key is ``key`` (PyJWT itself refuses to make one from a PEM)."""
    head = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{head}.{b64(hmac.new(key, head.encode(), hashlib.sha256).digest())}"


def bad_credentials(keys: Keys) -> dict[str, str | None]:
    confused = hmac_signed_with(keys.rsa_public_pem, claims())  # the classic algorithm-confusion attack
    return {
        "none": None,
        "garbage": "Bearer not.a.token",
        "wrong scheme": f"Basic {hs()}",
        "bad signature": "Bearer "
        + jwt.encode(claims(), "another-secret-entirely-xxxxxxxxxxxxx", algorithm="HS256"),
        "expired": "Bearer " + hs(exp=int(time.time()) - 120),
        "not yet valid": "Bearer " + hs(nbf=int(time.time()) + 600),
        "wrong audience": "Bearer " + hs(aud="someone-else"),
        "wrong issuer": "Bearer " + hs(iss="https://evil.test"),
        "alg none": "Bearer " + unsigned(claims()),
        "hs/rs confusion": "Bearer " + confused,
        "unknown kid": "Bearer " + jwt.encode(claims(), keys.rsa, algorithm="RS256", headers={"kid": "k9"}),
        "rs key for es kid": "Bearer "
        + jwt.encode(claims(), keys.rsa, algorithm="RS256", headers={"kid": "k2"}),
        "revoked key": f"Token {keys.revoked_key}",
        "unknown key": "Token vxk_000000000000_" + "a" * 43,
    }


CASES = [
    "none",
    "garbage",
    "wrong scheme",
    "bad signature",
    "expired",
    "not yet valid",
    "wrong audience",
    "wrong issuer",
    "alg none",
    "hs/rs confusion",
    "unknown kid",
    "rs key for es kid",
    "revoked key",
    "unknown key",
]


@pytest.mark.parametrize("case", CASES)
def test_rest_refuses_bad_credentials_with_401(auth_server: AuthServer, case: str) -> None:
    header = bad_credentials(auth_server.keys)[case]
    response = httpx.get(
        f"{auth_server.server.url}/v1/search",
        params={"q": "x"},
        headers={"Authorization": header} if header else {},
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize("case", CASES)
async def test_websocket_refuses_bad_credentials_with_4401(auth_server: AuthServer, case: str) -> None:
    header = bad_credentials(auth_server.keys)[case]
    async with websockets.connect(
        f"{auth_server.server.ws}/v1/stream", additional_headers={"Authorization": header} if header else {}
    ) as ws:
        message = json.loads(await ws.recv())
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert message == {"type": "error", "code": "unauthenticated", "message": message["message"]}
    assert ws.close_code == 4401


def good_credentials(keys: Keys) -> dict[str, str]:
    return {
        "hs256": f"Bearer {hs()}",
        "rs256 by kid": "Bearer " + jwt.encode(claims(), keys.rsa, algorithm="RS256", headers={"kid": "k1"}),
        "es256 by kid": "Bearer " + jwt.encode(claims(), keys.ec, algorithm="ES256", headers={"kid": "k2"}),
        "api key as Token": f"Token {keys.api_key}",
        "api key as Bearer": f"Bearer {keys.api_key}",
    }


@pytest.mark.parametrize(
    "case", ["hs256", "rs256 by kid", "es256 by kid", "api key as Token", "api key as Bearer"]
)
def test_good_credentials_are_accepted(auth_server: AuthServer, case: str) -> None:
    header = good_credentials(auth_server.keys)[case]
    response = httpx.get(
        f"{auth_server.server.url}/v1/search", params={"q": "x"}, headers={"Authorization": header}
    )
    assert response.status_code == 200, response.text


async def test_websocket_credentials_by_header_query_and_subprotocol(auth_server: AuthServer) -> None:
    token = hs()
    url = f"{auth_server.server.ws}/v1/stream"
    for connect in (
        lambda: websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}),
        lambda: websockets.connect(f"{url}?access_token={token}"),
        lambda: websockets.connect(url, subprotocols=["voxindex", f"bearer.{token}"]),  # type: ignore[list-item]
    ):
        async with connect() as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            await ws.send(json.dumps({"type": "close"}))
            assert json.loads(await ws.recv())["type"] == "closed"
    async with websockets.connect(url, subprotocols=["voxindex", f"bearer.{token}"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "voxindex"


async def test_missing_scope_is_forbidden(auth_server: AuthServer) -> None:
    search_only = hs(scope="search")
    async with websockets.connect(f"{auth_server.server.ws}/v1/stream?access_token={search_only}") as ws:
        message = json.loads(await ws.recv())
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert message["code"] == "forbidden" and "transcribe" in message["message"] and ws.close_code == 4403
    response = httpx.get(
        f"{auth_server.server.url}/v1/search",
        params={"q": "x"},
        headers={"Authorization": f"Bearer {hs(scope='transcribe')}"},
    )
    assert response.status_code == 403 and "search" in response.json()["error"]["message"]


async def test_tenants_cannot_see_each_other(auth_server: AuthServer) -> None:
    base = auth_server.server.url
    acme = {"Authorization": f"Bearer {hs(tenant='acme')}"}
    globex = {"Authorization": f"Bearer {hs(sub='bob', tenant='globex')}"}
    admin = {"Authorization": f"Bearer {hs(sub='root', tenant='ops', scope='admin')}"}
    audio = np.concatenate(
        [np.zeros(8000, np.float32), load_fixture("goforward.wav"), np.zeros(12800, np.float32)]
    )
    async with websockets.connect(f"{auth_server.server.ws}/v1/stream", additional_headers=acme) as ws:
        stream_id = json.loads(await ws.recv())["stream_id"]
        for frame in frames_of(pcm16(audio)):
            await ws.send(frame)
        await ws.send(json.dumps({"type": "close"}))
        finals = [m for m in [json.loads(r) async for r in ws] if m["type"] == "final"]
    assert finals
    await asyncio.sleep(0.5)  # vectors are added off the engine thread
    for mode in ("keyword", "vector", "hybrid"):
        own = httpx.get(
            f"{base}/v1/search", params={"q": "go forward meters", "mode": mode}, headers=acme
        ).json()
        assert any(h["stream_id"] == stream_id for h in own["hits"]), mode
        other = httpx.get(
            f"{base}/v1/search", params={"q": "go forward meters", "mode": mode}, headers=globex
        ).json()
        assert other["hits"] == [], mode
    assert all(
        s["id"] != stream_id for s in httpx.get(f"{base}/v1/streams", headers=globex).json()["streams"]
    )
    assert httpx.get(f"{base}/v1/streams/{stream_id}/transcript", headers=globex).status_code == 404
    assert httpx.delete(f"{base}/v1/streams/{stream_id}", headers=globex).status_code == 404
    assert httpx.get(f"{base}/v1/streams/{stream_id}/transcript", headers=admin).status_code == 200
    listed = httpx.get(f"{base}/v1/streams", headers=acme).json()["streams"]
    assert [s["tenant"] for s in listed if s["id"] == stream_id] == ["acme"]
    assert httpx.delete(f"{base}/v1/streams/{stream_id}", headers=acme).status_code == 200


def test_secure_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InvalidRequestError, match="no credentials configured"):
        check_secure(Settings(data_dir=tmp_path))
    with pytest.raises(InvalidRequestError, match="loopback"):
        check_secure(Settings(data_dir=tmp_path, no_auth=True, host="0.0.0.0"))
    assert check_secure(Settings(data_dir=tmp_path, no_auth=True)).no_auth
    dev = check_secure(Settings(data_dir=tmp_path, dev=True))
    assert dev.jwt_secret_file == tmp_path / "dev-jwt-secret"
    assert (tmp_path / "dev-jwt-secret").stat().st_mode & 0o077 == 0
    printed = capsys.readouterr().out.split()
    token = printed[printed.index("days):") + 1]
    decoded = jwt.decode(token, (tmp_path / "dev-jwt-secret").read_text(), algorithms=["HS256"])
    assert decoded["tenant"] == "default" and "transcribe" in decoded["scope"]
    ApiKeyStore(tmp_path / "k" / "keys.sqlite3").create("t", ["search"])
    assert check_secure(Settings(data_dir=tmp_path / "k"))  # an API key is a credential too
