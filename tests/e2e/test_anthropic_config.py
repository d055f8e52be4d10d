"""The config example from Anthropic's mcp-tunnels docs (kept verbatim, comments included; see
shared/design/compat-anthropic-proxy.md) starts the gateway and serves, with only the values for the listen
port, cert paths, tunnel_domain, routes and allowed_ips changed to the test's."""

from __future__ import annotations

import re

import anyio

from conftest import free_port, run_client_v1
from helpers import MODERN, mcp_session

ANTHROPIC_EXAMPLE = """\
listen_addr: ":8080"            # Go-style ":port" means all interfaces
log_level: info                 # debug | info | warn | error
shutdown_timeout: 30s           # drain in-flight requests on SIGTERM
tunnel_domain: abcd1234.tunnel.anthropic.com
tls:
  cert_file: /data/tls.crt
  key_file: /data/tls.key
routes:                         # a MAP: key = bare subdomain or full hostname; value = scheme://host:port
  docs: http://docs-mcp.example.corp:8080
  search: http://10.0.12.7:9000
upstream:
  allowed_ips: [10.0.0.0/8]     # REPLACES the default (10/8, 172.16/12, 192.168/16); CIDR or single address
  # disable_ip_validation: false   # mutually exclusive with allowed_ips
  # tls: { ca_file: /data/upstream-ca.pem, include_system_cas: false }   # for https:// upstreams
"""


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"example drifted: {old!r} not found exactly once"
    return text.replace(old, new)


def test_anthropic_docs_config_serves(stack, certs):
    docs = stack.upstream("v2")
    search = stack.upstream("v1")
    port = free_port()
    cfg = ANTHROPIC_EXAMPLE
    # Loopback only here (the example's ":8080" would bind every interface).
    cfg = _replace_once(cfg, 'listen_addr: ":8080"', f'listen_addr: "127.0.0.1:{port}"')
    cfg = _replace_once(cfg, "abcd1234.tunnel.anthropic.com", "tunnel.example.test")
    cfg = _replace_once(cfg, "/data/tls.crt", str(certs.cert_file))
    cfg = _replace_once(cfg, "/data/tls.key", str(certs.key_file))
    cfg = _replace_once(cfg, "http://docs-mcp.example.corp:8080", docs.url)
    cfg = _replace_once(cfg, "http://10.0.12.7:9000", search.url)
    cfg = _replace_once(cfg, "allowed_ips: [10.0.0.0/8]", "allowed_ips: [127.0.0.0/8]")
    assert cfg.count("#") == ANTHROPIC_EXAMPLE.count("#"), "comments must be kept"

    gw = stack.gateway(config_text=cfg, port=port)

    async def modern_docs():
        async with mcp_session(gw.url("docs"), certs.ca_file, MODERN) as client:
            return await client.call_tool("search_docs", {"query": "anthropic"})

    result = anyio.run(modern_docs)
    assert result.content[0].text == "v2 results for anthropic"
    out = run_client_v1(gw.url("search"), certs.ca_file)
    assert out["server_name"] == "e2e-upstream-v1"
    assert out["call"]["content"][0]["text"] == "v1 results for gateway"
    assert any(r["rpc_method"] == "tools/call" for r in docs.records())
    assert any(r["rpc_method"] == "tools/call" for r in search.records())


def test_managed_mode_tunnel_domain_flag_sets_the_domain_and_survives_a_reload(stack, certs):
    """Anthropic's chart in managed mode starts the proxy with `-tunnel-domain D`: D is the tunnel's domain
    whatever the file says, and stays so when the file is reloaded."""
    docs = stack.upstream("v2")
    port = free_port()
    cfg = ANTHROPIC_EXAMPLE
    cfg = _replace_once(cfg, 'listen_addr: ":8080"', f'listen_addr: "127.0.0.1:{port}"')
    # The file keeps Anthropic's placeholder domain; the certificate is for *.tunnel.example.test.
    cfg = _replace_once(cfg, "/data/tls.crt", str(certs.cert_file))
    cfg = _replace_once(cfg, "/data/tls.key", str(certs.key_file))
    cfg = _replace_once(cfg, "http://docs-mcp.example.corp:8080", docs.url)
    cfg = _replace_once(cfg, "http://10.0.12.7:9000", docs.url)
    cfg = _replace_once(cfg, "allowed_ips: [10.0.0.0/8]", "allowed_ips: [127.0.0.0/8]")

    gw = stack.gateway(config_text=cfg, port=port, flags=("-tunnel-domain", "tunnel.example.test"))
    gw.wait_log("tunnel_domain set by -tunnel-domain")
    log = re.sub(r"\x1b\[[0-9;]*m", "", gw.wait_log("config reload on change"))
    assert "host=docs.tunnel.example.test" in log and "host=docs.abcd1234" not in log, log

    async def call():
        async with mcp_session(gw.url("docs"), certs.ca_file, MODERN) as client:
            return await client.call_tool("search_docs", {"query": "managed"})

    assert anyio.run(call).content[0].text == "v2 results for managed"
    # A reload reads the file again (still naming abcd1234…): the flag's domain still routes.
    gw.config_file.write_text(_replace_once(cfg, "log_level: info", "log_level: debug"))
    gw.wait_log("config reloaded", timeout=15)
    assert anyio.run(call).content[0].text == "v2 results for managed"
