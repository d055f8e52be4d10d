"""Legacy-era MCP client on mcp==1.30.0 (`streamablehttp_client` + `ClientSession`), run under tests/.venv/mcp1.

Connects to URL (e.g. https://docs.tunnel.example.test:PORT/mcp) but dials PIN_IP instead of resolving the
host, trusting CA_FILE; Host header, TLS SNI and certificate name stay the URL's host (pinned_http.py). The
custom httpx client reaches the SDK through `httpx_client_factory`.

Runs initialize, tools/list, tools/call search_docs and slow_progress (with a progress callback), and prints
one JSON object on stdout: {"protocol_version", "server_name", "tools": [{name, annotations}], "call": {...},
"progress": [[t, progress, total]], "progress_result": ...}.

Usage: python client_v1.py URL [--ca CA_FILE] [--pin IP]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import anyio
import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pinned_http import pinned_client  # noqa: E402


def _dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def run(url, ca_file, pin_ip):
    host = httpx.URL(url).host
    pins = {host: pin_ip} if pin_ip else {}

    def factory(headers=None, timeout=None, auth=None):
        kw = {}
        if headers is not None:
            kw["headers"] = headers
        if timeout is not None:
            kw["timeout"] = timeout
        if auth is not None:
            kw["auth"] = auth
        return pinned_client(httpx, ca_file=ca_file, pins=pins, **kw)

    out = {}
    async with streamablehttp_client(url, httpx_client_factory=factory) as (read, write, get_session_id):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            out["protocol_version"] = init.protocolVersion
            out["server_name"] = init.serverInfo.name
            out["session_id_present"] = bool(get_session_id())
            tools = await session.list_tools()
            out["tools"] = [{"name": t.name, "annotations": _dump(t.annotations) if t.annotations else None}
                            for t in tools.tools]
            call = await session.call_tool("search_docs", {"query": "gateway"})
            out["call"] = _dump(call)
            t0 = time.monotonic()
            progress = []

            async def on_progress(p, total, message):
                progress.append([time.monotonic() - t0, p, total])

            res = await session.call_tool("slow_progress", {"steps": 2, "delay": 0.3},
                                          progress_callback=on_progress)
            out["progress"] = progress
            out["progress_result"] = _dump(res)
            out["progress_elapsed"] = time.monotonic() - t0
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--ca")
    ap.add_argument("--pin")
    args = ap.parse_args()
    out = anyio.run(run, args.url, args.ca, args.pin)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
