"""Client-side helpers for the e2e tests (mcp==2.3.0 / httpx2, run inside pytest's process).

- `pinned()`      : httpx2.AsyncClient trusting the test CA, dialling 127.0.0.1 for any host name while keeping
                    the URL's host for Host, SNI and certificate checks (tests/peers/pinned_http.py).
- `mcp_session()` : an `mcp.Client` over Streamable HTTP with that httpx client. The era is chosen with
                    `mode=`: "2026-07-28" (modern, stateless, no probe), "legacy" (initialize handshake) or "auto".
- `raw_post()`    : one raw HTTP request (returns status, headers, body text/JSON).
"""

from __future__ import annotations

import base64
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from pinned_http import pinned_client


class AnyTunnelHost(dict):
    """Pin map for pinned_http: every name (under the tunnel domain or not) dials 127.0.0.1."""

    def __contains__(self, host):
        return True

    def __getitem__(self, host):
        return "127.0.0.1"


PINS = AnyTunnelHost()
MODERN = "2026-07-28"
ACCEPT = "application/json, text/event-stream"


def pinned(ca_file: Path, **kw) -> httpx2.AsyncClient:
    kw.setdefault("timeout", httpx2.Timeout(15.0, read=30.0))
    return pinned_client(httpx2, ca_file=str(ca_file), pins=PINS, **kw)


@asynccontextmanager
async def mcp_session(url: str, ca_file: Path, mode: str, on_response=None, **client_kw):
    """`mcp.Client` connected through the gateway. `on_response(httpx2.Response)` sees every HTTP response;
    `client_kw` goes to `mcp.Client` (e.g. `elicitation_callback=`)."""
    hooks = {"response": [on_response]} if on_response else {}
    async with pinned(ca_file, event_hooks=hooks) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode,
                          read_timeout_seconds=30, **client_kw) as client:
            yield client


@dataclass
class RawResponse:
    status: int
    headers: httpx2.Headers
    text: str

    def json(self):
        return json.loads(self.text)


async def raw_post(url: str, ca_file: Path, body: str | bytes | dict, headers: dict | None = None,
                   sni: str | None = None) -> RawResponse:
    """POST `body` (a dict is JSON-encoded) with MCP-ish default headers; `sni` forces the TLS SNI."""
    hdrs = {"Accept": ACCEPT, "Content-Type": "application/json", **(headers or {})}
    content = json.dumps(body) if isinstance(body, dict) else body
    extensions = {"sni_hostname": sni} if sni else None
    async with pinned(ca_file) as http:
        req = http.build_request("POST", url, content=content, headers=hdrs, extensions=extensions)
        resp = await http.send(req)
        return RawResponse(resp.status_code, resp.headers, resp.text)


def modern_tools_call(name: str, arguments: dict, rid: int = 1) -> dict:
    """A complete 2026-07-28 tools/call body (with the required _meta envelope)."""
    return {
        "jsonrpc": "2.0",
        "id": rid,
        "method": "tools/call",
        "params": {
            "name": name,
            "arguments": arguments,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }


def b64_header(value: str) -> str:
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="


def sse_or_json_messages(resp: RawResponse) -> list[dict]:
    """JSON-RPC messages of a response body that is either one JSON object or an SSE stream."""
    ctype = resp.headers.get("content-type", "")
    if ctype.startswith("text/event-stream"):
        out = []
        for block in resp.text.split("\n\n"):
            data = [line[5:].lstrip() for line in block.splitlines() if line.startswith("data:")]
            if data and "".join(data).strip():
                out.append(json.loads("\n".join(data)))
        return out
    return [resp.json()]
