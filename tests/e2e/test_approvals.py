"""Human approval end to end: the real mcp 2.3.0 client (both eras) → the mcp-gateway binary with the
mutation-guard component asking for approval of `delete_*` → server_v2. Approvers act through the admin
listener's HTTP API (from a thread, while the SDK call is held) and through `mcp-gateway approvals`.

Checked on the upstream's request records: a held call reaches the upstream only after the approval, exactly
once; a denied one never; a grant lets the identical retry through once.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request

import anyio
import pytest

from conftest import free_port, render_config
from helpers import MODERN, mcp_session
from test_policies import Tap, call, forwarded_calls, module, policies, route

ALICE = "alice-e2e-token-0123456789"
BOB = "bob-e2e-token-0123456789ab"


def start(stack, certs, policy_dir, wait: str):
    up = stack.upstream("v2")
    mods = {"guard": module(policy_dir, "mutation_guard", {"require_approval": ["delete_*"]})}
    port, admin = free_port(), free_port()
    text = render_config(port, certs, {"crm": route(up, ["guard"])}, ["127.0.0.0/8"],
                         policies=policies(stack, mods), audit={"dir": str(stack.dir / "audit"), "redact": "full"})
    approvers = [{"name": "alice", "token_sha256": hashlib.sha256(ALICE.encode()).hexdigest()},
                 {"name": "bob", "token_sha256": hashlib.sha256(BOB.encode()).hexdigest()}]
    text += f'admin: {{listen: "127.0.0.1:{admin}"}}\n'
    text += "approvals: " + json.dumps({"db": str(stack.dir / "approvals.db"), "wait": wait,
                                         "keepalive": "1s", "approvers": approvers}) + "\n"
    gw = stack.gateway(config_text=text, port=port)
    return up, gw, f"http://127.0.0.1:{admin}"


def api(admin: str, method: str, path: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(admin + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def pending(admin: str) -> list[dict]:
    status, v = api(admin, "GET", "/approvals?status=pending", BOB)
    assert status == 200, v
    return v["approvals"]


def approve_when_pending(admin: str, action: str, comment: str, result: dict):
    """Runs in a thread: waits (bounded) for one pending request, then approves or denies it."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        items = pending(admin)
        if items:
            result["pending"] = items[0]
            result["answer"] = api(admin, "POST", f"/approvals/{items[0]['id']}/{action}", ALICE,
                                   {"comment": comment})
            return
        time.sleep(0.1)
    result["answer"] = "nothing became pending"


def one_call(gw, certs, mode: str, args: dict):
    tap = Tap()

    async def main():
        async with mcp_session(gw.url("crm"), certs.ca_file, mode, on_response=tap) as client:
            return await call(client, tap, "delete_customer", args)

    return anyio.run(main)


@pytest.mark.parametrize("mode", [MODERN, "legacy"])
def test_held_call_is_approved_while_the_sdk_waits_and_reaches_the_upstream_once(stack, certs, policy_dir, mode):
    up, gw, admin = start(stack, certs, policy_dir, wait="20s")
    result: dict = {}
    approver = threading.Thread(target=approve_when_pending, args=(admin, "approve", "ok for e2e", result))
    approver.start()
    c = one_call(gw, certs, mode, {"id": "c-77"})
    approver.join(timeout=30)
    assert result["answer"][0] == 200, result
    assert c.error is None and c.result.is_error is False, (c.error, c.result)
    assert c.text == "v2 deleted c-77"
    assert result["pending"]["arguments"] == {"id": "c-77"}
    calls = forwarded_calls(up, "delete_customer")
    assert len(calls) == 1, calls
    assert calls[0]["request_id"] == c.request_id
    status, shown = api(admin, "GET", f"/approvals/{result['pending']['id']}", BOB)
    assert (status, shown["status"], shown["approver"], shown["comment"]) == (200, "approved", "alice", "ok for e2e")


@pytest.mark.parametrize("mode", [MODERN, "legacy"])
def test_denied_call_never_reaches_the_upstream(stack, certs, policy_dir, mode):
    up, gw, admin = start(stack, certs, policy_dir, wait="20s")
    result: dict = {}
    approver = threading.Thread(target=approve_when_pending, args=(admin, "deny", "no deletions today", result))
    approver.start()
    c = one_call(gw, certs, mode, {"id": "c-8"})
    approver.join(timeout=30)
    assert c.error is None and c.result.is_error is True, (c.error, c.result)
    assert result["pending"]["id"] in c.text and "'alice'" in c.text and "no deletions today" in c.text, c.text
    assert forwarded_calls(up, "delete_customer") == []


def test_wait_expiry_gives_is_error_and_the_cli_approval_lets_the_identical_retry_through_once(
        stack, certs, policy_dir, gateway_bin):
    up, gw, admin = start(stack, certs, policy_dir, wait="1s")
    first = one_call(gw, certs, MODERN, {"id": "c-5"})
    assert first.error is None and first.result.is_error is True, (first.error, first.result)
    assert "pending" in first.text and "retry the identical call" in first.text, first.text
    [req] = pending(admin)
    assert req["id"] in first.text
    assert forwarded_calls(up, "delete_customer") == []

    cli = [str(gateway_bin), "approvals", "--admin", admin]
    listed = subprocess.run(cli + ["list"], capture_output=True, text=True, timeout=30,
                            env={"MCP_GATEWAY_APPROVER_TOKEN": BOB, "PATH": "/usr/bin:/bin"})
    assert listed.returncode == 0 and req["id"] in listed.stdout and "delete_customer" in listed.stdout, listed
    bad = subprocess.run(cli + ["approve", req["id"], "--token", "wrong-token-0000000000"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "401" in bad.stderr, bad
    ok = subprocess.run(cli + ["approve", req["id"], "--token", ALICE, "-m", "retry is fine"],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and f"{req['id']} approved by alice" in ok.stdout, ok

    changed = one_call(gw, certs, MODERN, {"id": "c-6"})
    assert changed.result.is_error is True and req["id"] not in changed.text, changed.text
    retry = one_call(gw, certs, MODERN, {"id": "c-5"})
    assert retry.error is None and retry.result.is_error is False, (retry.error, retry.result)
    assert retry.text == "v2 deleted c-5"
    again = one_call(gw, certs, MODERN, {"id": "c-5"})
    assert again.result.is_error is True and "pending" in again.text, again.text
    calls = forwarded_calls(up, "delete_customer")
    assert [c["request_id"] for c in calls] == [retry.request_id], calls
