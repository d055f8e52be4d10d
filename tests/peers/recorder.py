"""ASGI middleware for the upstream test servers: appends one JSON line per HTTP request to a file.

Each line: {"request_id": <X-Gateway-Request-Id or null>, "http_method", "path", "host",
"rpc_method", "rpc_name", "rpc_id", "protocol_version"}. The tests read it to check what the gateway
forwarded (and that refused requests never arrived). Stdlib only: imported by both mcp venvs.

With $MCP_RECORD_AUDIT_DIR set (the gateway's audit directory), each line also has "audit_before": whether
a record naming that request id was already in the audit log's files when the request arrived here.
"""

import json
import os
import threading
from pathlib import Path

_lock = threading.Lock()


def audit_has(audit_dir, request_id, tail_bytes=1 << 17):
    """Whether any audit segment in `audit_dir` contains `"request_id":"<id>"` (newest segment's tail first)."""
    if not request_id:
        return False
    needle = f'"request_id":"{request_id}"'.encode()
    segs = sorted(Path(audit_dir).glob("audit-*.jsonl"), reverse=True)
    if segs:
        with open(segs[0], "rb") as f:
            f.seek(max(0, segs[0].stat().st_size - tail_bytes))
            if needle in f.read():
                return True
    return any(needle in seg.read_bytes() for seg in segs)


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
            "authorization": _header(scope, "authorization"),
        }
        audit_dir = os.environ.get("MCP_RECORD_AUDIT_DIR")
        if audit_dir:
            entry["audit_before"] = audit_has(audit_dir, entry["request_id"])
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
