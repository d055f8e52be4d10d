"""Hidden tools never reach a real SDK client, whatever shape the upstream's answer takes (issue 11 §1).

The upstream is tests/peers/batch_server.py, a spec-following 2025-03-26 server that accepts batches and can
answer in the shapes an attacker's server would use: a one-element array for a single request, an SSE event
whose data is an array, an SSE stream starting with a byte-order mark, a listing in an HTTP 500 body, the
answer pushed on the session's GET stream. The clients are the real Python MCP SDK (mcp 2.3.0, legacy era:
the server answers `initialize` with 2025-03-26) and the TypeScript SDK from npm (tests/e2e/ts, installed by
tests/setup.sh), which reads more leniently: a JSON array answering a single request, responses on the GET
stream.

Each shape runs twice: through a route whose chain is empty (`policies: []`: nothing is hidden) to show what
the SDK client does with the shape, and through a route whose allowlist hides `delete_customer`, where the client must never list it — it sees the filtered listing, or an error, never the
hidden tool.
"""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from conftest import PEERS, TESTS, VENV_MCP2, Proc, free_port
from helpers import mcp_session

SHAPES = ["json", "array", "sse-array", "sse-bom", "error", "get-push"]


def start_peer(stack, shape: str) -> str:
    port = free_port()
    proc = Proc(f"batch-{shape}", [str(VENV_MCP2), str(PEERS / "batch_server.py"), str(port), shape],
                stack.dir / f"batch-{shape}.log", cwd=PEERS)
    stack.procs.append(proc)
    proc.wait_port(port)
    return f"http://127.0.0.1:{port}"


async def listed(url: str, ca_file) -> list[str] | str:
    """The tool names the SDK client lists, or the error it raised (as text)."""
    try:
        async with mcp_session(url, ca_file, "legacy") as client:
            result = await asyncio.wait_for(client.list_tools(), 20)
            return [t.name for t in result.tools]
    except BaseException as e:  # noqa: BLE001 — an ExceptionGroup from the SDK's task group, a timeout, …
        return f"error: {type(e).__name__}: {e}"


@pytest.mark.parametrize("shape", SHAPES)
def test_hidden_tools_never_reach_the_python_sdk_client(stack, certs, policy_dir, shape):
    upstream = start_peer(stack, shape)
    allow = {"path": str(policy_dir / "tool_allowlist.wasm"), "settings": {"allow": ["search_docs"]}}
    gw = stack.gateway(
        {"open": json.dumps({"upstream": upstream, "policies": []}),
         "guarded": json.dumps({"upstream": upstream, "policies": ["allow"]})},
        policies={"cache_dir": str(stack.dir / "policy-cache"), "modules": {"allow": allow}},
    )
    seen_open = asyncio.run(listed(gw.url("open"), certs.ca_file))
    seen = asyncio.run(listed(gw.url("guarded"), certs.ca_file))
    print(f"{shape}: unpoliced route → {seen_open}; guarded route → {seen}")
    assert "delete_customer" not in seen, f"{shape}: a hidden tool reached the SDK client: {seen}"
    if isinstance(seen_open, list):
        # The client reads this shape: through the policed route it must read the filtered listing.
        assert "delete_customer" in seen_open, seen_open
        assert seen == ["search_docs"], f"{shape}: {seen}"


def ts_listed(url: str, ca_file) -> list[str] | str:
    out = subprocess.run(["node", str(TESTS / "e2e" / "ts" / "client.mjs"), url, str(ca_file)],
                         capture_output=True, text=True, timeout=60)
    try:
        v = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        pytest.fail(f"the TypeScript client printed nothing usable:\n{out.stdout}\n{out.stderr}")
    return v["tools"] if "tools" in v else f"error: {v['error']}"


@pytest.mark.parametrize("shape", SHAPES)
def test_hidden_tools_never_reach_the_typescript_sdk_client(stack, certs, policy_dir, shape):
    upstream = start_peer(stack, shape)
    allow = {"path": str(policy_dir / "tool_allowlist.wasm"), "settings": {"allow": ["search_docs"]}}
    gw = stack.gateway(
        {"open": json.dumps({"upstream": upstream, "policies": []}),
         "guarded": json.dumps({"upstream": upstream, "policies": ["allow"]})},
        policies={"cache_dir": str(stack.dir / "policy-cache"), "modules": {"allow": allow}},
    )
    seen_open = ts_listed(gw.url("open"), certs.ca_file)
    seen = ts_listed(gw.url("guarded"), certs.ca_file)
    print(f"{shape}: unpoliced route → {seen_open}; guarded route → {seen}")
    assert "delete_customer" not in seen, f"{shape}: a hidden tool reached the SDK client: {seen}"
    if isinstance(seen_open, list):
        assert "delete_customer" in seen_open, seen_open
        assert seen == ["search_docs"], f"{shape}: {seen}"
