"""Fixtures for the packaging tests: the Helm chart rendered and linted by Helm's own Go SDK (helm-python-sdk,
no `helm` binary), its objects validated by kubernetes-validate, the Dockerfile linted by hadolint.

No cluster is contacted: KUBECONFIG points nowhere, and installs are client-side dry runs (what
`helm install --dry-run=client` does: schema validation, the chart's kubeVersion, rendering).
The gateway binary is $MCP_GATEWAY_BIN or <repo>/target/debug/mcp-gateway.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
DEPLOY = REPO / "gateway" / "deploy"
CHART = DEPLOY / "helm" / "mcp-gateway"

# Before helm_python is imported anywhere: no kubeconfig, so nothing can reach a cluster by accident.
os.environ["KUBECONFIG"] = str(TESTS / ".no-kubeconfig")
os.environ.pop("KUBERNETES_SERVICE_HOST", None)


@pytest.fixture(scope="session")
def gateway_bin() -> Path:
    p = Path(os.environ.get("MCP_GATEWAY_BIN", REPO / "target" / "debug" / "mcp-gateway"))
    if not p.is_file():
        pytest.fail(f"{p}: build it first (cargo build -p mcp-gateway) or set MCP_GATEWAY_BIN")
    return p
