"""Tool definitions that change silently (the "rug pull") end to end: a real MCP SDK upstream — server_v2
(mcp 2.3.0, modern 2026-07-28 era) and server_v1 (mcp 1.30.0, legacy 2025-xx era) — is restarted on the same
port with `search_docs` changed ($MCP_RUG_PULL: its description, its annotations, its input schema). A real SDK
client of the same era lists and calls through the gateway (route `on_tool_change: hide`, the default):

- the changed tool vanishes from the listing and its calls are refused, without reaching the upstream;
- the change is an audit record `tool_changed` naming the field that changed, and `mcp-gateway tools changes
  --config` lists it (no running gateway needed);
- the upstream going back to the pinned definition voids the pending change; an operator's
  `mcp-gateway tools accept` makes the new definition the pin (an audit record naming who), and the tool is
  served again.
"""

from __future__ import annotations

import hashlib
import json
import subprocess

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from conftest import free_port, render_config, wait_for
from helpers import MODERN, mcp_session
from test_audit import read_log

TOKEN = "alice-approver-token-0123456789"
ROUTE = "rug"
TOOLS = {"search_docs", "get_customer", "delete_customer", "slow_progress"}
FIELD = {"description": "description", "annotations": "annotations", "schema": "inputSchema"}


def start(stack, policy_dir, up):
    port, admin = free_port(), free_port()
    text = render_config(
        port, stack.certs, {ROUTE: json.dumps({"upstream": up.url, "policies": ["allow"]})}, ["127.0.0.0/8"],
        policies={"cache_dir": str(stack.dir / "policy-cache"),
                  "modules": {"allow": {"path": str(policy_dir / "tool_allowlist.wasm"),
                                        "settings": {"allow": ["*"]}}}},
        audit={"dir": str(stack.audit_dir)},
    )
    text += (f'admin: {{listen: "127.0.0.1:{admin}"}}\n'
             f"approvals: {{approvers: [{{name: alice, token_sha256: {hashlib.sha256(TOKEN.encode()).hexdigest()}}}]}}\n")
    gw = stack.gateway(config_text=text, port=port)
    return gw, f"http://127.0.0.1:{admin}"


def session(gw, certs, mode, steps):
    """On one client session: ("list",) → the tool names; ("call", name) → the text, or the MCPError."""
    out = []

    async def main():
        async with mcp_session(gw.url(ROUTE), certs.ca_file, mode) as client:
            for step in steps:
                if step[0] == "list":
                    out.append({t.name for t in (await client.list_tools()).tools})
                else:
                    try:
                        r = await client.call_tool(step[1], {"query": "q"})
                        out.append("".join(c.text for c in r.content if getattr(c, "type", None) == "text"))
                    except MCPError as e:
                        out.append(e)

    anyio.run(main)
    return out


def restart(stack, up, kind, change: str):
    up.proc.stop()
    return stack.upstream(kind, env={"MCP_RUG_PULL": change}, port=up.port)


def forwarded_calls(up, tool) -> int:
    return sum(1 for r in up.records() if r["rpc_method"] == "tools/call" and r["rpc_name"] == tool)


def cli(gateway_bin, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(gateway_bin), *map(str, args)], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def tool_records(stack, kind):
    return [r["data"] for r in read_log(stack.audit_dir) if r["kind"] == kind]


@pytest.mark.parametrize("kind,mode", [("v2", MODERN), ("v1", "legacy")], ids=["modern-mcp2.3", "legacy-mcp1.30"])
def test_a_restarted_sdk_server_that_changes_a_tool_has_it_hidden_refused_and_recorded_until_accepted(
        stack, certs, policy_dir, gateway_bin, kind, mode):
    up = stack.upstream(kind)
    gw, admin = start(stack, policy_dir, up)
    listed, text = session(gw, certs, mode, [("list",), ("call", "search_docs")])
    assert listed == TOOLS
    assert text == f"{kind} results for q"

    for n, change in enumerate(["description", "annotations", "schema"], start=1):
        up = restart(stack, up, kind, change)
        listed, refused = session(gw, certs, mode, [("list",), ("call", "search_docs")])
        assert listed == TOOLS - {"search_docs"}, f"{change}: the changed tool is hidden"
        assert isinstance(refused, MCPError) and "Unknown tool: search_docs" in str(refused), (change, refused)
        assert forwarded_calls(up, "search_docs") == 0, f"{change}: the refused call reached the upstream"
        changed = wait_for(lambda: len(tool_records(stack, "tool_changed")) >= n and tool_records(stack, "tool_changed"),
                           10, f"the tool_changed record of the {change} change")
        assert len(changed) == n
        rec = changed[-1]
        assert (rec["route"], rec["tool"], rec["action"]) == (ROUTE, "search_docs", "hide"), rec
        assert rec["fields"] == [FIELD[change]], rec
        cp = cli(gateway_bin, "tools", "changes", "--json", "--config", gw.config_file)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        pending = json.loads(cp.stdout)["changes"]
        assert [(c["tool"], c["changed"]) for c in pending] == [("search_docs", [FIELD[change]])], pending
        # Back to the pinned definition: the pending change is void and the tool served again.
        up = restart(stack, up, kind, "")
        listed, text = session(gw, certs, mode, [("list",), ("call", "search_docs")])
        assert listed == TOOLS, change
        assert text == f"{kind} results for q"

    # An operator accepts a change: the new definition is the pin from then on.
    up = restart(stack, up, kind, "description")
    listed, = session(gw, certs, mode, [("list",)])
    assert "search_docs" not in listed
    cp = cli(gateway_bin, "tools", "accept", ROUTE, "search_docs", "--admin", admin, "--token", TOKEN)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "accepted by alice" in cp.stdout, cp.stdout
    listed, text = session(gw, certs, mode, [("list",), ("call", "search_docs")])
    assert listed == TOOLS
    assert text == f"{kind} results for q"
    assert forwarded_calls(up, "search_docs") == 1
    accepted = tool_records(stack, "tool_accepted")
    assert [(a["tool"], a["accepted_by"]) for a in accepted] == [("search_docs", "alice")]
    assert accepted[0]["new_digest"] == tool_records(stack, "tool_changed")[-1]["new_digest"]
