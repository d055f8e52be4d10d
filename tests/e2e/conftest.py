"""Fixtures for the end-to-end suite: real Python MCP SDK peers on both sides of the mcp-gateway binary.

Everything binds to 127.0.0.1 on free ports. Per test, `stack` starts what the test asks for (upstream
servers from tests/peers, the gateway with a generated config) and kills all of it in its finalizer, even on
failure. Logs and configs of each test are kept in tests/.artifacts/e2e/<test>/ for debugging.

Session-wide: a test CA and a server certificate for `*.tunnel.example.test` made with trustme.
The gateway binary is $MCP_GATEWAY_BIN or <repo>/target/debug/mcp-gateway; a missing binary fails the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
PEERS = TESTS / "peers"
VENV_MCP2 = TESTS / ".venv" / "mcp2" / "bin" / "python"
VENV_MCP1 = TESTS / ".venv" / "mcp1" / "bin" / "python"
ARTIFACTS = TESTS / ".artifacts" / "e2e"
TUNNEL_DOMAIN = "tunnel.example.test"

sys.path.insert(0, str(PEERS))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except FileNotFoundError:
        return "<no file>"


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05, on_fail=lambda: ""):
    """Poll `predicate` until truthy (returned) or fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{on_fail()}")
        time.sleep(interval)


