"""The Helm chart `gateway/deploy/helm/mcp-gateway`, checked by Helm itself.

- Helm 4's Go SDK (helm-python-sdk) lints the chart (strict) for every Kubernetes version the chart claims
  (`kubeVersion` in Chart.yaml) and installs it as a client-side dry run, which applies values.schema.json and
  the kubeVersion constraint exactly as `helm install` does.
- kubernetes-validate validates every rendered object strictly (unknown fields are errors) against the official
  schemas of every minor version in that range that it ships.
- For each values combination users set, the NetworkPolicy is evaluated the way a cluster's network plugin
  does, for the peers that must (and must not) get through: metrics scraping, the Service's clients, the
  approvals database.
- The config the chart writes is loaded by the gateway binary itself; the command lines it runs are accepted.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import subprocess
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml

from conftest import CHART, DEPLOY, REPO

RELEASE = "gw"
NAMESPACE = "mcp"
APPROVALS_URL_FILE = "/etc/mcp-gateway/approvals-db/url"

# ---- the values combinations users set ----

POSTGRES = {
    "approvals": {"postgres": {"enabled": True}},
    "gateway": {
        "config": {
            "approvals": {
                "postgres": {"url_file": APPROVALS_URL_FILE},
                "wait": "30s",
                "approvers": [{"name": "alice", "token_sha256": "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"}],
            }
        }
    },
    "networkPolicy": {"egress": {"postgres": {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]}}},
}

EXTRA_POLICIES = {
    "extraPolicies": {"enabled": True, "volume": {"configMap": {"name": "team-policies"}}},
    "gateway": {
        "config": {
            "policies": {
                "modules": {"team": {"path": "/etc/mcp-gateway/policies/team_rules.wasm", "settings": {}}},
                "default": ["team", "guard"],
            }
        }
    },
}

COMBOS = {
    "defaults": {},
    "postgres-approvals": POSTGRES,
    "service": {"service": {"enabled": True}},
    "network-policy-off": {"networkPolicy": {"enabled": False}},
    "cert-renew-off": {"serverCert": {"renew": {"enabled": False}}},
    "extra-policies": EXTRA_POLICIES,
    "everything": {
        **copy.deepcopy(POSTGRES),
        "service": {"enabled": True},
        "cloudflared": {"enabled": False},
        "extraPolicies": EXTRA_POLICIES["extraPolicies"],
    },
}
COMBOS["everything"]["gateway"]["config"]["policies"] = EXTRA_POLICIES["gateway"]["config"]["policies"]


# ---- Kubernetes versions the chart claims ----


def chart_metadata() -> dict:
    return yaml.safe_load((CHART / "Chart.yaml").read_text())


def version_tuple(v: str) -> tuple[int, int]:
    m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?(?:-0)?", v)
    assert m, f"not a Kubernetes version: {v}"
    return int(m[1]), int(m[2])


def claimed_versions() -> list[str]:
    """Every minor version kubernetes-validate has schemas for that the chart's kubeVersion admits."""
    constraint = chart_metadata().get("kubeVersion")
    assert constraint, "Chart.yaml has no kubeVersion: the chart must say which Kubernetes versions it supports"
    lower, upper = None, None
    for term in constraint.split():
        m = re.fullmatch(r"(>=|<)(\S+)", term)
        assert m, f"kubeVersion term {term!r}: only `>=X.Y.Z-0` and `<X.Y.Z-0` are understood here"
        if m[1] == ">=":
            lower = version_tuple(m[2])
        else:
            upper = version_tuple(m[2])
    assert lower, f"kubeVersion {constraint!r} has no lower bound"
    known = sorted({version_tuple(v) for v in kubernetes_validate.utils.all_versions()})
    assert known[0] <= lower, f"kubeVersion claims {lower}, older than any schema kubernetes-validate ships"
    versions = [v for v in known if v >= lower and (upper is None or v < upper)]
    assert len(versions) >= 3, versions
    return [f"{a}.{b}.0" for a, b in versions]


VERSIONS = claimed_versions()


# ---- rendering with Helm ----


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def install(values: dict) -> list[dict]:
    """`helm install --dry-run=client`: schema validation, the kubeVersion check, rendering. The objects."""
    with helm.Config(namespace=NAMESPACE) as cfg, helm.Chart.load(CHART) as chart:
        release = cfg.install(chart, RELEASE, values, dry_run="client", namespace=NAMESPACE)
    docs = [d for d in yaml.safe_load_all(release["manifest"]) if d]
    assert docs, release
    return docs


