"""Requests the gateway must refuse itself, before (or instead of) talking to an upstream: unknown host,
SNI/Host mismatch, upstream outside allowed_ips, duplicate JSON keys, modern header/body mismatch.
Each test also checks that the upstream received nothing."""

from __future__ import annotations

import anyio

from helpers import MODERN, b64_header, modern_tools_call, raw_post, sse_or_json_messages

LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}


def _error_envelope(resp, http_status):
    assert resp.status == http_status, f"expected HTTP {http_status}, got {resp.status}: {resp.text[:500]}"
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert body.get("jsonrpc") == "2.0" and "error" in body, body
    return body


def test_unknown_host_is_refused_with_421(stack, certs):
    up = stack.upstream("v2")
    gw = stack.gateway({"docs": up.url})

    resp = anyio.run(raw_post, gw.url("nope"), certs.ca_file, LIST)

    body = _error_envelope(resp, 421)
    assert body["id"] is None
    assert "nope.tunnel.example.test" in body["error"]["message"], body
    gw.wait_log("no route for host")
    assert up.records() == [], "the upstream received a request for an unknown host"


def test_sni_host_mismatch_is_refused_with_421(stack, certs):
    docs = stack.upstream("v2")
    crm = stack.upstream("v2")
    gw = stack.gateway({"docs": docs.url, "crm": crm.url})

    resp = anyio.run(lambda: raw_post(gw.url("docs"), certs.ca_file, LIST,
                                      headers={"Host": f"crm.tunnel.example.test:{gw.port}"},
                                      sni="docs.tunnel.example.test"))

    body = _error_envelope(resp, 421)
    assert "sni" in body["error"]["message"].lower(), body
    assert docs.records() == [] and crm.records() == [], "a request with SNI != Host was forwarded"


def test_upstream_outside_allowed_ips_is_never_dialled(stack, certs):
    sink = stack.tcp_sink()
    gw = stack.gateway({"docs": f"http://127.0.0.1:{sink.port}"}, allowed_ips=["10.0.0.0/8"])

    resp = anyio.run(raw_post, gw.url("docs"), certs.ca_file, LIST)

    body = _error_envelope(resp, 502)
    assert "IP validation failed" in body["error"]["message"], body
    gw.wait_log("IP validation failed: 127.0.0.1 is not in allowed_ips")
    assert sink.accepted == [], f"gateway connected to a disallowed upstream: {sink.accepted}"


def test_duplicate_json_keys_are_a_parse_error(stack, certs):
    up = stack.upstream("v2")
    gw = stack.gateway({"docs": up.url})
    raw = ('{"jsonrpc":"2.0","id":1,"method":"tools/call",'
           '"params":{"name":"search_docs","name":"delete_customer","arguments":{}}}')

    resp = anyio.run(raw_post, gw.url("docs"), certs.ca_file, raw)

    body = _error_envelope(resp, 400)
    assert body["error"]["code"] == -32700, body
    assert "duplicate" in body["error"]["message"].lower(), body
    assert up.records() == [], "a body with duplicate keys reached the upstream"


def test_modern_header_body_mismatch_is_refused(stack, certs):
    up = stack.upstream("v2")
    gw = stack.gateway({"docs": up.url})
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "search_docs"}

    resp = anyio.run(lambda: raw_post(gw.url("docs"), certs.ca_file,
                                      modern_tools_call("delete_customer", {"id": "c-1"}), headers=headers))

    body = _error_envelope(resp, 400)
    assert body["error"]["code"] == -32020, body
    # The upstream SDK would answer -32020 too: prove the gateway answered without forwarding.
    assert up.records() == [], f"mismatched request was forwarded: {up.records()}"


def test_modern_base64_name_header_is_accepted(stack, certs):
    up = stack.upstream("v2")
    gw = stack.gateway({"docs": up.url})
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": b64_header("search_docs")}

    resp = anyio.run(lambda: raw_post(gw.url("docs"), certs.ca_file,
                                      modern_tools_call("search_docs", {"query": "b64"}), headers=headers))

    assert resp.status == 200, f"HTTP {resp.status}: {resp.text[:500]}"
    messages = sse_or_json_messages(resp)
    final = [m for m in messages if m.get("id") == 1]
    assert final and final[-1]["result"]["content"][0]["text"] == "v2 results for b64", messages
    calls = [r for r in up.records() if r["rpc_method"] == "tools/call"]
    assert [c["rpc_name"] for c in calls] == ["search_docs"], calls
