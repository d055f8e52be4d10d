"""Caller confirmation end to end: the real mcp 2.3.0 client (both eras) with an elicitation callback → the
mcp-gateway binary with mutation-guard asking for approval of `delete_*` and
`approvals.caller_confirmation: {tools: ["delete_*"]}` → server_v2.

- 2026-07-28: the gateway answers `input_required` (its own `inputRequests` key, a sealed `requestState`); the
  SDK's input-required driver runs the callback and retries; the gateway verifies and strips its state.
- legacy: the gateway answers the POST with an SSE stream whose first event is its own `elicitation/create`; the
  SDK's callback answers with a POST the gateway keeps (202); the call is then forwarded on the same stream.

Checked on the upstream's request records (reached exactly once after a confirmation, never after a decline)
and in the audit log (every step, with `via`). A client without elicitation gets the operator flow; a
tampered, replayed or re-targeted `requestState` is refused (raw HTTP, to alter it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time

import anyio
import pytest
from mcp_types import ElicitResult

from conftest import PEERS, VENV_MCP1, free_port, render_config
from helpers import MODERN, mcp_session, raw_post, sse_or_json_messages
from test_approvals import BOB, api, pending
from test_audit import read_log
from test_policies import Tap, call, forwarded_calls, module, policies, route

ERAS = [MODERN, "legacy"]
KEY = "mcp-gateway/confirm"


def start(stack, certs, policy_dir, wait: str = "20s", confirm: bool = True, expire: str = "60s"):
    up = stack.upstream("v2")
    mods = {"guard": module(policy_dir, "mutation_guard", {"require_approval": ["delete_*"]})}
    port, admin = free_port(), free_port()
    text = render_config(port, certs, {"crm": route(up, ["guard"])}, ["127.0.0.0/8"],
                         policies=policies(stack, mods), audit={"dir": str(stack.dir / "audit"), "redact": "full"})
    approvals = {"db": str(stack.dir / "approvals.db"), "wait": wait, "keepalive": "1s",
                 "approvers": [{"name": "bob", "token_sha256": hashlib.sha256(BOB.encode()).hexdigest()}]}
    if confirm:
        approvals["caller_confirmation"] = {"tools": ["delete_*"], "expire": expire}
    text += f'admin: {{listen: "127.0.0.1:{admin}"}}\n'
    text += "approvals: " + json.dumps(approvals) + "\n"
    gw = stack.gateway(config_text=text, port=port)
    return up, gw, f"http://127.0.0.1:{admin}"


def one_call(gw, certs, mode: str, args: dict, answer=None):
    """One delete_customer call; `answer(params) -> ElicitResult` is the elicitation callback (None: the client
    declares no elicitation). Returns (Call, [elicitation params seen])."""
    tap, asked = Tap(), []
    kw = {}
    if answer is not None:
        async def on_elicit(context, params):
            asked.append(params)
            return answer(params)
        kw["elicitation_callback"] = on_elicit

    async def main():
        async with mcp_session(gw.url("crm"), certs.ca_file, mode, on_response=tap, **kw) as client:
            return await call(client, tap, "delete_customer", args)

    return anyio.run(main), asked


def confirm(_params):
    return ElicitResult(action="accept", content={"confirm": True})


def decline(_params):
    return ElicitResult(action="decline")


def steps(audit_dir, cnf: str) -> list[tuple]:
    """(kind, decision or approver, via) of every record naming confirmation `cnf`, in log order."""
    out = []
    for r in read_log(audit_dir):
        d = r["data"]
        if d.get("approval_id") != cnf:
            continue
        if r["kind"] == "decision":
            out.append(("decision", d["decision"], None))
        else:
            out.append((r["kind"], d.get("approver"), d.get("via")))
    return out


def confirmation_ids(audit_dir) -> list[str]:
    return [r["data"]["approval_id"] for r in read_log(audit_dir) if r["kind"] == "approval_requested"]


@pytest.mark.parametrize("mode", ERAS)
def test_caller_confirms_and_the_call_reaches_the_upstream_once(stack, certs, policy_dir, mode):
    up, gw, admin = start(stack, certs, policy_dir)
    c, asked = one_call(gw, certs, mode, {"id": "c-41"}, confirm)
    assert c.error is None and c.result.is_error is False, (c.error, c.result)
    assert c.text == "v2 deleted c-41"
    [params] = asked
    assert "delete_customer" in params.message and "'guard'" in params.message and "c-41" in params.message
    assert params.requested_schema["properties"]["confirm"]["type"] == "boolean"
    calls = forwarded_calls(up, "delete_customer")
    assert len(calls) == 1, calls
    assert calls[0]["request_id"] == c.request_id
    # (The upstream, mcp 2.3.0 MCPServer, refuses a tools/call carrying a requestState it did not seal: that it
    # answered shows the gateway stripped its own state.)
    assert pending(admin) == []  # no operator was asked

    [cnf] = confirmation_ids(stack.audit_dir)
    assert cnf.startswith("cnf_")
    via = "input_required" if mode == MODERN else "elicitation"
    assert steps(stack.audit_dir, cnf) == [
        ("decision", "require_approval", None),
        ("approval_requested", None, via),
        ("approval_notified", None, via),
        ("approval_approved", "caller", via),
        ("approval_grant_used", "caller", via),
        ("decision", "allow", None),
    ]
    allow = [r["data"] for r in read_log(stack.audit_dir)
             if r["kind"] == "decision" and r["data"].get("approval_id") == cnf and r["data"]["decision"] == "allow"]
    assert allow[0]["request_id"] == c.request_id
    assert f"allowed by the caller's confirmation {cnf}" in allow[0]["reason"], allow


@pytest.mark.parametrize("mode", ERAS)
def test_declined_call_never_reaches_the_upstream(stack, certs, policy_dir, mode):
    up, gw, _ = start(stack, certs, policy_dir)
    c, asked = one_call(gw, certs, mode, {"id": "c-42"}, decline)
    assert len(asked) == 1
    assert c.error is None and c.result.is_error is True, (c.error, c.result)
    assert "declined" in c.text and "not executed" in c.text, c.text
    assert forwarded_calls(up, "delete_customer") == []
    [cnf] = confirmation_ids(stack.audit_dir)
    via = "input_required" if mode == MODERN else "elicitation"
    assert steps(stack.audit_dir, cnf) == [
        ("decision", "require_approval", None),
        ("approval_requested", None, via),
        ("approval_notified", None, via),
        ("approval_denied", "caller", via),
    ]


@pytest.mark.parametrize("mode", ERAS)
def test_client_without_elicitation_gets_the_operator_flow(stack, certs, policy_dir, mode):
    up, gw, admin = start(stack, certs, policy_dir, wait="1s")
    c, _ = one_call(gw, certs, mode, {"id": "c-43"})
    assert c.error is None and c.result.is_error is True, (c.error, c.result)
    assert "pending" in c.text and "apr_" in c.text, c.text
    [req] = pending(admin)
    assert req["tool"] == "delete_customer" and req["id"] in c.text
    assert forwarded_calls(up, "delete_customer") == []
    assert confirmation_ids(stack.audit_dir) == [req["id"]]  # only the operator's request


def test_without_caller_confirmation_an_eliciting_client_still_gets_the_operator_flow(stack, certs, policy_dir):
    up, gw, admin = start(stack, certs, policy_dir, wait="1s", confirm=False)
    c, asked = one_call(gw, certs, MODERN, {"id": "c-44"}, confirm)
    assert asked == [] and c.result.is_error is True and "pending" in c.text, c.text
    assert len(pending(admin)) == 1
    assert forwarded_calls(up, "delete_customer") == []


# ------------------------------------------------------------------------------- raw 2026-07-28 requestState


def raw_call(gw, certs, args: dict, extra: dict | None = None, rid: int = 1, whole: bool = False) -> dict:
    body = {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {
        "name": "delete_customer", "arguments": args, **(extra or {}),
        "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN,
                  "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}}}}}
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "delete_customer"}
    resp = anyio.run(lambda: raw_post(gw.url("crm"), certs.ca_file, body, headers=headers))
    if whole:  # the upstream's own answer, whatever its status
        return {"status": resp.status, **resp.json()}
    assert resp.status == 200, (resp.status, resp.text)
    [msg] = sse_or_json_messages(resp)
    return msg["result"]


def retry(gw, certs, args, state, action="accept", confirm_value=True, whole=False):
    answer = {"action": action, "content": {"confirm": confirm_value}} if action == "accept" else {"action": action}
    return raw_call(gw, certs, args, {"requestState": state, "inputResponses": {KEY: answer}}, rid=2, whole=whole)


def tamper(state: str) -> str:
    """The same state with its payload re-encoded for other arguments (the MAC no longer matches)."""
    prefix, payload, tag = state.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["exp"] += 3_600_000
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{prefix}.{forged}.{tag}"


def test_tampered_replayed_and_retargeted_request_state_is_refused(stack, certs, policy_dir):
    up, gw, _ = start(stack, certs, policy_dir)
    first = raw_call(gw, certs, {"id": "c-50"})
    assert first["resultType"] == "input_required", first
    assert list(first["inputRequests"]) == [KEY]
    assert first["inputRequests"][KEY]["method"] == "elicitation/create"
    state = first["requestState"]
    assert state.startswith("mcpgw1.")

    forged = retry(gw, certs, {"id": "c-50"}, tamper(state))
    assert forged["isError"] is True and "Blocked by policy 'mcp-gateway'" in forged["content"][0]["text"], forged
    other = retry(gw, certs, {"id": "c-51"}, state)
    assert other["isError"] is True and "different set of arguments" in other["content"][0]["text"], other
    assert forwarded_calls(up, "delete_customer") == []

    # A fresh state, used once: passes; used again: refused.
    state = raw_call(gw, certs, {"id": "c-52"})["requestState"]
    ok = retry(gw, certs, {"id": "c-52"}, state)
    assert ok.get("isError") is not True and ok["content"][0]["text"] == "v2 deleted c-52", ok
    again = retry(gw, certs, {"id": "c-52"}, state)
    assert again["isError"] is True and "already used" in again["content"][0]["text"], again
    # Accepted without `confirm: true` is no confirmation.
    state = raw_call(gw, certs, {"id": "c-53"})["requestState"]
    unconfirmed = retry(gw, certs, {"id": "c-53"}, state, confirm_value=False)
    assert unconfirmed["isError"] is True and "did not confirm" in unconfirmed["content"][0]["text"], unconfirmed
    assert [r["rpc_id"] for r in forwarded_calls(up, "delete_customer")] == [2]


def test_an_upstream_request_state_the_call_carried_rides_inside_and_is_restored(stack, certs, policy_dir):
    """A call that is itself the retry of an upstream `input_required` (it carries the upstream's requestState
    and inputResponses): the gateway's question replaces them on the wire, its state carries them, and the
    confirmed retry reaches the upstream with them restored — MCPServer then checks its own state (this one is
    made up, so it refuses it: proof that it arrived) and never sees the gateway's."""
    up, gw, _ = start(stack, certs, policy_dir)
    carried = {"requestState": "upstream-opaque-1", "inputResponses": {"q1": {"action": "accept", "content": {}}}}
    first = raw_call(gw, certs, {"id": "c-70"}, carried)
    assert first["resultType"] == "input_required" and list(first["inputRequests"]) == [KEY], first
    assert first["requestState"].startswith("mcpgw1."), first
    answered = retry(gw, certs, {"id": "c-70"}, first["requestState"], whole=True)
    # MCPServer answers a state it cannot unseal with HTTP 400 (its choice; the gateway passes it through).
    assert answered["status"] == 400 and answered["error"]["data"]["reason"] == "invalid_request_state", answered
    assert [r["rpc_id"] for r in forwarded_calls(up, "delete_customer")] == [2]


