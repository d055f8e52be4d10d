"""Two mcp-gateway replicas (the binary, twice) on one PostgreSQL approval store, with the real mcp 2.3.0 client:
the SDK's call is held on replica A while an approver approves it through replica B's admin API; A releases it
and server_v2 receives it exactly once. Then a call whose wait ran out on A is approved on B and the identical
retry, sent to B, passes once.

PostgreSQL is a throwaway cluster (initdb + pg_ctl from the Debian `postgresql` package, which tests/setup.sh
installs), on 127.0.0.1 with a free port, stopped and deleted after the test.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from conftest import free_port, render_config
from helpers import MODERN
from test_approvals import ALICE, BOB, api, approve_when_pending, one_call, pending
from test_policies import forwarded_calls, module, policies, route


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        pytest.fail("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run tests/setup.sh")
    return Path(found[-1]).parent


@pytest.fixture
def pg_url():
    """A throwaway PostgreSQL cluster; yields the connection string of a fresh `approvals` database."""
    bin_dir = _pg_bin()
    d = Path(tempfile.mkdtemp(prefix="mcp-gateway-e2e-pg-"))
    as_postgres = os.geteuid() == 0
    if as_postgres:
        pw = pwd.getpwnam("postgres")
        os.chown(d, pw.pw_uid, pw.pw_gid)

    def server(*args):
        cmd = [str(bin_dir / args[0]), *args[1:]]
        if as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=60)

    port = free_port()
    try:
        r = server("initdb", "-D", str(d / "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync",
                   "--locale=C")
        assert r.returncode == 0, r.stdout + r.stderr
        r = server("pg_ctl", "-D", str(d / "data"), "-l", str(d / "server.log"), "-w", "-t", "30", "-o",
                   f"-c listen_addresses=127.0.0.1 -p {port} -k {d} -c fsync=off", "start")
        assert r.returncode == 0, r.stdout + r.stderr
        r = subprocess.run([str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-X",
                            "-c", "CREATE DATABASE approvals"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        yield f"postgres://postgres@127.0.0.1:{port}/approvals?sslmode=disable"
    finally:
        server("pg_ctl", "-D", str(d / "data"), "-w", "-m", "immediate", "stop")
        shutil.rmtree(d, ignore_errors=True)


def replica(stack, certs, policy_dir, up, url: str, name: str, wait: str):
    mods = {"guard": module(policy_dir, "mutation_guard", {"require_approval": ["delete_*"]})}
    port, admin = free_port(), free_port()
    text = render_config(port, certs, {"crm": route(up, ["guard"])}, ["127.0.0.0/8"],
                         policies=policies(stack, mods), audit={"dir": str(stack.dir / f"audit-{name}")})
    approvers = [{"name": "alice", "token_sha256": hashlib.sha256(ALICE.encode()).hexdigest()},
                 {"name": "bob", "token_sha256": hashlib.sha256(BOB.encode()).hexdigest()}]
    text += f'admin: {{listen: "127.0.0.1:{admin}"}}\n'
    text += "approvals: " + json.dumps({"postgres": {"url": url}, "wait": wait, "poll_interval": "60s",
                                         "approvers": approvers}) + "\n"
    return stack.gateway(config_text=text, port=port, name=name), f"http://127.0.0.1:{admin}"


def test_held_on_replica_a_approved_on_replica_b_with_the_sdk(stack, certs, policy_dir, pg_url):
    up = stack.upstream("v2")
    a, _admin_a = replica(stack, certs, policy_dir, up, pg_url, "replica-a", wait="20s")
    _b, admin_b = replica(stack, certs, policy_dir, up, pg_url, "replica-b", wait="20s")
    result: dict = {}
    approver = threading.Thread(target=approve_when_pending, args=(admin_b, "approve", "from replica B", result))
    approver.start()
    c = one_call(a, certs, MODERN, {"id": "c-1"})  # poll_interval 60s: only NOTIFY can release it in time
    approver.join(timeout=30)
    assert result["answer"][0] == 200, result
    assert c.error is None and c.result.is_error is False, (c.error, c.result)
    assert c.text == "v2 deleted c-1"
    calls = forwarded_calls(up, "delete_customer")
    assert [x["request_id"] for x in calls] == [c.request_id], calls


def test_timed_out_on_a_approved_on_b_the_retry_on_b_passes_once(stack, certs, policy_dir, pg_url):
    up = stack.upstream("v2")
    a, admin_a = replica(stack, certs, policy_dir, up, pg_url, "replica-a", wait="1s")
    b, admin_b = replica(stack, certs, policy_dir, up, pg_url, "replica-b", wait="1s")
    first = one_call(a, certs, MODERN, {"id": "c-5"})
    assert first.result.is_error is True and "retry the identical call" in first.text, first.text
    [req] = pending(admin_b)
    assert req["id"] in first.text
    assert api(admin_b, "POST", f"/approvals/{req['id']}/approve", BOB, {"comment": "ok"})[0] == 200
    again = api(admin_a, "POST", f"/approvals/{req['id']}/approve", ALICE, {})
    assert again == (409, {"error": f"approval request `{req['id']}` is already approved"}), again
    retry = one_call(b, certs, MODERN, {"id": "c-5"})
    assert retry.error is None and retry.result.is_error is False, (retry.error, retry.result)
    assert retry.text == "v2 deleted c-5"
    second = one_call(b, certs, MODERN, {"id": "c-5"})
    assert second.result.is_error is True and "pending" in second.text, second.text
    changed = one_call(a, certs, MODERN, {"id": "c-6"})
    assert changed.result.is_error is True and req["id"] not in changed.text, changed.text
    calls = forwarded_calls(up, "delete_customer")
    assert [x["request_id"] for x in calls] == [retry.request_id], calls
