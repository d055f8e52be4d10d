"""Config mistakes Anthropic's proxy users hit most (shared/design/compat-anthropic-proxy.md) must stop the
gateway at load with a self-explaining error, before it listens."""

from __future__ import annotations

from conftest import free_port, render_config


def test_routes_written_as_a_list_is_rejected_with_an_example(stack, certs):
    cfg = render_config(free_port(), stack.certs, {"docs": "http://127.0.0.1:9000"}, ["127.0.0.0/8"])
    cfg = cfg.replace("  docs: http://127.0.0.1:9000", "  - docs: http://127.0.0.1:9000")

    out = stack.gateway_fails(cfg)

    assert "routes must be a map of host" in out, out
    assert "docs: http" in out.split("routes must be a map", 1)[1], f"no example shown: {out}"


def test_route_with_a_path_is_an_invalid_upstream(stack, certs):
    cfg = render_config(free_port(), stack.certs, {"docs": "http://127.0.0.1:9000/mcp"}, ["127.0.0.0/8"])

    out = stack.gateway_fails(cfg)

    assert "invalid upstream" in out and "must be scheme://host:port" in out, out


def test_route_without_a_port_is_an_invalid_upstream(stack, certs):
    cfg = render_config(free_port(), stack.certs, {"docs": "http://127.0.0.1"}, ["127.0.0.0/8"])

    out = stack.gateway_fails(cfg)

    assert "invalid upstream" in out and "must be scheme://host:port" in out, out
