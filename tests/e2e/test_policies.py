"""The Wasm policy engine end to end with real MCP SDK peers: mcp 2.3.0 clients (modern 2026-07-28 and legacy
era) → gateway with the stock policy components (tool-allowlist, mutation-guard) and the hostile fixture →
server_v2 (MCPServer) / server_v1 (FastMCP).

Every refusal is checked on the wire as the SDK surfaces it (text, `isError`, JSON-RPC error) and against the
upstream's request records: a refused call never reaches the upstream. The gateway may send the upstream one
`tools/list` of its own (JSON-RPC id `mcp-gateway-catalogue-0`, carrying the refused request's gateway id) when
a call names a tool it has not seen yet; that one is expected and is not the refused call.

The components come from $MCP_POLICY_DIR or <repo>/target/wasm32-wasip2/policy (`bash policies/build.sh`).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from conftest import free_port, render_config
from helpers import MODERN, mcp_session, modern_tools_call, raw_post

ERAS = [MODERN, "legacy"]
ALL_TOOLS = {"search_docs", "get_customer", "delete_customer", "slow_progress"}
CATALOGUE_ID = "mcp-gateway-catalogue-0"


# ---------------------------------------------------------------------------------------------- config


def module(policy_dir, wasm: str, settings: dict | None = None, **extra) -> dict:
    """One `policies.modules` entry: `wasm` is the component's file stem (e.g. "tool_allowlist")."""
    m = {"path": str(policy_dir / f"{wasm}.wasm")}
    if settings is not None:
        m["settings"] = settings
    m.update(extra)
    return m


def policies(stack, modules: dict, default: list[str] | None = None) -> dict:
    """The `policies:` block, with the component cache in the test's artifact dir."""
    p = {"cache_dir": str(stack.dir / "policy-cache"), "modules": modules}
    if default is not None:
        p["default"] = default
    return p


def route(up, chain: list[str] | None = None) -> str:
    """A route value: the upstream with its own chain (`[]` = explicitly unpoliced)."""
    return json.dumps({"upstream": up.url, "policies": chain})


# ---------------------------------------------------------------------------------------------- client side


@dataclass
class Call:
    """One `tools/call` as the SDK surfaced it: a result, or the MCPError it raised."""

    name: str
    result: object = None
    error: MCPError | None = None
    request_id: str | None = None  # X-Gateway-Request-Id of the HTTP response that carried the call
    content_type: str | None = None
    elapsed: float = 0.0

    @property
    def text(self) -> str:
        assert self.result is not None, f"{self.name}: no result, the SDK raised {self.error!r}"
        return "".join(c.text for c in self.result.content if getattr(c, "type", None) == "text")


@dataclass
class Tap:
    """Sees every HTTP response of one client: the gateway request id and content type per JSON-RPC request
    (told apart by method, tool name and arguments: concurrent calls on one client use distinct arguments)."""

    seen: list[tuple] = field(default_factory=list)  # (method, name, arguments, request id, content type)

    async def __call__(self, resp):
        method = name = args = None
        try:
            body = json.loads(resp.request.content or b"null")
            if isinstance(body, dict):
                method = body.get("method")
                params = body.get("params") or {}
                name, args = params.get("name"), params.get("arguments")
        except ValueError:
            pass
        self.seen.append((method, name, args, resp.headers.get("x-gateway-request-id"),
                          resp.headers.get("content-type")))

    def last(self, method: str, name: str | None = None, args: dict | None = None):
        hits = [s for s in self.seen
                if s[0] == method and (name is None or s[1] == name) and (args is None or s[2] == args)]
        assert hits, f"no HTTP response seen for {method} {name} {args}: {self.seen}"
        return hits[-1]


async def call(client, tap: Tap, name: str, args: dict) -> Call:
    c = Call(name)
    t0 = time.monotonic()
    try:
        c.result = await client.call_tool(name, args)
    except MCPError as e:
        c.error = e
    c.elapsed = time.monotonic() - t0
    _, _, _, c.request_id, c.content_type = tap.last("tools/call", name, args)
    return c