def _die_with_parent():
    """preexec_fn: SIGKILL the child if pytest dies without running finalizers (Linux prctl PDEATHSIG)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Proc:
    """A subprocess we started, with stdout+stderr going to a log file."""

    def __init__(self, name: str, argv: list[str], log: Path, cwd: Path | None = None, env: dict | None = None):
        self.name = name
        self.log = log
        self._logf = open(log, "wb")
        self.popen = subprocess.Popen(
            argv, stdout=self._logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            preexec_fn=_die_with_parent,
        )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_port(self, port: int, timeout: float = 20.0):
        """Wait until 127.0.0.1:port accepts TCP; fail early (with the log) if the process died."""
        def ready():
            if self.popen.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.popen.returncode} before listening\n{tail(self.log)}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                return False
        wait_for(ready, timeout, f"{self.name} to listen on {port}", on_fail=lambda: tail(self.log))

    def stop(self):
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        self._logf.close()


@dataclass
class Upstream:
    """An upstream MCP server (server_v1.py / server_v2.py) and the requests it has recorded."""

    kind: str
    port: int
    record_file: Path
    proc: Proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def records(self) -> list[dict]:
        if not self.record_file.exists():
            return []
        return [json.loads(line) for line in self.record_file.read_text().splitlines() if line.strip()]


@dataclass
class Gateway:
    """A running mcp-gateway with its config and log."""

    port: int
    config_file: Path
    proc: Proc
    hosts: dict[str, str] = field(default_factory=dict)

    def url(self, route: str, path: str = "/mcp") -> str:
        host = route if "." in route else f"{route}.{TUNNEL_DOMAIN}"
        return f"https://{host}:{self.port}{path}"

    def log_text(self) -> str:
        return self.proc.log_text()

    def wait_log(self, needle: str, timeout: float = 5.0) -> str:
        """Wait until the gateway log contains `needle` (logs may land just after the response)."""
        wait_for(lambda: needle in self.log_text(), timeout, f"gateway log line containing {needle!r}",
                 on_fail=lambda: tail(self.proc.log))
        return self.log_text()


@dataclass
class Certs:
    ca_file: Path
    cert_file: Path
    key_file: Path


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Certs:
    """Test CA + server cert (SAN *.tunnel.example.test, tunnel.example.test, localhost, 127.0.0.1)."""
    d = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    leaf = ca.issue_cert(f"*.{TUNNEL_DOMAIN}", TUNNEL_DOMAIN, "localhost", "127.0.0.1")
    c = Certs(d / "ca.pem", d / "tls.crt", d / "tls.key")
    ca.cert_pem.write_to_path(str(c.ca_file))
    leaf.cert_chain_pems[0].write_to_path(str(c.cert_file))
    leaf.private_key_pem.write_to_path(str(c.key_file))
    return c


@pytest.fixture(scope="session")
def gateway_bin() -> Path:
    """The gateway binary; the runner builds it first. Missing → fail (never skip)."""
    p = Path(os.environ.get("MCP_GATEWAY_BIN") or REPO / "target" / "debug" / "mcp-gateway")
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(f"gateway binary not found at {p}: run `cargo build -p mcp-gateway` or set MCP_GATEWAY_BIN")
    return p


POLICY_COMPONENTS = ("tool_allowlist", "mutation_guard", "argument_rules", "hostile_policy", "forbidden_import")


@pytest.fixture(scope="session")
def policy_dir() -> Path:
    """Where the policy components are: $MCP_POLICY_DIR or <repo>/target/wasm32-wasip2/policy.
    A missing component fails the test (never skips): build them with `bash policies/build.sh`."""
    d = Path(os.environ.get("MCP_POLICY_DIR") or REPO / "target" / "wasm32-wasip2" / "policy")
    missing = [n for n in POLICY_COMPONENTS if not (d / f"{n}.wasm").is_file()]
    if missing:
        pytest.fail(f"policy components missing in {d}: {', '.join(missing)}: run `bash policies/build.sh` "
                    "or set MCP_POLICY_DIR")
    return d


def _check_venvs():
    for v in (VENV_MCP2, VENV_MCP1):
        if not v.exists():
            pytest.fail(f"{v} missing: run tests/setup.sh")


def render_config(listen_port: int, certs: Certs, routes: dict[str, str], allowed_ips: list[str],
                  log_level: str = "debug", policies: dict | None = None, audit: dict | None = None) -> str:
    """Gateway config YAML (Anthropic proxy schema). A route's value is written verbatim (a URL, or a flow
    mapping such as `{upstream: ..., policies: [..]}`); `policies` and `audit`, if given, become the
    `policies:` and `audit:` blocks (written as JSON, which YAML reads as a flow mapping)."""
    lines = [
        f'listen_addr: "127.0.0.1:{listen_port}"',
        f"log_level: {log_level}",
        "shutdown_timeout: 2s",
        f"tunnel_domain: {TUNNEL_DOMAIN}",
        "tls:",
        f"  cert_file: {certs.cert_file}",
        f"  key_file: {certs.key_file}",
        "routes:",
        *[f"  {k}: {v}" for k, v in routes.items()],
        "upstream:",
        f"  allowed_ips: [{', '.join(allowed_ips)}]",
    ]
    if policies is not None:
        lines.append(f"policies: {json.dumps(policies)}")
    if audit is not None:
        lines.append(f"audit: {json.dumps(audit)}")
    return "\n".join(lines) + "\n"


class Stack:
    """Starts peers and the gateway for one test; `close()` stops everything it started."""

    def __init__(self, workdir: Path, certs: Certs, gateway_bin_getter):
        self.dir = workdir
        self.certs = certs
        self._gateway_bin = gateway_bin_getter
        self.procs: list[Proc] = []
        self._closers = []

    def upstream(self, kind: str = "v2", env: dict | None = None, port: int | None = None) -> Upstream:
        """Start tests/peers/server_<kind>.py on a free port (or `port`, e.g. to restart one) and wait for it to
        listen (`env`: extra variables, e.g. MCP_RECORD_AUDIT_DIR, see peers/recorder.py)."""
        python = {"v2": VENV_MCP2, "v1": VENV_MCP1}[kind]
        port = port or free_port()
        n = sum(1 for p in self.procs if p.name.startswith("upstream"))
        rec = self.dir / f"upstream-{kind}-{n}.requests.jsonl"
        proc = Proc(f"upstream-{kind}-{n}", [str(python), str(PEERS / f"server_{kind}.py"), str(port), str(rec)],
                    self.dir / f"upstream-{kind}-{n}.log", cwd=PEERS, env=env)
        self.procs.append(proc)
        proc.wait_port(port)
        return Upstream(kind, port, rec, proc)

    def gateway(self, routes: dict[str, str] | None = None, allowed_ips=("127.0.0.0/8",),
                config_text: str | None = None, port: int | None = None,
                policies: dict | None = None, audit: dict | None = None, name: str = "gateway",
                flags: tuple[str, ...] | None = None) -> Gateway:
        """Write a config (or use `config_text` verbatim, listening on `port`) and start the gateway.
        `policies` and `audit` are the config's `policies:` and `audit:` blocks (see `render_config`); `name`
        names the config and log files (`<name>.yaml`, `<name>.log`), e.g. for a second gateway or a restart.
        `flags`: start it as Anthropic's proxy container is started, `-config FILE` followed by these flags."""
        binary = self._gateway_bin()
        if config_text is None:
            port = port or free_port()
            config_text = render_config(port, self.certs, routes or {}, list(allowed_ips), policies=policies,
                                        audit=audit)
        assert port is not None, "config_text needs the port it listens on"
        cfg = self.dir / f"{name}.yaml"
        cfg.write_text(config_text)
        argv = ["serve", "--config", str(cfg)] if flags is None else ["-config", str(cfg), *flags]
        proc = Proc(name, [str(binary), *argv], self.dir / f"{name}.log", cwd=self.dir, env=self.gateway_env())
        self.procs.append(proc)
        proc.wait_port(port)
        return Gateway(port, cfg, proc)

    def gateway_env(self) -> dict:
        """The audit log of a config without `audit.dir` goes to this test's own directory (the gateway's
        default, /var/lib/mcp-gateway/audit, is for deployments)."""
        return {"MCP_GATEWAY_AUDIT_DIR": str(self.dir / "audit")}

    @property
    def audit_dir(self) -> Path:
        return self.dir / "audit"

    def gateway_fails(self, config_text: str, timeout: float = 15.0) -> str:
        """Run the gateway on a config that must be rejected at load: assert it exits non-zero; return its output."""
        cp = self.gateway_refuses(config_text, timeout)
        return cp.stdout + cp.stderr

    def gateway_refuses(self, config_text: str, timeout: float = 15.0) -> subprocess.CompletedProcess:
        """Like `gateway_fails`, but returns the finished process (stdout and stderr apart)."""
        cfg = self.dir / "gateway.yaml"
        cfg.write_text(config_text)
        try:
            cp = subprocess.run([str(self._gateway_bin()), "serve", "--config", str(cfg)], cwd=self.dir,
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, **self.gateway_env()})
        except subprocess.TimeoutExpired:  # run() has killed it
            pytest.fail(f"gateway did not exit within {timeout}s on an invalid config")
        (self.dir / "gateway.log").write_text(cp.stdout + cp.stderr)
        assert cp.returncode != 0, f"gateway accepted an invalid config\n{cp.stdout}{cp.stderr}"
        return cp

    def tcp_sink(self) -> "TcpSink":
        """A plain TCP listener that only counts accepted connections."""
        sink = TcpSink()
        self._closers.append(sink.close)
        return sink

    def close(self):
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception as e:  # keep stopping the others
                print(f"stopping {proc.name}: {e}", file=sys.stderr)
        for c in self._closers:
            c()


