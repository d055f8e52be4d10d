"""ASGI middleware for the upstream test servers: appends one JSON line per HTTP request to a file.

Each line: {"request_id": <X-Gateway-Request-Id or null>, "http_method", "path", "host",
"rpc_method", "rpc_name", "rpc_id", "protocol_version"}. The tests read it to check what the gateway
forwarded (and that refused requests never arrived). Stdlib only: imported by both mcp venvs.
"""

import json
import os
import threading

_lock = threading.Lock()


def _header(scope, name):
    name = name.lower().encode()
    for k, v in scope.get("headers") or []:
        if k.lower() == name:
            return v.decode("latin-1")
    return None


class RecordRequests:
    """Wraps an ASGI app; records HTTP requests (body peeked and replayed unchanged)."""

    def __init__(self, app, path):
        self.app = app
        self.path = path

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        chunks = []
        more = True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":  # client went away before sending the body
                break
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        body = b"".join(chunks)
        rpc_method = rpc_name = rpc_id = None
        try:
            doc = json.loads(body) if body else None
            if isinstance(doc, dict):
                rpc_method = doc.get("method")
                rpc_id = doc.get("id")
                params = doc.get("params")
                if isinstance(params, dict):
                    rpc_name = params.get("name")
        except ValueError:
            rpc_method = "<unparseable>"
        entry = {
            "request_id": _header(scope, "x-gateway-request-id"),
            "http_method": scope["method"],
            "path": scope["path"],
            "host": _header(scope, "host"),
            "rpc_method": rpc_method,
            "rpc_name": rpc_name,
            "rpc_id": rpc_id,
            "protocol_version": _header(scope, "mcp-protocol-version"),
        }
        with _lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def record_path(argv_value):
    """Record file from argv, else $MCP_RECORD_FILE, else None (no recording)."""
    return argv_value or os.environ.get("MCP_RECORD_FILE")