def session_calls(url, ca_file, mode, steps):
    """Runs `steps` — ("list",) or ("call", name, args) — on one client session; returns (outputs, tap)."""
    tap = Tap()

    async def main():
        out = []
        async with mcp_session(url, ca_file, mode, on_response=tap) as client:
            for step in steps:
                if step[0] == "list":
                    out.append(await client.list_tools())
                else:
                    out.append(await call(client, tap, step[1], step[2]))
        return out

    return anyio.run(main), tap


def modern_raw_call(gw, route_key, ca_file, name, args):
    """A 2026-07-28 tools/call sent raw (to see the exact JSON the gateway answers)."""
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": name}
    return anyio.run(lambda: raw_post(gw.url(route_key), ca_file, modern_tools_call(name, args, rid=7),
                                      headers=headers))


# ---------------------------------------------------------------------------------------------- upstream side


def forwarded_calls(up, name: str | None = None) -> list[dict]:
    return [r for r in up.records() if r["rpc_method"] == "tools/call" and (name is None or r["rpc_name"] == name)]


def assert_not_forwarded(up, c: Call, never_called: bool = True):
    """Nothing the gateway sent for the refused request reached the upstream, except its own catalogue fetch;
    with `never_called`, the upstream has not seen any tools/call of that tool at all."""
    assert c.request_id, f"no X-Gateway-Request-Id on the answer to {c.name}"
    sent = [r for r in up.records() if r["request_id"] == c.request_id]
    others = [r for r in sent if not (r["rpc_method"] == "tools/list" and r["rpc_id"] == CATALOGUE_ID)]
    assert not others, f"refused call {c.name} ({c.request_id}) reached the upstream: {others}"
    if never_called:
        assert not forwarded_calls(up, c.name), f"upstream saw a tools/call {c.name}: {forwarded_calls(up, c.name)}"


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def log_lines(gw, needle: str) -> list[str]:
    """Lines of the gateway log containing `needle`, colour codes removed."""
    return [ln for ln in ANSI.sub("", gw.log_text()).splitlines() if needle in ln]


def assert_refused_text(c: Call, prefix: str):
    assert c.error is None, f"{c.name}: expected an isError result, the SDK raised {c.error!r}"
    assert c.result.is_error is True, f"{c.name}: not an error result: {c.result}"
    assert c.text.startswith(prefix), f"{c.name}: {c.text!r} does not start with {prefix!r}"
    assert f"Gateway request id: {c.request_id}." in c.text, \
        f"{c.name}: text does not carry the response's request id {c.request_id}: {c.text!r}"


# ---------------------------------------------------------------------------------------------- 1. allowed


@pytest.mark.parametrize("mode", ERAS)
def test_allowed_calls_pass_through_the_chain(stack, certs, policy_dir, mode):
    """crm: [allow, guard] and docs (default chain [guard]) let read-only, allowlisted calls through."""
    up = stack.upstream("v2")
    mods = {
        "allow": module(policy_dir, "tool_allowlist", {"allow": ["search_docs", "get_*"]}),
        "guard": module(policy_dir, "mutation_guard", {"destructive": "deny"}, mode="enforce",
                        limits={"memory_mb": 16, "timeout_ms": 500}),
    }
    gw = stack.gateway({"crm": route(up, ["allow", "guard"]), "docs": up.url},
                       policies=policies(stack, mods, default=["guard"]))

    (s1, g1), tap1 = session_calls(gw.url("crm"), certs.ca_file, mode, [
        ("call", "search_docs", {"query": "chain"}), ("call", "get_customer", {"id": "c-7"})])
    (s2,), _ = session_calls(gw.url("docs"), certs.ca_file, mode, [("call", "search_docs", {"query": "dflt"})])

    for c, want in ((s1, "v2 results for chain"), (g1, "v2 customer c-7"), (s2, "v2 results for dflt")):
        assert c.error is None and c.result.is_error is False, (c.name, c.error, c.result)
        assert c.text == want
    calls = forwarded_calls(up)
    assert [r["rpc_name"] for r in calls] == ["search_docs", "get_customer", "search_docs"], calls
    # The call that reached the upstream is the one whose answer the client got (same gateway request id).
    assert [r["request_id"] for r in calls] == [s1.request_id, g1.request_id, s2.request_id]
    if mode == MODERN:
        assert all(r["protocol_version"] == MODERN for r in calls), calls


# ---------------------------------------------------------------------------------------------- 2. denied