def lint(values: dict, version: str) -> list[dict]:
    """`helm lint --strict --kube-version`: the findings worse than INFO."""
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{version}", namespace=NAMESPACE)
    assert report["total_charts_linted"] == 1, report
    return [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report["errors"]]


def kinds(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str) -> dict:
    found = kinds(docs, kind)
    assert len(found) == 1, f"{kind}: {len(found)} objects"
    return found[0]


def pod_spec(docs: list[dict]) -> dict:
    return one(docs, "StatefulSet")["spec"]["template"]["spec"]


def container(docs: list[dict], name: str) -> dict:
    return next(c for c in pod_spec(docs)["containers"] if c["name"] == name)


def container_port(docs: list[dict], name: str) -> int | None:
    ports = container(docs, "gateway").get("ports", [])
    return next((p["containerPort"] for p in ports if p["name"] == name), None)


# ---- a NetworkPolicy evaluated as a network plugin does (the subset the chart uses) ----


def selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels", "matchExpressions"}, selector
    assert "matchExpressions" not in selector, "matchExpressions: extend this evaluator"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def peer_matches(peer: dict, src: dict, policy_ns: str) -> bool:
    """src: {"namespace", "ns_labels", "pod_labels", "ip"}."""
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        ip = ipaddress.ip_address(src["ip"])
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], src["ns_labels"]):
            return False
    elif src["namespace"] != policy_ns:
        return False
    return "podSelector" not in peer or selects(peer["podSelector"], src["pod_labels"])


def port_matches(ports: list[dict] | None, port: int, proto: str) -> bool:
    if not ports:
        return True
    return any(p.get("protocol", "TCP") == proto and p["port"] == port for p in ports)


def allowed(np: dict | None, direction: str, peer: dict, port: int, proto: str = "TCP") -> bool:
    """Whether traffic to (ingress) or from (egress) the gateway pods with `peer` on `port` is allowed."""
    if np is None:
        return True
    spec = np["spec"]
    if direction.capitalize() not in spec["policyTypes"]:
        return True
    key = "from" if direction == "ingress" else "to"
    for rule in spec.get(direction) or []:
        peers = rule.get(key)
        if port_matches(rule.get("ports"), port, proto) and (not peers or any(
            peer_matches(p, peer, np["metadata"].get("namespace", NAMESPACE)) for p in peers
        )):
            return True
    return False


def ns_peer(namespace: str, pod_labels: dict | None = None, ip: str = "10.244.1.7") -> dict:
    return {
        "namespace": namespace,
        "ns_labels": {"kubernetes.io/metadata.name": namespace},
        "pod_labels": pod_labels or {},
        "ip": ip,
    }


PROMETHEUS = ns_peer("monitoring", {"app.kubernetes.io/name": "prometheus"})
SAME_NAMESPACE_POD = ns_peer(NAMESPACE, {"app": "agent"})
OTHER_NAMESPACE_POD = ns_peer("default", {"app": "agent"})


def network_policy(docs: list[dict]) -> dict | None:
    found = kinds(docs, "NetworkPolicy")
    return found[0] if found else None


# ---- every combination: lint, install, strict schemas ----


@pytest.mark.parametrize("combo", COMBOS)
def test_lints_clean_for_every_claimed_kubernetes_version(combo):
    for version in VERSIONS:
        findings = lint(COMBOS[combo], version)
        assert not findings, f"{combo} on Kubernetes {version}: {json.dumps(findings, indent=1)}"