def test_an_expired_request_state_is_refused_and_recorded(stack, certs, policy_dir):
    up, gw, _ = start(stack, certs, policy_dir, expire="1s")
    first = raw_call(gw, certs, {"id": "c-80"})
    time.sleep(1.3)
    late = retry(gw, certs, {"id": "c-80"}, first["requestState"])
    assert late["isError"] is True and "expired" in late["content"][0]["text"], late
    assert forwarded_calls(up, "delete_customer") == []
    [cnf] = confirmation_ids(stack.audit_dir)
    assert [s[0] for s in steps(stack.audit_dir, cnf)] == [
        "decision", "approval_requested", "approval_notified", "approval_expired"]


# ------------------------------------------------------------------------------- legacy, mcp 1.30.0 client


def confirm_v1(gw, certs, args: dict, answer: str) -> dict:
    cp = subprocess.run([str(VENV_MCP1), str(PEERS / "confirm_v1.py"), gw.url("crm"), "delete_customer",
                         json.dumps(args), answer, "--ca", str(certs.ca_file), "--pin", "127.0.0.1"],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, f"confirm_v1 failed ({cp.returncode})\nstderr:\n{cp.stderr[-4000:]}"
    return json.loads(cp.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("answer", ["accept", "decline"])
def test_mcp1_legacy_client_confirms_or_declines_on_the_same_stream(stack, certs, policy_dir, answer):
    up, gw, _ = start(stack, certs, policy_dir)
    out = confirm_v1(gw, certs, {"id": "c-60"}, answer)
    assert out["session_id_present"] is True
    assert len(out["asked"]) == 1 and "delete_customer" in out["asked"][0], out
    text = out["result"]["content"][0]["text"]
    if answer == "accept":
        assert out["result"].get("isError") is not True and text == "v2 deleted c-60", out
        assert len(forwarded_calls(up, "delete_customer")) == 1
    else:
        assert out["result"]["isError"] is True and "declined" in text, out
        assert forwarded_calls(up, "delete_customer") == []
    [cnf] = confirmation_ids(stack.audit_dir)
    kinds = [s[0] for s in steps(stack.audit_dir, cnf)]
    assert kinds[-1] == ("decision" if answer == "accept" else "approval_denied"), kinds