@pytest.mark.parametrize("mode", ERAS)
def test_destructive_call_is_denied_and_never_forwarded(stack, certs, policy_dir, mode):
    up = stack.upstream("v2")
    mods = {"guard": module(policy_dir, "mutation_guard", {"destructive": "deny"})}
    gw = stack.gateway({"crm": route(up, ["guard"])}, policies=policies(stack, mods))

    listing, d, s, u = session_calls(gw.url("crm"), certs.ca_file, mode, [
        ("list",), ("call", "delete_customer", {"id": "c-1"}), ("call", "search_docs", {"query": "after"}),
        ("call", "drop_everything", {})])[0]

    # Without hide_denied the guard keeps the tool listed: the model learns why from the refusal instead.
    assert {t.name for t in listing.tools} == ALL_TOOLS
    assert_refused_text(d, "Blocked by policy 'guard': tool `delete_customer` may be destructive")
    assert "destructive tools is deny (mutation-guard: destructive)" in d.text, d.text
    assert "Do not retry this call." in d.text
    assert_not_forwarded(up, d)
    assert s.text == "v2 results for after", "the session must keep working after a refusal"
    # A tool the upstream does not list counts as destructive (the spec's defaults): denied too.
    assert_refused_text(u, "Blocked by policy 'guard': tool `drop_everything` ")
    assert "this route's rule for destructive tools is deny (mutation-guard: destructive)" in u.text, u.text
    assert_not_forwarded(up, u)
    assert [r["rpc_name"] for r in forwarded_calls(up)] == ["search_docs"]
    gw.wait_log(d.request_id)

    if mode == MODERN:  # the exact JSON: HTTP 200, CallToolResult with resultType, header id == text id
        resp = modern_raw_call(gw, "crm", certs.ca_file, "delete_customer", {"id": "c-2"})
        assert resp.status == 200, resp.text
        body = resp.json()
        rid = resp.headers["x-gateway-request-id"]
        assert body["id"] == 7 and "error" not in body, body
        result = body["result"]
        assert result["isError"] is True and result["resultType"] == "complete", result
        assert result["content"][0]["text"].startswith("Blocked by policy 'guard': tool `delete_customer`")
        assert result["content"][0]["text"].endswith(f"Gateway request id: {rid}."), result
        assert not forwarded_calls(up, "delete_customer")


def test_unlisted_tool_is_reported_as_unlisted(stack, certs, policy_dir):
    """WIT `tool-call.tool`: "`none` when the upstream does not list it"; mutation-guard then says so."""
    up = stack.upstream("v2")
    mods = {"guard": module(policy_dir, "mutation_guard", {"destructive": "deny"})}
    gw = stack.gateway({"crm": route(up, ["guard"])}, policies=policies(stack, mods))

    (u,), _ = session_calls(gw.url("crm"), certs.ca_file, MODERN, [("call", "drop_everything", {})])

    assert_not_forwarded(up, u)
    assert_refused_text(u, "Blocked by policy 'guard': tool `drop_everything` is not listed by the server, "
                           "so it counts as destructive")


# ---------------------------------------------------------------------------------------------- 3. hidden


@pytest.mark.parametrize("mode,kind", [(MODERN, "v2"), ("legacy", "v2"), ("legacy", "v1")])
def test_hidden_tool_is_unlisted_and_unknown(stack, certs, policy_dir, mode, kind):
    """tool-allowlist hides what it does not allow: missing from tools/list (the legacy Python servers answer
    with SSE, filtered event by event) and -32602 `Unknown tool` when called, even before any listing."""
    up = stack.upstream(kind)
    mods = {"allow": module(policy_dir, "tool_allowlist", {"allow": ["search_docs", "get_*"]})}
    gw = stack.gateway({"crm": route(up, ["allow"])}, policies=policies(stack, mods))

    (first, listing, again, ok), tap = session_calls(gw.url("crm"), certs.ca_file, mode, [
        ("call", "delete_customer", {"id": "c-1"}), ("list",), ("call", "delete_customer", {"id": "c-2"}),
        ("call", "get_customer", {"id": "c-3"})])

    assert {t.name for t in listing.tools} == {"search_docs", "get_customer"}
    list_ctype = tap.last("tools/list")[4] or ""
    if mode == "legacy":
        assert list_ctype.startswith("text/event-stream"), \
            f"the upstream's tools/list answer was not SSE ({list_ctype}): this case would not test the SSE filter"
    for c in (first, again):
        assert c.result is None, f"hidden tool answered with a result instead of an error: {c.result}"
        assert isinstance(c.error, MCPError), c.error
        assert c.error.code == -32602, c.error.error
        assert c.error.message == "Unknown tool: delete_customer", c.error.error
        assert c.error.data == {"request_id": c.request_id}, c.error.error
        assert_not_forwarded(up, c)
    assert ok.text == f"{kind} customer c-3"
    # The first call named a tool the gateway had not seen: it may fetch the list once, under that call's id.
    catalogue = [r for r in up.records() if r["rpc_id"] == CATALOGUE_ID]
    assert len(catalogue) <= 1 and all(r["request_id"] == first.request_id for r in catalogue), catalogue