@pytest.mark.parametrize("combo", COMBOS)
def test_every_object_is_valid_for_every_claimed_kubernetes_version(combo):
    docs = install(COMBOS[combo])
    templates = "".join(p.read_text() for p in (CHART / "templates").iterdir())
    # One rendering stands for every version only while no template asks which version it renders for.
    assert ".Capabilities" not in templates
    for version in VERSIONS:
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{combo}: {doc['kind']}/{doc['metadata']['name']} on Kubernetes {version}: {e.message} at {list(e.path)}")
    for doc in docs:
        assert doc["metadata"]["name"].startswith(RELEASE), doc["metadata"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE, doc["kind"]


def test_kube_version_is_enforced_by_helm():
    """Helm's dry-run install checks kubeVersion against its default cluster version, which is claimed."""
    install({})
    meta = chart_metadata()
    with helm.Chart.load(CHART) as chart:
        assert chart.metadata["kubeVersion"] == meta["kubeVersion"]


# ---- the hardening every combination keeps ----


@pytest.mark.parametrize("combo", COMBOS)
def test_pods_run_nonroot_with_a_read_only_root(combo):
    docs = install(COMBOS[combo])
    pods = [pod_spec(docs)] + [c["spec"]["jobTemplate"]["spec"]["template"]["spec"] for c in kinds(docs, "CronJob")]
    for pod in pods:
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532, sc
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"
        for c in pod["containers"] + pod.get("initContainers", []):
            csc = c["securityContext"]
            assert csc["readOnlyRootFilesystem"] is True, c["name"]
            assert csc["allowPrivilegeEscalation"] is False, c["name"]
            assert csc["capabilities"]["drop"] == ["ALL"], c["name"]
    assert pod_spec(docs)["automountServiceAccountToken"] is False


# ---- what a real cluster would hit ----


@pytest.mark.parametrize("combo", COMBOS)
def test_the_admin_listener_is_reachable_for_probes_and_scraping(combo):
    docs = install(COMBOS[combo])
    admin = container_port(docs, "admin")
    assert admin == 9090, "the admin listener must listen on the pod's addresses and be declared"
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])
    assert config["admin"]["listen"] == ":9090"
    gw = container(docs, "gateway")
    assert gw["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert gw["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    np = network_policy(docs)
    assert allowed(np, "ingress", PROMETHEUS, admin), "metrics scraping from the monitoring namespace is blocked"
    if np is not None:
        assert not allowed(np, "ingress", OTHER_NAMESPACE_POD, admin)
        assert not allowed(np, "ingress", SAME_NAMESPACE_POD, 8081)


@pytest.mark.parametrize("combo", ["service", "everything"])
def test_the_service_is_reachable_through_the_network_policy(combo):
    docs = install(COMBOS[combo])
    svc = one(docs, "Service")
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["gateway"]["targetPort"] == "gateway" and ports["gateway"]["port"] == 8080
    assert ports["admin"]["targetPort"] == "admin"
    assert svc["spec"]["selector"] == one(docs, "StatefulSet")["spec"]["selector"]["matchLabels"]
    np = network_policy(docs)
    gateway = container_port(docs, "gateway")
    assert allowed(np, "ingress", SAME_NAMESPACE_POD, gateway), "the Service's clients are blocked"
    assert not allowed(np, "ingress", OTHER_NAMESPACE_POD, gateway)


def test_without_the_service_nothing_reaches_the_gateway_port():
    docs = install({})
    np = network_policy(docs)
    for peer in (SAME_NAMESPACE_POD, OTHER_NAMESPACE_POD, PROMETHEUS):
        assert not allowed(np, "ingress", peer, 8080)


def test_ingress_peers_are_configurable_and_empty_means_nobody():
    docs = install({
        "service": {"enabled": True},
        "networkPolicy": {"ingress": {
            "admin": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}},
                       "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}],
            "gateway": [],
        }},
    })
    np = network_policy(docs)
    assert allowed(np, "ingress", ns_peer("observability", {"app.kubernetes.io/name": "prometheus"}), 9090)
    assert not allowed(np, "ingress", ns_peer("observability", {"app.kubernetes.io/name": "grafana"}), 9090)
    assert not allowed(np, "ingress", PROMETHEUS, 9090)
    for peer in (SAME_NAMESPACE_POD, OTHER_NAMESPACE_POD, PROMETHEUS):
        assert not allowed(np, "ingress", peer, 8080), "an empty peer list must not mean 'from anywhere'"
    docs = install({"networkPolicy": {"ingress": {"admin": [], "gateway": []}}})
    assert network_policy(docs)["spec"]["ingress"] == []


def test_postgres_approvals_can_reach_their_database():
    docs = install(POSTGRES)
    np = network_policy(docs)
    db = {"namespace": "db", "ns_labels": {}, "pod_labels": {}, "ip": "10.20.3.4"}
    assert allowed(np, "egress", db, 5432), "the gateway does not start without its approvals store"
    assert not allowed(np, "egress", {**db, "ip": "192.168.9.9"}, 5432), "egress.postgres.to narrows it"
    # Without `to`: any address on the database port.
    docs = install(deep_merge(POSTGRES, {"networkPolicy": {"egress": {"postgres": {"to": []}}}}))
    assert allowed(network_policy(docs), "egress", {**db, "ip": "192.168.9.9"}, 5432)
    # Without approvals.postgres, no database port is open.
    assert not allowed(network_policy(install({})), "egress", db, 5432)

    pod = pod_spec(docs)
    mount = next(m for m in container(docs, "gateway")["volumeMounts"] if m["name"] == "approvals-db")
    assert mount["mountPath"] + "/url" == APPROVALS_URL_FILE and mount["readOnly"] is True
    vol = next(v for v in pod["volumes"] if v["name"] == "approvals-db")
    assert vol["secret"]["secretName"] == "mcp-gateway-approvals-db"
    assert vol["secret"]["items"] == [{"key": "url", "path": "url"}]


