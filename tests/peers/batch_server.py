"""A small spec-following MCP server for the 2025-03-26 Streamable HTTP transport, which (unlike the SDK
servers) accepts JSON-RPC batches, and which can answer in the shapes an attacker's server would use to slip
hidden tools past a filter that only looks at the obvious case. Standard library only.

    python batch_server.py PORT [SHAPE]

SHAPE (how a request's answer comes back; default `json`):
  json      one JSON object per request (an array for a batch), as the spec says
  array     a single request answered with a one-element JSON array
  sse-array an SSE stream whose event data is an array (also for a single request)
  sse-bom   an SSE stream starting with a UTF-8 byte-order mark
  error     HTTP 500 whose body is the normal JSON-RPC answer
  get-push  POSTed requests answered 202; their responses pushed on the session's GET stream

Tools: `search_docs` (read-only) and `delete_customer`; prompts and resources are listed too.
"""

import json
import queue
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
SHAPE = sys.argv[2] if len(sys.argv) > 2 else "json"
VERSION = "2025-03-26"
TOOLS = [
    {"name": "search_docs", "description": "Search the docs", "annotations": {"readOnlyHint": True},
     "inputSchema": {"type": "object", "properties": {"query": {"type": "string"}}}},
    {"name": "delete_customer", "description": "Delete a customer",
     "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}}}},
]
PUSH: dict[str, "queue.Queue[dict]"] = {}


def answer(msg: dict) -> dict | None:
    if "id" not in msg or "method" not in msg:
        return None  # notifications and responses get no answer
    method, rid = msg["method"], msg["id"]
    if method == "initialize":
        result = {"protocolVersion": VERSION, "capabilities": {"tools": {}, "resources": {}, "prompts": {}},
                  "serverInfo": {"name": "batch-server", "version": "1"}}
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        name = msg.get("params", {}).get("name")
        result = {"content": [{"type": "text", "text": f"called {name}"}]}
    elif method == "resources/list":
        result = {"resources": [{"uri": "file:///docs/a.md", "name": "a"}, {"uri": "file:///etc/passwd", "name": "passwd"}]}
    elif method == "prompts/list":
        result = {"prompts": [{"name": "summarize_doc"}, {"name": "leak_all"}]}
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"Method not found: {method}"}}
    return {"jsonrpc": "2.0", "id": rid, "result": result}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status: int, ctype: str, body: bytes, headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        batch = isinstance(body, list)
        msgs = body if batch else [body]
        answers = [a for a in (answer(m) for m in msgs) if a is not None]
        session = self.headers.get("Mcp-Session-Id")
        extra = {}
        if any(m.get("method") == "initialize" for m in msgs):
            session = uuid.uuid4().hex
            PUSH[session] = queue.Queue()
            extra["Mcp-Session-Id"] = session
        if not answers:
            return self.send(202, "application/json", b"", extra)
        initialize = any(m.get("method") == "initialize" for m in msgs)
        shape = "json" if initialize else SHAPE
        payload = answers if batch else answers[0]
        if shape == "array":
            return self.send(200, "application/json", json.dumps(answers).encode(), extra)
        if shape == "error":
            return self.send(500, "application/json", json.dumps(payload).encode(), extra)
        if shape in ("sse-array", "sse-bom"):
            data = json.dumps(answers if shape == "sse-array" else payload)
            text = ("\ufeff" if shape == "sse-bom" else "") + f"event: message\ndata: {data}\n\n"
            return self.send(200, "text/event-stream", text.encode(), extra)
        if shape == "get-push" and session in PUSH:
            for a in answers:
                PUSH[session].put(a)
            return self.send(202, "application/json", b"", extra)
        return self.send(200, "application/json", json.dumps(payload).encode(), extra)

    def do_GET(self):
        session = self.headers.get("Mcp-Session-Id")
        if session not in PUSH:
            return self.send(405, "text/plain", b"no GET stream")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        q = PUSH[session]
        try:
            while True:
                try:
                    a = q.get(timeout=15)
                except queue.Empty:
                    chunk = b": keep-alive\n\n"
                else:
                    chunk = f"event: message\ndata: {json.dumps(a)}\n\n".encode()
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return

    def do_DELETE(self):
        PUSH.pop(self.headers.get("Mcp-Session-Id"), None)
        self.send(200, "application/json", b"")


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