# ---------------------------------------------------------------------------------------------- 4. approval


@pytest.mark.parametrize("mode", ERAS)
def test_approval_required_is_reported_and_not_forwarded(stack, certs, policy_dir, mode):
    up = stack.upstream("v2")
    mods = {"guard": module(policy_dir, "mutation_guard", {"require_approval": ["delete_*"],
                                                           "destructive": "allow"})}
    gw = stack.gateway({"crm": route(up, ["guard"])}, policies=policies(stack, mods))

    (d, g), _ = session_calls(gw.url("crm"), certs.ca_file, mode, [
        ("call", "delete_customer", {"id": "c-9"}), ("call", "get_customer", {"id": "c-9"})])

    assert_refused_text(d, "Approval required by policy 'guard': tool `delete_customer` needs approval on this "
                           "route (mutation-guard: require_approval `delete_*`)")
    assert "The call was not executed" in d.text
    assert_not_forwarded(up, d)
    assert g.text == "v2 customer c-9"


# ---------------------------------------------------------------------------------------------- 5. hostile


HOSTILE = {
    # route/module name: (settings, limits, expected failure text). Only the loop gets a short clock: the others
    # get a long one, so that on a loaded machine their own failure (not the default 50 ms timeout) is what trips.
    "hloop": ({"mode": "loop"}, {"timeout_ms": 100}, "the policy failed (timed out after 100ms); failing closed"),
    "hmemory": ({"mode": "memory"}, {"memory_mb": 16, "timeout_ms": 5000},
                "the policy failed (exceeded its memory limit of 16 MiB); failing closed"),
    "hpanic": ({"mode": "panic"}, {"timeout_ms": 5000},
               "the policy failed (panicked (trap: unreachable)); failing closed"),
    "hoversized": ({"mode": "oversized", "oversized_bytes": 1048576}, {"timeout_ms": 5000},
                   "the policy failed (returned an oversized answer ("),
}


