"""The audit log end to end: real MCP SDK clients (both eras) → gateway (policies on) → server_v2, then the log
on disk and the auditors' CLI (`mcp-gateway audit verify|query|stats`).

- Every request the upstream saw has a durable `decision: allow` record written before it (lower seq than its
  outcome); every refused call has its decision record and never reached the upstream; every line validates
  against gateway/audit-record.schema.json and the chain verifies.
- kill -9 under concurrent load, restart on the same directory: the chain still verifies (a torn last line is
  cut and recorded as `recovery`) and no request the upstream saw lacks its decision record.
- Tampering (an edited field, a deleted / swapped / mangled line, a truncated file, a forged checkpoint
  signature) is found by `audit verify`, which names file, line and seq.
- Redaction of tool arguments: digest (default), full, per-tool omit.
- `audit query` / `audit stats` agree with the workload.

The gateway's own catalogue fetch (`tools/list`, JSON-RPC id `mcp-gateway-catalogue-0`, carrying the refused
call's request id) is not a client request: it is left out where upstream records are matched to decisions.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import anyio
import jsonschema
import pytest

from conftest import REPO, wait_for
from helpers import MODERN, mcp_session, modern_tools_call, pinned, raw_post
from test_policies import ANSI, CATALOGUE_ID, module, policies, route, session_calls

SCHEMA = json.loads((REPO / "gateway" / "audit-record.schema.json").read_text())
SCHEMA_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
HEX64 = re.compile(r"^[0-9a-f]{64}$")


# ---------------------------------------------------------------------------------------------- the log on disk


def segments(audit_dir: Path) -> list[Path]:
    return sorted(audit_dir.glob("audit-*.jsonl"))


def read_log(audit_dir: Path) -> list[dict]:
    """Every record of every segment, in file order; each gets `_file` and `_line` (1-based) for messages."""
    out = []
    segs = segments(audit_dir)
    assert segs, f"no audit segments in {audit_dir}: {sorted(p.name for p in audit_dir.iterdir())}"
    for seg in segs:
        for i, line in enumerate(seg.read_bytes().split(b"\n")[:-1], start=1):
            rec = json.loads(line)
            rec["_file"], rec["_line"] = seg.name, i
            out.append(rec)
    return out


def plain(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if not k.startswith("_")}


def decisions_by_request(log: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in log:
        if r["kind"] == "decision":
            out.setdefault(r["data"]["request_id"], []).append(r)
    return out


def outcomes_by_request(log: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in log:
        if r["kind"] == "outcome":
            out.setdefault(r["data"]["request_id"], []).append(r)
    return out


def canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def assert_schema_valid(log: list[dict]):
    bad = []
    for r in log:
        errors = sorted(SCHEMA_VALIDATOR.iter_errors(plain(r)), key=lambda e: list(e.path))
        if errors:
            bad.append(f"{r['_file']}:{r['_line']} (seq {r.get('seq')}): "
                       + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:3]))
    assert not bad, "records that do not match audit-record.schema.json:\n" + "\n".join(bad[:20])


def assert_seqs_contiguous(log: list[dict]):
    seqs = [r["seq"] for r in log]
    assert seqs == list(range(1, len(seqs) + 1)), f"seqs not contiguous from 1: {seqs[:50]}…"


# ---------------------------------------------------------------------------------------------- CLI and process control


def audit_cli(gateway_bin: Path, *args, timeout: float = 30.0) -> subprocess.CompletedProcess:
    argv = [str(gateway_bin), "audit", *map(str, args)]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(argv)}` did not finish within {timeout}s")


def verify_ok(gateway_bin: Path, audit_dir: Path, *extra) -> str:
    cp = audit_cli(gateway_bin, "verify", audit_dir, *extra)
    assert cp.returncode == 0, f"audit verify failed ({cp.returncode}):\n{cp.stdout}{cp.stderr}"
    assert "OK: " in cp.stdout, cp.stdout
    return cp.stdout


def verify_fails(gateway_bin: Path, audit_dir: Path, *extra) -> str:
    """Runs `audit verify`, asserts it fails; returns the FAIL line."""
    cp = audit_cli(gateway_bin, "verify", audit_dir, *extra)
    assert cp.returncode != 0, f"audit verify accepted a tampered log:\n{cp.stdout}{cp.stderr}"
    fails = [ln for ln in cp.stdout.splitlines() if ln.startswith("FAIL: ")]
    assert len(fails) == 1, f"expected one FAIL line:\n{cp.stdout}{cp.stderr}"
    return fails[0]


def query_jsonl(gateway_bin: Path, audit_dir: Path, *filters) -> list[dict]:
    cp = audit_cli(gateway_bin, "query", audit_dir, *filters, "--format", "jsonl")
    assert cp.returncode == 0, f"audit query failed ({cp.returncode}):\n{cp.stdout}{cp.stderr}"
    assert not cp.stderr.strip(), f"audit query warned:\n{cp.stderr}"
    return [json.loads(ln) for ln in cp.stdout.splitlines() if ln.strip()]


def stop_gateway(gw, timeout: float = 15.0):
    """SIGTERM, wait for a clean exit (the audit log is drained and closed on the way out)."""
    p = gw.proc.popen
    assert p.poll() is None, f"gateway already exited with {p.returncode}\n{gw.log_text()[-3000:]}"
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail(f"gateway did not exit within {timeout}s of SIGTERM\n{gw.log_text()[-3000:]}")
    assert rc == 0, f"gateway exited with {rc} on SIGTERM\n{gw.log_text()[-3000:]}"
    assert "audit log flushed and closed" in gw.log_text(), gw.log_text()[-3000:]


# ---------------------------------------------------------------------------------------------- the workload

ERAS = [MODERN, "legacy"]


def policed_gateway(stack, policy_dir, up, audit: dict | None = None, name: str = "gateway"):
    """crm: [guard] (mutation-guard, destructive deny); ro: [allow] (tool-allowlist: search_docs, get_*);
    appr: [approve] (mutation-guard, delete_* needs approval)."""
    mods = {
        "guard": module(policy_dir, "mutation_guard", {"destructive": "deny"}),
        "allow": module(policy_dir, "tool_allowlist", {"allow": ["search_docs", "get_*"]}),
        "approve": module(policy_dir, "mutation_guard", {"require_approval": ["delete_*"], "destructive": "allow"}),
    }
    return stack.gateway({"crm": route(up, ["guard"]), "ro": route(up, ["allow"]), "appr": route(up, ["approve"])},
                         policies=policies(stack, mods), audit=audit, name=name)


# (route, step, expected decision); "list" steps are allowed tools/list requests.
WORKLOAD = [
    ("crm", ("call", "search_docs", {"query": "audit-{era}"}), "allow"),
    ("crm", ("list",), "allow"),
    ("crm", ("call", "get_customer", {"id": "c-{era}"}), "allow"),
    ("crm", ("call", "delete_customer", {"id": "d-{era}"}), "deny"),
    ("crm", ("call", "search_docs", {"query": 123}), "invalid_arguments"),
    ("ro", ("call", "delete_customer", {"id": "h-{era}"}), "hidden"),
    ("ro", ("call", "get_customer", {"id": "r-{era}"}), "allow"),
    ("appr", ("call", "delete_customer", {"id": "a-{era}"}), "require_approval"),
]
POLICY_OF = {"crm": "guard", "ro": "allow", "appr": "approve"}


def _fill(step, era):
    if step[0] == "list":
        return step
    args = {k: v.format(era=era) if isinstance(v, str) else v for k, v in step[2].items()}
    return ("call", step[1], args)


def run_workload(gw, certs) -> list[dict]:
    """Runs WORKLOAD in both eras (one client session per era and route); returns one dict per call:
    {route, era, tool, args, want, request_id}."""
    calls = []
    for era in ERAS:
        for rk in POLICY_OF:
            items = [(_fill(step, era), want) for r, step, want in WORKLOAD if r == rk]
            outs, _tap = session_calls(gw.url(rk), certs.ca_file, era, [s for s, _ in items])
            for (step, want), out in zip(items, outs):
                if step[0] == "list":
                    continue
                assert out.request_id, f"no X-Gateway-Request-Id for {step}"
                if want == "allow":
                    assert out.error is None and out.result.is_error is False, (step, out.error, out.result)
                else:
                    assert out.error is not None or out.result.is_error is True, (step, out.result)
                calls.append({"route": rk, "era": era, "tool": step[1], "args": step[2], "want": want,
                              "request_id": out.request_id})
    return calls


def client_requests(up) -> list[dict]:
    """The upstream's records of requests that came from clients (not the gateway's catalogue fetches)."""
    return [r for r in up.records() if r["rpc_id"] != CATALOGUE_ID]


# ---------------------------------------------------------------------------------------------- 1. decisions first


def test_every_forwarded_request_has_a_durable_decision_first(stack, certs, policy_dir, gateway_bin):
    # The upstream looks into the audit directory as each request arrives (recorder.py: `audit_before`).
    up = stack.upstream("v2", env={"MCP_RECORD_AUDIT_DIR": str(stack.audit_dir)})
    gw = policed_gateway(stack, policy_dir, up)

    calls = run_workload(gw, certs)
    # A request refused before any policy ran (no route for its host) is a `refusal` record.
    nope = anyio.run(lambda: raw_post(gw.url("nope"), certs.ca_file, modern_tools_call("search_docs", {})))
    assert nope.status == 421, (nope.status, nope.text)
    stop_gateway(gw)

    log = read_log(stack.audit_dir)
    assert_schema_valid(log)
    assert_seqs_contiguous(log)
    out = verify_ok(gateway_bin, stack.audit_dir)
    assert "0 gaps, 0 recoveries" in out, out
    decisions, outcomes = decisions_by_request(log), outcomes_by_request(log)

    # Every request the upstream saw (both eras: initialize, notifications, tools/list, tools/call, DELETE …).
    seen = client_requests(up)
    assert len(seen) >= 2 * 5, [(r["http_method"], r["rpc_method"]) for r in seen]
    problems = []
    for r in seen:
        rid, what = r["request_id"], f"{r['http_method']} {r['rpc_method']} {r['rpc_name'] or ''}"
        ds = decisions.get(rid)
        if not rid or not ds:
            problems.append(f"{what} ({rid}) reached the upstream without a decision record")
            continue
        if r["audit_before"] is not True:
            problems.append(f"{what} ({rid}) reached the upstream before its decision was in the audit log")
        if [d["data"]["decision"] for d in ds] != ["allow"] * len(ds):
            problems.append(f"{what} ({rid}) reached the upstream, but its decisions are {ds}")
        if r["rpc_method"] is not None and ds[0]["data"]["method"] != r["rpc_method"]:
            problems.append(f"{what} ({rid}): decision names method {ds[0]['data']['method']}")
        os_ = outcomes.get(rid, [])
        if len(os_) != 1:
            problems.append(f"{what} ({rid}): {len(os_)} outcome records")
        elif not os_[0]["seq"] > max(d["seq"] for d in ds):
            problems.append(f"{what} ({rid}): outcome seq {os_[0]['seq']} not after its decision "
                            f"{[d['seq'] for d in ds]}")
    assert not problems, "\n".join(problems)

    # Every call of the workload: its decision record says what the client was told.
    upstream_ids = {r["request_id"] for r in seen}
    catalogue_ids = {r["request_id"] for r in up.records() if r["rpc_id"] == CATALOGUE_ID}
    for c in calls:
        ds = decisions.get(c["request_id"], [])
        assert len(ds) == 1, f"{c}: decision records {ds}"
        d = ds[0]["data"]
        assert (d["decision"], d["method"], d["tool"], d["route"]) == (c["want"], "tools/call", c["tool"],
                                                                        c["route"]), (c, d)
        assert d["host"] == f"{c['route']}.tunnel.example.test", d
        assert re.fullmatch(r"127\.0\.0\.1:\d+", d["client"]), d
        if c["era"] == MODERN:
            assert d.get("protocol_version") == MODERN, d
        if c["want"] == "allow":
            assert c["request_id"] in upstream_ids
            assert "reason" not in d, d
            assert [(p["name"], p["answer"], p["mode"]) for p in d["policies"]] == \
                [(POLICY_OF[c["route"]], "allow", "enforce")], d
        else:
            assert c["request_id"] not in upstream_ids, f"refused call reached the upstream: {c}"
            assert d.get("reason"), d
            assert not outcomes.get(c["request_id"]), f"refused call has an outcome record: {c}"
        if c["want"] in ("deny", "hidden", "require_approval"):
            policy = POLICY_OF[c["route"]]
            assert d["reason"].startswith(f"{policy}: "), d
            assert [(p["name"], p["answer"]) for p in d["policies"]] == [(policy, c["want"])], d
            assert all(HEX64.match(p["sha256"]) for p in d["policies"]), d
    refusals = [r["data"] for r in log if r["kind"] == "refusal"]
    assert [(r["reason"], r.get("request_id")) for r in refusals] == \
        [("no_route", nope.headers["x-gateway-request-id"])], refusals
    assert "nope.tunnel.example.test" in refusals[0]["detail"], refusals
    # The gateway's own catalogue fetches run under a refused (or validated) call's id, never on their own.
    for rid in catalogue_ids:
        assert rid in decisions, f"catalogue fetch under {rid}, which has no decision record"


# ---------------------------------------------------------------------------------------------- 2. crash consistency


async def _load(gw, ca_file, workers: int, kill_after: float, pid: int) -> dict:
    """`workers` closed loops of modern tools/call search_docs; SIGKILL `pid` after `kill_after` s."""
    stats = Counter()
    killed = anyio.Event()
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "search_docs",
               "Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

    async def worker(w: int):
        async with pinned(ca_file) as http:
            n = 0
            while not killed.is_set():
                n += 1
                body = modern_tools_call("search_docs", {"query": f"w{w}-{n}"}, rid=n)
                try:
                    resp = await http.post(gw.url("docs"), content=json.dumps(body), headers=headers)
                    stats[f"status {resp.status_code}"] += 1
                except Exception as e:  # the gateway is gone
                    stats[f"error {type(e).__name__}" + (" after kill" if killed.is_set() else "")] += 1
                    if not killed.is_set():
                        await anyio.sleep(0.05)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for w in range(workers):
                tg.start_soon(worker, w)
            await anyio.sleep(kill_after)
            os.kill(pid, signal.SIGKILL)
            killed.set()
    return dict(stats)


def test_kill_9_under_load_loses_no_decision(stack, certs, gateway_bin):
    up = stack.upstream("v2", env={"MCP_RECORD_AUDIT_DIR": str(stack.audit_dir)})
    audit = {"dir": str(stack.audit_dir)}
    gw = stack.gateway({"docs": up.url}, audit=audit, name="gateway-1")

    stats = anyio.run(_load, gw, certs.ca_file, 8, 2.0, gw.proc.popen.pid)
    gw.proc.popen.wait(timeout=10)
    assert gw.proc.popen.returncode == -signal.SIGKILL
    assert stats.get("status 200", 0) >= 20, f"too little load before the kill: {stats}"
    assert not [k for k in stats if k.startswith("status") and k != "status 200"], stats
    assert not [k for k in stats if k.startswith("error") and not k.endswith("after kill")], stats

    # The kill may or may not have torn the last line; if it did not, tear one as a crash mid-write would.
    segs = segments(stack.audit_dir)
    last = segs[-1]
    raw = last.read_bytes()
    if raw.endswith(b"\n"):
        torn = raw.split(b"\n")[-2][: 57]  # a prefix of a real record line, as a partial write leaves it
        with open(last, "ab") as f:
            f.write(torn)
    else:
        torn = raw[raw.rfind(b"\n") + 1:]
    assert torn and b"\n" not in torn
    cut_at = last.stat().st_size - len(torn)
    pre = verify_fails(gateway_bin, stack.audit_dir)
    assert "torn last line" in pre, pre

    # Restart on the same directory (same port), then stop it cleanly.
    gw2 = stack.gateway({"docs": up.url}, audit=audit, name="gateway-2", port=gw.port)
    (after,), _ = session_calls(gw2.url("docs"), certs.ca_file, MODERN,
                                [("call", "search_docs", {"query": "after restart"})])
    assert after.text == "v2 results for after restart"
    gw2.wait_log("audit log: cut a torn tail left by a crash")
    stop_gateway(gw2)

    out = verify_ok(gateway_bin, stack.audit_dir)
    assert "1 recoveries" in out, out
    log = read_log(stack.audit_dir)
    assert_schema_valid(log)
    assert_seqs_contiguous(log)
    recoveries = [r for r in log if r["kind"] == "recovery"]
    assert len(recoveries) == 1, recoveries
    rd = recoveries[0]["data"]
    assert (rd["segment"], rd["offset"], rd["torn_bytes"], rd["cause"]) == (last.name, cut_at, len(torn),
                                                                            "unterminated"), rd
    assert rd["torn_sha256"] == hashlib.sha256(torn).hexdigest(), rd
    assert (stack.audit_dir / rd["moved_to"]).read_bytes() == torn
    assert not last.read_bytes()[cut_at:].startswith(torn), "the torn bytes were left in the segment"

    # No request the upstream saw lacks its decision record (read through the CLI, as an auditor would).
    decided = {r["data"]["request_id"]: r for r in query_jsonl(gateway_bin, stack.audit_dir, "--kind", "decision")}
    seen = client_requests(up)
    assert len(seen) >= stats["status 200"], (len(seen), stats)
    missing = [r for r in seen if r["request_id"] not in decided]
    assert not missing, f"{len(missing)} of {len(seen)} requests reached the upstream without a decision record: " \
                        f"{missing[:5]}"
    not_allowed = [decided[r["request_id"]] for r in seen if decided[r["request_id"]]["data"]["decision"] != "allow"]
    early = [r for r in seen if r["audit_before"] is not True]
    assert not early, f"{len(early)} requests reached the upstream before their decision was on disk: {early[:5]}"
    assert not not_allowed, not_allowed[:5]
    assert after.request_id in decided
    # Outcomes come after the fact: only requests in flight at the kill (one per worker at most) lack one.
    outcome_ids = {r["data"]["request_id"] for r in query_jsonl(gateway_bin, stack.audit_dir, "--kind", "outcome")}
    assert outcome_ids <= set(decided), sorted(outcome_ids - set(decided))[:5]
    in_flight = set(decided) - outcome_ids
    assert len(in_flight) <= 8, f"{len(in_flight)} decisions without an outcome, with 8 workers"


# ---------------------------------------------------------------------------------------------- 3. tampering


@pytest.fixture
def signed_log(stack, certs, policy_dir, gateway_bin, tmp_path):
    """A good, signed log (checkpoint every 5 records) from the workload; returns (audit dir, public key,
    the checkpoints the gateway logged on its `audit_checkpoint` target as (count, head_hash, signature))."""
    key, pub = tmp_path / "audit.key", tmp_path / "audit.pub"
    for argv in (["openssl", "genpkey", "-algorithm", "ed25519", "-out", key],
                 ["openssl", "pkey", "-in", key, "-pubout", "-out", pub]):
        subprocess.run([str(a) for a in argv], check=True, capture_output=True, timeout=30)
    up = stack.upstream("v2")
    gw = policed_gateway(stack, policy_dir, up, audit={"checkpoint_every": 5, "signing_key_file": str(key)})
    run_workload(gw, certs)
    stop_gateway(gw)
    logged = re.findall(r'audit checkpoint count=(\d+) head_hash=([0-9a-f]{64}) signature="([0-9a-f]*)"',
                        ANSI.sub("", gw.log_text()))
    return stack.audit_dir, pub, [(int(c), h, sig) for c, h, sig in logged]


def tampered(src: Path, dst: Path, edit) -> tuple[Path, Path]:
    """Copies the log dir to `dst` and applies `edit(lines) -> lines` to its (single) segment."""
    shutil.copytree(src, dst)
    (seg,) = segments(dst)
    lines = seg.read_bytes().split(b"\n")
    assert lines[-1] == b""
    seg.write_bytes(b"\n".join(edit(lines[:-1])) + b"\n")
    return dst, seg


def line_of(lines: list[bytes], pred, start: int = 3) -> int:
    """0-based index of the first line (from `start`) whose record satisfies `pred`."""
    for i in range(start, len(lines) - 3):
        if pred(json.loads(lines[i])):
            return i
    pytest.fail("no such line in the log")


def rechain(lines: list[bytes], start: int) -> list[bytes]:
    """Recomputes hash, prev_hash and checkpoints' head_hash from line `start` on (what a forger without the
    signing key can do)."""
    prev = bytes.fromhex(json.loads(lines[start - 1])["hash"]) if start else bytes(32)
    out = list(lines[:start])
    for ln in lines[start:]:
        rec = json.loads(ln)
        ln = ln.replace(f'"prev_hash":"{rec["prev_hash"]}"'.encode(), f'"prev_hash":"{prev.hex()}"'.encode())
        if rec["kind"] == "checkpoint":  # names the record before it (its signature cannot be redone)
            ln = ln.replace(f'"head_hash":"{rec["data"]["head_hash"]}"'.encode(), f'"head_hash":"{prev.hex()}"'.encode())
        unhashed = ln.replace(f'"hash":"{rec["hash"]}",'.encode(), b"")
        h = hashlib.sha256(prev + unhashed).digest()
        out.append(ln.replace(f'"hash":"{rec["hash"]}"'.encode(), f'"hash":"{h.hex()}"'.encode()))
        prev = h
    return out


def test_tampering_is_found_and_located(signed_log, gateway_bin, tmp_path):
    good, pub, logged = signed_log
    out = verify_ok(gateway_bin, good, "--key", pub)
    log = read_log(good)
    (seg,) = segments(good)
    name = seg.name
    lines = seg.read_bytes().split(b"\n")[:-1]
    checkpoints = [r for r in log if r["kind"] == "checkpoint"]
    assert len(checkpoints) >= 4, f"checkpoint_every 5 over {len(log)} records: {len(checkpoints)} checkpoints"
    assert all("signature" in c["data"] and re.fullmatch(r"[0-9a-f]{16}", c["data"]["key_id"])
               for c in checkpoints), checkpoints
    assert f"{len(checkpoints)} checkpoints ({len(checkpoints)} signatures verified)" in out, out
    assert log[-1]["kind"] == "checkpoint", "closing the log writes a final checkpoint"
    # Every checkpoint is also in the gateway's log (where an auditor keeps it outside the audit directory).
    assert logged == [(c["data"]["count"], c["data"]["head_hash"], c["data"]["signature"]) for c in checkpoints]
    head = f"{logged[-1][0]}:{logged[-1][1]}"
    verify_ok(gateway_bin, good, "--checkpoint", head, "--checkpoint", f"{logged[0][0]}:{logged[0][1]}")
    fail = verify_fails(gateway_bin, good, "--checkpoint", f"{logged[-1][0]}:{logged[0][1]}")
    assert f"(seq {logged[-1][0]}): the log does not contain the expected checkpoint" in fail, fail

    def where(i: int, seq: int | None) -> str:
        return f"FAIL: {tmp_path}/{{case}}/{name}:{i + 1}" + (f" (seq {seq}): " if seq else ": ")

    # (a) an edited field: a policy's deny turned into allow
    i = line_of(lines, lambda r: r["kind"] == "decision" and r["data"]["decision"] == "deny")
    d, _ = tampered(good, tmp_path / "a", lambda ls: [ln.replace(b'"decision":"deny"', b'"decision":"allow"')
                                                      if k == i else ln for k, ln in enumerate(ls)])
    fail = verify_fails(gateway_bin, d)
    assert fail == where(i, i + 1).format(case="a") + \
        "hash does not match the record's contents: the record was altered", fail

    # (b) a deleted line
    i = line_of(lines, lambda r: r["kind"] == "decision")
    d, _ = tampered(good, tmp_path / "b", lambda ls: ls[:i] + ls[i + 1:])
    fail = verify_fails(gateway_bin, d)
    assert fail.startswith(where(i, i + 2).format(case="b")), fail
    assert f"seqs {i + 1}..{i + 1} are missing after seq {i}" in fail, fail

    # (c) two lines swapped
    d, _ = tampered(good, tmp_path / "c", lambda ls: ls[:i] + [ls[i + 1], ls[i]] + ls[i + 2:])
    fail = verify_fails(gateway_bin, d)
    assert fail.startswith(where(i, i + 2).format(case="c")), fail
    assert f"seqs {i + 1}..{i + 1} are missing after seq {i}" in fail, fail

    # (d) a line mangled in the middle of the file (half of it and half of the next one cut out)
    d, _ = tampered(good, tmp_path / "d",
                    lambda ls: ls[:i] + [ls[i][:len(ls[i]) // 2] + ls[i + 1][len(ls[i + 1]) // 2:]] + ls[i + 2:])
    fail = verify_fails(gateway_bin, d)
    assert fail.startswith(f"FAIL: {tmp_path}/d/{name}:{i + 1}"), fail
    assert any(m in fail for m in ("not a JSON record", "not in canonical form", "hash does not match")), fail

    # (e) the file truncated mid-line, well before its end: the cut line is a torn last line, like a crash's
    # (verify fails until a restarted gateway cuts it); what was lost after it only an outside checkpoint shows.
    d, seg_e = tampered(good, tmp_path / "e", lambda ls: ls)
    size = sum(len(ln) + 1 for ln in lines[:i]) + 30
    with open(seg_e, "r+b") as f:
        f.truncate(size)
    fail = verify_fails(gateway_bin, d)
    assert fail == where(i, None).format(case="e") + \
        "torn last line (no final newline): a crash or a write in progress; the gateway cuts it out of the " \
        "chain on its next start", fail
    # Cut at a line boundary instead, the shorter chain is valid on its own…
    with open(seg_e, "r+b") as f:
        f.truncate(size - 30)
    verify_ok(gateway_bin, d)
    # …but not against a checkpoint kept outside the gateway (its `audit_checkpoint` log lines).
    fail = verify_fails(gateway_bin, d, "--checkpoint", head)
    assert f"(seq {logged[-1][0]}): the log does not contain the expected checkpoint" in fail, fail

    # (f) a checkpoint signature with one byte flipped: the record's hash no longer matches…
    ci = next(k for k, ln in enumerate(lines) if json.loads(ln)["kind"] == "checkpoint")
    sig = json.loads(lines[ci])["data"]["signature"]
    forged_sig = ("0" if sig[0] != "0" else "1") + sig[1:]

    def flip(ls):
        return [ln.replace(sig.encode(), forged_sig.encode()) if k == ci else ln for k, ln in enumerate(ls)]

    d, _ = tampered(good, tmp_path / "f", flip)
    fail = verify_fails(gateway_bin, d, "--key", pub)
    assert fail == where(ci, ci + 1).format(case="f") + \
        "hash does not match the record's contents: the record was altered", fail
    # …and with the chain recomputed after it (no key needed for that), only the signature gives it away.
    d, _ = tampered(good, tmp_path / "g", lambda ls: rechain(flip(ls), ci))
    verify_ok(gateway_bin, d)  # the chain itself is consistent again
    fail = verify_fails(gateway_bin, d, "--key", pub)
    assert fail == where(ci, ci + 1).format(case="g") + \
        "checkpoint signature does not verify with the given key", fail
    # A different key does not verify the original either.
    other_key, other_pub = tmp_path / "other.key", tmp_path / "other.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(other_key)], check=True, timeout=30)
    subprocess.run(["openssl", "pkey", "-in", str(other_key), "-pubout", "-out", str(other_pub)], check=True,
                   timeout=30)
    fail = verify_fails(gateway_bin, good, "--key", other_pub)
    assert "checkpoint signature does not verify with the given key" in fail, fail


# ---------------------------------------------------------------------------------------------- 4. redaction

MARK = "s3cr3t-märker"
RICH_ARGS = {"query": f"{MARK} \"quoted\" \\ back\nslash\t/é😀", "zeta": [1, -2, 2.5, True, None, {"b": 1, "a": [
]}], "alpha": {"nested": MARK, "ctl": "\u0001\u001f"}}


async def _redaction_calls(gw, ca_file):
    """search_docs (SDK, modern and legacy), get_customer (SDK) and a raw modern search_docs with rich args."""
    for era in ERAS:
        async with mcp_session(gw.url("docs"), ca_file, era) as client:
            await client.call_tool("search_docs", {"query": f"{MARK}-{era}"})
            await client.call_tool("get_customer", {"id": f"{MARK}-id"})
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "search_docs"}
    await raw_post(gw.url("docs"), ca_file, modern_tools_call("search_docs", RICH_ARGS, rid=9), headers=headers)


@pytest.mark.parametrize("mode", ["default", "full", "omit_search"])
def test_argument_redaction(stack, certs, gateway_bin, mode):
    up = stack.upstream("v2")
    audit = {"default": None, "full": {"redact": "full"},
             "omit_search": {"redact": "full", "redact_tools": {"search_*": "omit"}}}[mode]
    gw = stack.gateway({"docs": up.url}, audit=audit)
    anyio.run(_redaction_calls, gw, certs.ca_file)
    stop_gateway(gw)
    verify_ok(gateway_bin, stack.audit_dir)
    log = read_log(stack.audit_dir)
    assert_schema_valid(log)

    sent = [
        ("search_docs", {"query": f"{MARK}-{MODERN}"}), ("get_customer", {"id": f"{MARK}-id"}),
        ("search_docs", {"query": f"{MARK}-legacy"}), ("get_customer", {"id": f"{MARK}-id"}),
        ("search_docs", RICH_ARGS),
    ]
    calls = [r["data"] for r in log if r["kind"] == "decision" and r["data"]["method"] == "tools/call"]
    assert [(d["tool"], d["decision"]) for d in calls] == [(t, "allow") for t, _ in sent], calls
    raw = b"".join(p.read_bytes() for p in segments(stack.audit_dir))
    for d, (tool, args) in zip(calls, sent):
        keys = {k for k in d if k.startswith("arguments")}
        want = canonical(args)
        if mode == "default":
            assert keys == {"arguments_digest", "arguments_size"}, d
            assert d["arguments_digest"] == "sha256:" + hashlib.sha256(want).hexdigest(), (d, want)
            assert d["arguments_size"] == len(want), (d, want)
        elif mode == "full" or tool != "search_docs":
            assert keys == {"arguments"}, d
            assert d["arguments"] == args, d
        else:
            assert keys == set(), f"search_* arguments should be omitted: {d}"
    if mode == "default":
        assert MARK.encode() not in raw and b"quoted" not in raw, "arguments leaked into a digest-mode log"
    elif mode == "omit_search":
        assert f"{MARK}-{MODERN}".encode() not in raw and b"quoted" not in raw, "search_docs arguments leaked"
        assert f"{MARK}-id".encode() in raw


# ---------------------------------------------------------------------------------------------- 5. query / stats


def test_query_and_stats_match_the_workload(stack, certs, policy_dir, gateway_bin):
    up = stack.upstream("v2")
    gw = policed_gateway(stack, policy_dir, up)
    calls = run_workload(gw, certs)
    stop_gateway(gw)
    log = read_log(stack.audit_dir)

    def ids(want):
        return sorted(c["request_id"] for c in calls if c["want"] == want)

    for want in ("deny", "hidden", "require_approval", "invalid_arguments"):
        got = query_jsonl(gateway_bin, stack.audit_dir, "--decision", want)
        assert sorted(r["data"]["request_id"] for r in got) == ids(want), (want, got)
        assert all(r["kind"] == "decision" and r["data"]["decision"] == want for r in got), got
        # jsonl output is the records themselves, byte for byte what is on disk.
        on_disk = {r["seq"]: plain(r) for r in log}
        assert all(on_disk[r["seq"]] == r for r in got), got
    denied = query_jsonl(gateway_bin, stack.audit_dir, "--decision", "deny")
    assert [(r["data"]["route"], r["data"]["tool"]) for r in denied] == [("crm", "delete_customer")] * 2, denied

    one = calls[0]
    by_id = query_jsonl(gateway_bin, stack.audit_dir, "--request-id", one["request_id"])
    assert sorted(r["kind"] for r in by_id) == ["decision", "outcome"], by_id
    ro = query_jsonl(gateway_bin, stack.audit_dir, "--route", "ro", "--tool", "delete_customer")
    assert sorted(r["data"]["request_id"] for r in ro) == ids("hidden"), ro

    cp = audit_cli(gateway_bin, "stats", stack.audit_dir, "--json")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    stats = json.loads(cp.stdout)
    assert stats["records"] == len(log) and stats["last_seq"] == log[-1]["seq"], stats
    assert stats["by_kind"] == dict(Counter(r["kind"] for r in log)), stats
    decisions = [r["data"] for r in log if r["kind"] == "decision"]
    assert stats["by_decision"] == dict(Counter(d["decision"] for d in decisions)), stats
    for want in ("deny", "hidden", "require_approval", "invalid_arguments"):
        assert stats["by_decision"].get(want) == len(ids(want)), (want, stats["by_decision"])
    assert stats["by_decision"]["allow"] >= len(ids("allow")), stats
    assert stats["by_tool"]["delete_customer"] == 6, stats
    assert stats["by_policy"]["guard"].get("deny") == 2, stats
    assert stats["by_policy"]["allow"].get("hidden") == 2, stats
    assert stats["by_policy"]["approve"].get("require_approval") == 2, stats
    assert stats["by_route"] == dict(Counter(d["route"] for d in decisions)), stats
