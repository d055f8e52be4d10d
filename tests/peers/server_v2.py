"""Upstream MCP test server on mcp==2.3.0 (`MCPServer`), Streamable HTTP at http://127.0.0.1:PORT/mcp,
serving both protocol eras (legacy 2025-xx stateful sessions and modern 2026-07-28 stateless requests).

Usage: python server_v2.py PORT [RECORD_FILE]   (RECORD_FILE defaults to $MCP_RECORD_FILE)
Every HTTP request is appended to RECORD_FILE as a JSON line (see recorder.py). Prints `READY <port>`
on stdout once listening.
"""

import sys

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

from recorder import RecordRequests, record_path

mcp = MCPServer("e2e-upstream-v2", version="2.3.0-test")


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
def search_docs(query: str) -> str:
    """Search the documentation."""
    return f"v2 results for {query}"


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
def get_customer(id: str) -> str:
    """Look up one customer."""
    return f"v2 customer {id}"


@mcp.tool(annotations=ToolAnnotations(destructiveHint=True))
def delete_customer(id: str) -> str:
    """Delete one customer."""
    return f"v2 deleted {id}"


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
async def slow_progress(steps: int, delay: float, ctx: Context) -> str:
    """Report progress `steps` times, sleeping `delay` seconds after each report, then return."""
    for i in range(steps):
        await ctx.report_progress(i + 1, steps, f"step {i + 1}/{steps}")
        await anyio.sleep(delay)
    return f"v2 done after {steps} steps"


class _Server(uvicorn.Server):
    async def startup(self, sockets=None):
        await super().startup(sockets)
        print(f"READY {self.config.port}", flush=True)


def main():
    port = int(sys.argv[1])
    rec = record_path(sys.argv[2] if len(sys.argv) > 2 else None)
    app = mcp.streamable_http_app(host="127.0.0.1")
    if rec:
        app = RecordRequests(app, rec)
    _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")).run()


if __name__ == "__main__":
    main()
