"""Legacy-era MCP client on mcp==1.30.0 that answers elicitations (caller confirmation tests), run under
tests/.venv/mcp1.

Connects like client_v1.py (pinned address, test CA), declares elicitation (an `elicitation_callback`), calls
TOOL with ARGS (JSON) and answers every `elicitation/create` with ANSWER: `accept` (content {"confirm": true})
or `decline`. Prints one JSON object: {"session_id_present", "asked": [elicitation messages], "result": {...}}.

Usage: python confirm_v1.py URL TOOL ARGS ANSWER [--ca CA_FILE] [--pin IP]
"""

import argparse
import json
import sys
from pathlib import Path

import anyio
import httpx
from mcp import ClientSession, types
from mcp.client.streamable_http import streamablehttp_client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pinned_http import pinned_client  # noqa: E402


async def run(url, tool, args, answer, ca_file, pin_ip):
    host = httpx.URL(url).host
    pins = {host: pin_ip} if pin_ip else {}

    def factory(headers=None, timeout=None, auth=None):
        kw = {k: v for k, v in (("headers", headers), ("timeout", timeout), ("auth", auth)) if v is not None}
        return pinned_client(httpx, ca_file=ca_file, pins=pins, **kw)

    asked = []

    async def on_elicit(context, params):
        asked.append(params.message)
        if answer == "accept":
            return types.ElicitResult(action="accept", content={"confirm": True})
        return types.ElicitResult(action="decline")

    out = {}
    async with streamablehttp_client(url, httpx_client_factory=factory) as (read, write, get_session_id):
        async with ClientSession(read, write, elicitation_callback=on_elicit) as session:
            await session.initialize()
            out["session_id_present"] = bool(get_session_id())
            res = await session.call_tool(tool, args)
            out["result"] = res.model_dump(mode="json", by_alias=True, exclude_none=True)
    out["asked"] = asked
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("tool")
    ap.add_argument("args")
    ap.add_argument("answer", choices=["accept", "decline"])
    ap.add_argument("--ca")
    ap.add_argument("--pin")
    a = ap.parse_args()
    out = anyio.run(run, a.url, a.tool, json.loads(a.args), a.answer, a.ca, a.pin)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