def test_hostile_policies_fail_closed_while_a_good_route_keeps_working(stack, certs, policy_dir):
    good_up = stack.upstream("v2")
    bad_up = stack.upstream("v2")
    mods = {"guard": module(policy_dir, "mutation_guard", {"destructive": "deny"})}
    for name, (settings, limits, _) in HOSTILE.items():
        mods[name] = module(policy_dir, "hostile_policy", settings, **({"limits": limits} if limits else {}))
    routes = {"good": route(good_up, ["guard"])}
    routes.update({name: route(bad_up, [name]) for name in HOSTILE})
    gw = stack.gateway(routes, policies=policies(stack, mods))
    rounds = 3  # per hostile route, each round a few concurrent calls

    good: list[tuple[float, float]] = []  # (finished at, latency)
    good_failures: list[str] = []
    phases: dict[str, tuple[float, float]] = {}
    refused: dict[str, list[Call]] = {name: [] for name in HOSTILE}

    async def main():
        stop = anyio.Event()

        async def good_stream():
            tap = Tap()
            async with mcp_session(gw.url("good"), certs.ca_file, MODERN, on_response=tap) as client:
                i = 0
                while not stop.is_set():
                    c = await call(client, tap, "search_docs", {"query": f"g{i}"})
                    if c.error is not None or c.result.is_error or c.text != f"v2 results for g{i}":
                        good_failures.append(f"call {i}: {c.error!r} {c.result}")
                    good.append((time.monotonic(), c.elapsed))
                    i += 1

        async def hostile(name):
            tap = Tap()
            async with mcp_session(gw.url(name), certs.ca_file, MODERN, on_response=tap) as client:
                for _ in range(rounds):
                    async with anyio.create_task_group() as tg:
                        for k in range(3):
                            async def one(k=k):
                                refused[name].append(await call(client, tap, "search_docs", {"query": f"{name}{k}"}))
                            tg.start_soon(one)

        async with anyio.create_task_group() as tg:
            tg.start_soon(good_stream)
            with anyio.fail_after(10):  # the good stream must get going first
                while len(good) < 3:
                    await anyio.sleep(0.01)
            with anyio.fail_after(40):
                for name in HOSTILE:
                    t0 = time.monotonic()
                    await hostile(name)
                    phases[name] = (t0, time.monotonic())
            await anyio.sleep(0.2)
            stop.set()

    anyio.run(main)

    for name, (_, _, expected) in HOSTILE.items():
        calls = refused[name]
        assert len(calls) == rounds * 3
        for c in calls:
            assert_refused_text(c, f"Blocked by policy '{name}': {expected}")
            assert_not_forwarded(bad_up, c)
    assert forwarded_calls(bad_up) == [], "a call on a hostile route reached the upstream"

    assert not good_failures, good_failures
    worst = max(lat for _, lat in good)
    durations = {n: round(b - a, 3) for n, (a, b) in phases.items()}
    print(f"good route: {len(good)} calls, worst latency {worst:.3f}s; hostile phases {durations}")
    assert len(good) >= 20, f"good route made only {len(good)} calls"
    for name, (a, b) in phases.items():
        during = [t for t, _ in good if a <= t <= b + 0.5]
        assert during, f"good route made no progress while {name} was being called ({a:.3f}..{b:.3f})"
    assert worst < 3.0, f"a good-route call took {worst:.3f}s while hostile policies ran"
    assert len(forwarded_calls(good_up, "search_docs")) == len(good)
    failures = log_lines(gw, "policy evaluation failed")
    for name, kind in (("hloop", "timeout"), ("hmemory", "out_of_memory"), ("hpanic", "panic"),
                       ("hoversized", "oversized_output")):
        for c in refused[name]:
            assert any(c.request_id in ln and f"policy={name}" in ln and f'kind="{kind}"' in ln
                       for ln in failures), f"no `{kind}` failure of {name} logged for {c.request_id}"


@pytest.mark.parametrize("mode", ERAS)
def test_failing_hidden_tools_hides_every_tool(stack, certs, policy_dir, mode):
    """A policy whose `hidden` export panics fails closed on listings too: the (SSE or JSON) tools/list answer
    comes back empty, and a call is refused with the failure, not forwarded."""
    up = stack.upstream("v2")
    mods = {"hpanic": module(policy_dir, "hostile_policy", {"mode": "allow", "hidden_tools_mode": "panic"})}
    gw = stack.gateway({"crm": route(up, ["hpanic"])}, policies=policies(stack, mods))

    (listing, c), _ = session_calls(gw.url("crm"), certs.ca_file, mode, [
        ("list",), ("call", "search_docs", {"query": "x"})])

    assert [r["rpc_method"] for r in up.records()].count("tools/list") == 1, "the listing was not forwarded"
    assert listing.tools == [], f"tools leaked through a failing hidden: {[t.name for t in listing.tools]}"
    assert_refused_text(c, "Blocked by policy 'hpanic': the policy failed (panicked (trap: unreachable)); "
                           "failing closed")
    assert_not_forwarded(up, c)


# ---------------------------------------------------------------------------------------------- 6. unpoliced / no chain