def test_egress_keeps_dns_and_mcp_servers_and_the_tunnel_only_with_cloudflared():
    mcp = {"namespace": "x", "ns_labels": {}, "pod_labels": {}, "ip": "10.1.2.3"}
    edge = {**mcp, "ip": "198.41.192.7"}
    np = network_policy(install({}))
    assert allowed(np, "egress", mcp, 9000) and allowed(np, "egress", mcp, 53, "UDP")
    assert allowed(np, "egress", edge, 7844, "UDP")
    assert not allowed(np, "egress", edge, 9000)
    np = network_policy(install({"cloudflared": {"enabled": False}}))
    assert not allowed(np, "egress", edge, 7844, "UDP")
    np = network_policy(install({"networkPolicy": {"egress": {"extra": [
        {"to": [{"ipBlock": {"cidr": "10.9.0.0/16"}}], "ports": [{"port": 4318, "protocol": "TCP"}]}
    ]}}}))
    assert allowed(np, "egress", {**mcp, "ip": "10.9.1.1"}, 4318)


def test_mismatched_approvals_values_fail_at_install():
    """The chart mounts the connection string where the config must read it; disagreeing values never start."""
    with pytest.raises(helm.HelmError, match="url_file"):
        install({"approvals": {"postgres": {"enabled": True}}})
    with pytest.raises(helm.HelmError, match="approvals.postgres.enabled"):
        install({"gateway": {"config": {"approvals": {"postgres": {"url_file": APPROVALS_URL_FILE}, "approvers": []}}}})


def test_extra_policies_are_mounted_read_only():
    docs = install(EXTRA_POLICIES)
    mount = next(m for m in container(docs, "gateway")["volumeMounts"] if m["name"] == "policies-extra")
    assert mount == {"name": "policies-extra", "mountPath": "/etc/mcp-gateway/policies", "readOnly": True}
    vol = next(v for v in pod_spec(docs)["volumes"] if v["name"] == "policies-extra")
    assert vol == {"name": "policies-extra", "configMap": {"name": "team-policies"}}
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])
    assert config["policies"]["modules"]["team"]["path"].startswith(mount["mountPath"] + "/")
    assert not any(m["name"] == "policies-extra" for m in container(install({}), "gateway")["volumeMounts"])


