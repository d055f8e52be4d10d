"""Caller identity with the real Python MCP SDK (mcp 2.3.0) as the client: a route that requires a JWT bearer
token accepts the SDK's calls with a good token (which reaches the upstream unchanged, with the principal in
the audit log) and answers a bad or missing one with 401 + WWW-Authenticate, which the SDK surfaces as an
error promptly instead of hanging. Tokens are ES256, signed here with a key generated per test (PyJWT)."""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager

import anyio
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from conftest import TUNNEL_DOMAIN, free_port, render_config
from helpers import MODERN, pinned

ISS = "https://idp.example.test/"
AUD = "mcp-gateway"


def _key_and_jwks(kid: str):
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": "sig", "alg": "ES256"})
    return key, {"keys": [jwk]}


def _token(key, kid: str, **overrides) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": "alice", "email": "alice@example.test", "iat": now, "exp": now + 300}
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


def _gateway(stack, certs, tmp_path, jwks: dict):
    up = stack.upstream("v2")
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks))
    port = free_port()
    config = render_config(port, certs, {"docs": f"{{upstream: {up.url}, require_identity: true}}"},
                           ["127.0.0.0/8"])
    config += (f"identity:\n  jwt: {{issuer: '{ISS}', audience: {AUD}, jwks_file: '{jwks_file}', "
               f"algorithms: [ES256], claims: [email]}}\n")
    gw = stack.gateway(config_text=config, port=port)
    return up, gw


@asynccontextmanager
async def _session(url, ca_file, token: str | None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with pinned(ca_file, headers=headers) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=MODERN,
                          read_timeout_seconds=30) as client:
            yield client


async def _list_and_call(url, ca_file, token):
    with anyio.fail_after(30):
        async with _session(url, ca_file, token) as client:
            listing = await client.list_tools()
            result = await client.call_tool("search_docs", {"query": "who"})
            return listing, result


def _audit_records(audit_dir):
    out = []
    for seg in sorted(audit_dir.glob("audit-*.jsonl")):
        out += [json.loads(line) for line in seg.read_text().splitlines() if line.strip()]
    return out


def test_sdk_client_with_a_good_token_is_served_and_audited_as_its_principal(stack, certs, tmp_path):
    key, jwks = _key_and_jwks("k1")
    up, gw = _gateway(stack, certs, tmp_path, jwks)
    token = _token(key, "k1")

    listing, result = anyio.run(_list_and_call, gw.url("docs"), certs.ca_file, token)

    assert {t.name for t in listing.tools} >= {"search_docs"}
    assert result.is_error is False
    recs = up.records()
    assert [r["rpc_method"] for r in recs].count("tools/call") == 1, recs
    assert all(r["authorization"] == f"Bearer {token}" for r in recs), "the token passes through unchanged"
    gw_log = stack.dir / "gateway.log"
    decisions = [r for r in _audit_records(stack.audit_dir) if r["kind"] == "decision"]
    call = [r for r in decisions if r["data"].get("tool") == "search_docs"]
    assert call and call[0]["data"]["principal"] == "alice", (decisions, gw_log.read_text()[-2000:])
    assert call[0]["data"]["principal_claims"] == {"email": "alice@example.test"}


@pytest.mark.parametrize("case", ["expired", "wrong_audience", "wrong_key", "missing"])
def test_sdk_client_with_a_bad_token_gets_401_and_an_error_not_a_hang(stack, certs, tmp_path, case):
    key, jwks = _key_and_jwks("k1")
    up, gw = _gateway(stack, certs, tmp_path, jwks)
    token = {
        "expired": lambda: _token(key, "k1", exp=int(time.time()) - 3600),
        "wrong_audience": lambda: _token(key, "k1", aud="another-service"),
        "wrong_key": lambda: _token(ec.generate_private_key(ec.SECP256R1()), "k1"),
        "missing": lambda: None,
    }[case]()
    statuses = []

    async def attempt():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        hooks = {"response": [lambda r: _note(r)]}

        async def _note(resp):
            statuses.append((resp.status_code, resp.headers.get("www-authenticate")))

        with anyio.fail_after(30):
            async with pinned(certs.ca_file, headers=headers, event_hooks=hooks) as http:
                async with Client(streamable_http_client(gw.url("docs"), http_client=http), mode=MODERN,
                                  read_timeout_seconds=30) as client:
                    await client.call_tool("search_docs", {"query": "x"})

    started = time.monotonic()
    with pytest.raises(BaseException) as raised:
        anyio.run(attempt)
    assert time.monotonic() - started < 20, "the SDK hung on the 401"
    assert not isinstance(raised.value, TimeoutError), "the SDK hung on the 401"
    assert "401" in repr(raised.value) or "nauthorized" in repr(raised.value) or statuses, raised.value
    assert statuses and statuses[0][0] == 401, statuses
    challenge = statuses[0][1] or ""
    assert challenge.startswith('Bearer realm="mcp-gateway"'), challenge
    assert f'resource_metadata="https://docs.{TUNNEL_DOMAIN}' in challenge, challenge
    assert ('error="invalid_token"' in challenge) == (case != "missing"), challenge
    assert [r for r in up.records() if r["http_method"] == "POST"] == [], "a refused caller reached the upstream"