@pytest.mark.parametrize("mode", ERAS)
def test_empty_chain_route_forwards_everything(stack, certs, policy_dir, mode):
    """`policies: []` is an explicit "allow everything", even with a deny-all default for the other routes."""
    up = stack.upstream("v2")
    mods = {"guard": module(policy_dir, "mutation_guard", {"destructive": "deny", "hide_denied": True})}
    gw = stack.gateway({"open": route(up, []), "docs": up.url}, policies=policies(stack, mods, default=["guard"]))

    (listing, d), _ = session_calls(gw.url("open"), certs.ca_file, mode, [
        ("list",), ("call", "delete_customer", {"id": "c-5"})])
    (guarded_listing, gd), _ = session_calls(gw.url("docs"), certs.ca_file, mode, [
        ("list",), ("call", "delete_customer", {"id": "c-6"})])

    assert {t.name for t in listing.tools} == ALL_TOOLS
    assert d.error is None and d.result.is_error is False and d.text == "v2 deleted c-5"
    assert [r["request_id"] for r in forwarded_calls(up, "delete_customer")] == [d.request_id]
    # The same upstream behind the default chain: hidden and unknown (proves the guard is really configured).
    assert {t.name for t in guarded_listing.tools} == ALL_TOOLS - {"delete_customer"}
    assert gd.error is not None and gd.error.code == -32602, (gd.error, gd.result)
    assert_not_forwarded(up, gd, never_called=False)  # the open route's call went through


def test_route_without_a_chain_and_no_default_stops_the_gateway(stack, certs, policy_dir):
    mods = {"guard": module(policy_dir, "mutation_guard")}
    cfg = render_config(free_port(), stack.certs, {
        "crm": json.dumps({"upstream": "http://127.0.0.1:9", "policies": ["guard"]}),
        "docs": "http://127.0.0.1:9",
    }, ["127.0.0.0/8"], policies=policies(stack, mods))

    cp = stack.gateway_refuses(cfg)

    assert "has no policy chain" in cp.stderr, f"stderr: {cp.stderr!r}\nstdout: {cp.stdout!r}"
    assert "routes.docs" in cp.stderr, cp.stderr
    assert "crm" not in cp.stderr.split("has no policy chain", 1)[0].rsplit("\n", 1)[-1], cp.stderr


# ---------------------------------------------------------------------------------------------- 7. monitor


@pytest.mark.parametrize("hostile_mode", ["deny", "panic"])
@pytest.mark.parametrize("mode", ERAS)
def test_monitor_mode_lets_calls_through_and_logs(stack, certs, policy_dir, mode, hostile_mode):
    up = stack.upstream("v2")
    mods = {"watch": module(policy_dir, "hostile_policy", {"mode": hostile_mode}, mode="monitor")}
    gw = stack.gateway({"crm": route(up, ["watch"])}, policies=policies(stack, mods))

    (d,), _ = session_calls(gw.url("crm"), certs.ca_file, mode, [("call", "delete_customer", {"id": "c-3"})])

    assert d.error is None and d.result.is_error is False and d.text == "v2 deleted c-3", (d.error, d.result)
    assert [r["request_id"] for r in forwarded_calls(up, "delete_customer")] == [d.request_id]
    gw.wait_log("monitor: policy would not allow")
    lines = [ln for ln in log_lines(gw, "monitor: policy would not allow") if d.request_id in ln]
    assert lines, f"no monitor line for request {d.request_id}:\n{gw.log_text()[-3000:]}"
    assert any("policy=watch" in ln for ln in lines), lines


# ---------------------------------------------------------------------------------------------- 8. invalid arguments


@pytest.mark.parametrize("mode", ERAS)
def test_invalid_arguments_are_answered_and_not_forwarded(stack, certs, policy_dir, mode):
    up = stack.upstream("v2")
    mods = {"guard": module(policy_dir, "mutation_guard")}
    gw = stack.gateway({"docs": route(up, ["guard"])}, policies=policies(stack, mods))

    # No listing first: the gateway fetches the catalogue for the first call, then validates against it.
    (wrong_type, missing, ok), _ = session_calls(gw.url("docs"), certs.ca_file, mode, [
        ("call", "search_docs", {"query": 123}), ("call", "get_customer", {}),
        ("call", "search_docs", {"query": "fine"})])

    assert_refused_text(wrong_type, "Invalid arguments for tool 'search_docs': ")
    assert_refused_text(missing, "Invalid arguments for tool 'get_customer': ")
    assert "Fix the arguments and call again." in wrong_type.text
    assert "query" in wrong_type.text and "id" in missing.text, (wrong_type.text, missing.text)
    for c in (wrong_type, missing):
        assert_not_forwarded(up, c, never_called=False)  # `ok` is a search_docs call that did go through
    assert ok.text == "v2 results for fine"
    assert [r["rpc_name"] for r in forwarded_calls(up)] == ["search_docs"]