def test_toggles():
    assert not kinds(install({"networkPolicy": {"enabled": False}}), "NetworkPolicy")
    docs = install({"serverCert": {"renew": {"enabled": False}}})
    assert not kinds(docs, "CronJob") and not kinds(docs, "Role")
    assert not kinds(install({}), "Service")
    assert [c["name"] for c in pod_spec(install({"cloudflared": {"enabled": False}}))["containers"]] == ["gateway"]
    docs = install({})
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert one(docs, "StatefulSet")["spec"]["replicas"] == 2
    # A changed config rolls the pods.
    a = one(docs, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    b = one(install({"gateway": {"config": {"log_level": "debug"}}}), "StatefulSet")
    assert b["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != a


# ---- values.schema.json: a mistyped value fails at `helm install` / `helm lint` ----


MISTYPED = {
    "misspelt top-level key": ({"replicaCount": 3}, "replicaCount"),
    "misspelt nested key": ({"service": {"enabeld": True}}, "enabeld"),
    "string for an integer": ({"replicas": "two"}, "/replicas"),
    "string for a boolean": ({"networkPolicy": {"enabled": "yes"}}, "/networkPolicy/enabled"),
    "misspelt peer selector": ({"networkPolicy": {"ingress": {"admin": [{"namespaceSelecter": {}}]}}}, "namespaceSelecter"),
    "bad port": ({"service": {"port": 70000}}, "/service/port"),
    "bad pull policy": ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    "misspelt approvals key": ({"approvals": {"postgres": {"existingSecrets": "x"}}}, "existingSecrets"),
    "routes not a map": ({"gateway": {"config": {"routes": ["docs"]}}}, "/gateway/config/routes"),
}


@pytest.mark.parametrize("case", MISTYPED)
def test_a_mistyped_value_is_refused_by_helm(case):
    values, needle = MISTYPED[case]
    with pytest.raises(helm.HelmError) as e:
        install(values)
    assert "schema" in str(e.value) and needle in str(e.value), str(e.value)
    findings = lint(values, VERSIONS[-1])
    assert any(needle in f.get("error", "") for f in findings), findings


def test_the_schema_declares_every_default_value():
    """Every key of values.yaml is declared (the schema refuses unknown keys, so an undeclared default would
    make the chart refuse its own values; this names the key instead)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value, node, path):
        if not isinstance(value, dict) or path == "gateway.config":
            return
        props = node.get("properties")
        if props is None:
            return
        for k, v in value.items():
            assert k in props, f"values.yaml `{path}.{k}` is not in values.schema.json"
            walk(v, props[k], f"{path}.{k}".strip("."))

    walk(defaults, schema, "")
    assert schema["additionalProperties"] is False


# ---- the config and command lines the chart writes work with the real binary ----


def config_loads(gateway_bin: Path, text: str, tmp_path: Path) -> dict:
    """`mcp-gateway check`'s config item for the config text; the file a Secret would mount is made here."""
    url = tmp_path / "approvals-db-url"
    url.write_text("postgres://gateway@127.0.0.1:1/approvals?sslmode=disable")
    path = tmp_path / "config.yaml"
    path.write_text(text.replace(APPROVALS_URL_FILE, str(url)))
    out = subprocess.run([str(gateway_bin), "check", "--config", str(path), "--json", "--timeout", "1s"],
                         capture_output=True, text=True, timeout=60)
    report = json.loads(out.stdout)
    return next(i for i in report["checks"] if i["name"] == "config")


@pytest.mark.parametrize("combo", COMBOS)
def test_the_config_the_chart_writes_loads(combo, gateway_bin, tmp_path):
    docs = install(COMBOS[combo])
    text = one(docs, "ConfigMap")["data"]["config.yaml"]
    merged = deep_merge(yaml.safe_load((CHART / "values.yaml").read_text()), COMBOS[combo])
    assert yaml.safe_load(text) == merged["gateway"]["config"], "the chart writes gateway.config verbatim"
    item = config_loads(gateway_bin, text, tmp_path)
    assert item["status"] == "pass", item


def accepted(gateway_bin: Path, args: list[str]) -> str:
    """Runs the binary with `args`; clap usage errors exit 2."""
    out = subprocess.run([str(gateway_bin), *args], capture_output=True, text=True, timeout=30)
    assert out.returncode != 2, f"the binary rejects {args}: {out.stderr}"
    return out.stdout + out.stderr


def test_the_command_lines_the_chart_runs_are_accepted(gateway_bin):
    docs = install({})
    assert "Config file" in accepted(gateway_bin, container(docs, "gateway")["args"] + ["--help"])
    cf = container(docs, "cloudflared")["args"]
    assert cf[-2:] == ["--url", f"http://localhost:{container_port(docs, 'gateway')}"]
    job = one(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    renew = job["initContainers"][0]["args"]
    assert renew[:4] == ["certs", "renew", "--renew-before", "720h"]
    assert "cannot read /in/tls.crt" in accepted(gateway_bin, renew)
    tls = next(v for v in pod_spec(docs)["volumes"] if v["name"] == "tls")
    assert tls["secret"]["secretName"] == "mcp-gateway-server-cert"


# ---- the README's Helm install ----


def readme_helm_install() -> tuple[str, dict]:
    """The README's deployment section: the values file it shows and the `helm install` command line."""
    readme = (REPO / "README.md").read_text()
    m = re.search(r"<!-- helm-values -->\s*```yaml\n(.*?)```", readme, re.S)
    assert m, "README.md: no ```yaml block after <!-- helm-values -->"
    values = yaml.safe_load(m[1])
    cmd = re.search(r"^helm install .*$", readme, re.M)
    assert cmd, "README.md: no `helm install` line"
    return cmd[0], values


def test_the_readme_helm_install_uses_only_declared_values(gateway_bin, tmp_path):
    cmd, values = readme_helm_install()
    sets = dict(s.split("=", 1) for s in re.findall(r"--set(?:-string)? (\S+)", cmd))
    for key, value in sets.items():
        values = deep_merge(values, helm.parse_set_string(f"{key}={value}"))
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(value, node, path):
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        if not isinstance(value, dict) or path == "gateway.config":
            return
        props = node.get("properties", {})
        for k, v in value.items():
            assert k in props, f"README names `{path}.{k}`, which values.schema.json does not declare"
            walk(v, props[k], f"{path}.{k}".strip("."))

    walk(values, schema, "")
    assert values["approvals"]["postgres"]["enabled"] is True
    docs = install(values)
    np = network_policy(docs)
    assert allowed(np, "egress", ns_peer("mcp-db"), 5432), "README's database namespace is not reachable"
    assert not allowed(np, "egress", ns_peer("default"), 5432)
    assert config_loads(gateway_bin, one(docs, "ConfigMap")["data"]["config.yaml"], tmp_path)["status"] == "pass"
