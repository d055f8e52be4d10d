"""Real MCP SDK clients through the gateway: both protocol eras with mcp 2.3.0, the legacy era with mcp 1.30.0,
unbuffered SSE progress, and X-Gateway-Request-Id correlation between client and upstream."""

from __future__ import annotations

import time

import anyio
import pytest

from conftest import run_client_v1
from helpers import MODERN, mcp_session

TOOLS = {"search_docs", "get_customer", "delete_customer", "slow_progress"}


def _text(result) -> str:
    return "".join(c.text for c in result.content if getattr(c, "type", None) == "text")


def _check_tools(listing):
    by_name = {t.name: t for t in listing.tools}
    assert set(by_name) == TOOLS
    assert by_name["search_docs"].annotations.read_only_hint is True
    assert by_name["delete_customer"].annotations.destructive_hint is True


async def _list_and_call(url, ca_file, mode):
    async with mcp_session(url, ca_file, mode) as client:
        listing = await client.list_tools()
        result = await client.call_tool("search_docs", {"query": "e2e"})
        return client.protocol_version, listing, result


def test_modern_era_mcp2_client_to_v2_server(stack, certs):
    up = stack.upstream("v2")
    gw = stack.gateway({"docs": up.url})

    version, listing, result = anyio.run(_list_and_call, gw.url("docs"), certs.ca_file, MODERN)

    assert version == MODERN
    _check_tools(listing)
    assert result.is_error is False
    assert _text(result) == "v2 results for e2e"
    recs = up.records()
    methods = [r["rpc_method"] for r in recs]
    assert "initialize" not in methods, methods
    assert methods.count("tools/list") == 1 and methods.count("tools/call") == 1, methods
    for r in recs:
        assert r["protocol_version"] == MODERN, r
        assert r["host"] == f"127.0.0.1:{up.port}", f"Host not rewritten to the upstream authority: {r}"


def test_legacy_era_mcp2_client_to_v2_server(stack, certs):
    up = stack.upstream("v2")
    gw = stack.gateway({"docs": up.url})

    version, listing, result = anyio.run(_list_and_call, gw.url("docs"), certs.ca_file, "legacy")

    assert version.startswith("2025-"), version
    _check_tools(listing)
    assert _text(result) == "v2 results for e2e"
    recs = up.records()
    methods = [r["rpc_method"] for r in recs if r["http_method"] == "POST"]
    assert methods[:2] == ["initialize", "notifications/initialized"], methods
    assert "tools/list" in methods and "tools/call" in methods
    # Closing the client ends the session with DELETE (Mcp-Session-Id passed through both ways).
    assert recs[-1]["http_method"] == "DELETE", [(r["http_method"], r["rpc_method"]) for r in recs]


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_legacy_era_mcp1_client(stack, certs, kind):
    """mcp 1.30.0 client (subprocess, own venv) → gateway → server_v1 (FastMCP) or server_v2 (MCPServer)."""
    up = stack.upstream(kind)
    gw = stack.gateway({"crm": up.url})

    out = run_client_v1(gw.url("crm"), certs.ca_file)

    assert out["protocol_version"].startswith("2025-"), out
    assert out["server_name"] == f"e2e-upstream-{kind}"
    assert out["session_id_present"] is True
    assert {t["name"] for t in out["tools"]} == TOOLS
    annotations = {t["name"]: t["annotations"] for t in out["tools"]}
    assert annotations["delete_customer"] == {"destructiveHint": True}
    assert out["call"]["isError"] is False
    assert out["call"]["content"][0]["text"] == f"{kind} results for gateway"
    assert [p[1] for p in out["progress"]] == [1.0, 2.0], out["progress"]
    assert out["progress_result"]["content"][0]["text"] == f"{kind} done after 2 steps"
    methods = [r["rpc_method"] for r in up.records() if r["http_method"] == "POST"]
    assert methods[0] == "initialize" and methods.count("tools/call") == 2, methods


@pytest.mark.parametrize("mode", [MODERN, "legacy"])
def test_sse_progress_arrives_incrementally(stack, certs, mode):
    """slow_progress(3, 0.7) reports at ~0 s, 0.7 s, 1.4 s and returns at ~2.1 s: if the gateway buffered the
    stream, every notification would arrive together with the result."""
    up = stack.upstream("v2")
    gw = stack.gateway({"docs": up.url})
    arrivals: list[tuple[float, float]] = []

    async def main():
        async with mcp_session(gw.url("docs"), certs.ca_file, mode) as client:
            async def on_progress(progress, total, message):
                arrivals.append((time.monotonic(), progress))

            result = await client.call_tool("slow_progress", {"steps": 3, "delay": 0.7},
                                            progress_callback=on_progress)
            return result, time.monotonic()

    result, done_at = anyio.run(main)

    assert _text(result) == "v2 done after 3 steps"
    assert [p for _, p in arrivals] == [1.0, 2.0, 3.0]
    lead = done_at - arrivals[0][0]
    assert lead >= 1.0, f"first progress only {lead:.2f}s before the result: the SSE stream was buffered"
    gaps = [b[0] - a[0] for a, b in zip(arrivals, arrivals[1:])]
    assert all(g >= 0.4 for g in gaps), f"progress notifications arrived in a burst: gaps {gaps}"


@pytest.mark.parametrize("mode", [MODERN, "legacy"])
def test_request_id_sent_upstream_and_returned(stack, certs, mode):
    up = stack.upstream("v2")
    gw = stack.gateway({"docs": up.url})
    seen: list[tuple[str, str | None]] = []

    async def on_response(resp):
        seen.append((resp.request.method, resp.headers.get("x-gateway-request-id")))

    async def main():
        async with mcp_session(gw.url("docs"), certs.ca_file, mode, on_response=on_response) as client:
            await client.list_tools()
            await client.call_tool("get_customer", {"id": "c-1"})

    anyio.run(main)

    recs = up.records()
    assert recs, "upstream received nothing"
    missing = [r for r in recs if not r["request_id"]]
    assert not missing, f"forwarded without X-Gateway-Request-Id: {missing}"
    upstream_ids = [r["request_id"] for r in recs]
    assert len(set(upstream_ids)) == len(upstream_ids), f"request ids not unique: {upstream_ids}"
    no_id = [m for m, rid in seen if not rid]
    assert not no_id, f"responses without X-Gateway-Request-Id for: {no_id} (all: {seen})"
    client_ids = {rid for _, rid in seen}
    assert client_ids <= set(upstream_ids), f"response ids {client_ids} not seen upstream {upstream_ids}"
    post_ids = {r["request_id"] for r in recs if r["http_method"] == "POST"}
    assert post_ids <= client_ids, f"upstream POST ids {post_ids} not all returned to the client {client_ids}"


def test_full_hostname_route_key(stack, certs):
    """A route key with a dot is a full host name, matched exactly (here `localhost`, in the test cert's SAN)."""
    up = stack.upstream("v2")
    gw = stack.gateway({"localhost": up.url})

    async def main():
        async with mcp_session(f"https://localhost:{gw.port}/mcp", certs.ca_file, MODERN) as client:
            return await client.call_tool("search_docs", {"query": "full"})

    result = anyio.run(main)
    assert _text(result) == "v2 results for full"
    assert [r["rpc_name"] for r in up.records() if r["rpc_method"] == "tools/call"] == ["search_docs"]