class TcpSink:
    """Listens on 127.0.0.1:<free port> and records every accepted connection (then closes it)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[tuple] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted.append(addr)
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def stack(request, certs, tmp_path) -> Stack:
    """Per-test process set; artifacts in tests/.artifacts/e2e/<test name>/, everything killed at the end."""
    _check_venvs()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    workdir = ARTIFACTS / name
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    s = Stack(workdir, certs, lambda: request.getfixturevalue("gateway_bin"))
    try:
        yield s
    finally:
        s.close()


def run_client_v1(url: str, ca_file: Path, timeout: float = 40.0) -> dict:
    """Run peers/client_v1.py under the mcp1 venv (dialling 127.0.0.1) and return its JSON output."""
    try:
        cp = subprocess.run([str(VENV_MCP1), str(PEERS / "client_v1.py"), url, "--ca", str(ca_file),
                             "--pin", "127.0.0.1"], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:  # subprocess.run kills the child on timeout
        pytest.fail(f"client_v1 timed out after {timeout}s\nstderr:\n{(e.stderr or b'')[-3000:]!r}")
    assert cp.returncode == 0, f"client_v1 failed ({cp.returncode})\nstderr:\n{cp.stderr[-4000:]}"
    return json.loads(cp.stdout.strip().splitlines()[-1])
