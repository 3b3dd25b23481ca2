"""deploy/: the reference deployment. Each file is checked by the tool that reads it (HAProxy,
keepalived, kubectl, systemd-analyze, promtool, node, the gateway's own check-config) when that
tool is installed, and the files are checked against each other: the ports, addresses and
paths one of them names are the ones the others use."""

from __future__ import annotations

import ipaddress
import json
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway import cli
from gateway.config import GatewayConfig, load_config, parse_config_text, split_host_port

REPO = Path(__file__).parents[2]
DEPLOY = REPO / "deploy"
HAPROXY_CFG = DEPLOY / "haproxy" / "haproxy.cfg"
KEEPALIVED_CONF = DEPLOY / "keepalived" / "keepalived.conf"
UNIT = DEPLOY / "systemd" / "phi-gateway.service"
HOST_CONFIG = DEPLOY / "gateway-host.yaml"
PAC = DEPLOY / "pac" / "proxy.pac"
SCRAPE = DEPLOY / "prometheus" / "scrape-gateways.yml"
K8S = DEPLOY / "kubernetes"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
NODES = ("lb-1", "lb-2")
# An address where nothing listens: kubectl reads every answer from the discovery cache the
# tests write, and would only ever try this loopback port (refused at once) for a kind the
# cache does not know. No cluster is contacted.
NO_SERVER = "http://127.0.0.1:1"


def tool(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or next(
            (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / name).is_file()), None
        )
        if found:
            return found
    pytest.skip(f"{names[0]} is not installed (make test-tools installs it)")


def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, **kwargs)


def host_config() -> GatewayConfig:
    return load_config(HOST_CONFIG)


def port_of(address: str) -> int:
    return split_host_port(address)[1]


# --- HAProxy ---------------------------------------------------------------------------


def haproxy_sections() -> dict[str, list[str]]:
    """``"backend gateways_proxy"`` → its lines (comments and blank lines left out)."""
    sections: dict[str, list[str]] = {}
    current = ""
    for raw in HAPROXY_CFG.read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line:
            continue
        if not line[0].isspace():
            current = line.strip()
            sections[current] = []
        else:
            sections[current].append(line.strip())
    return sections


def servers(backend: str) -> list[tuple[str, int]]:
    lines = haproxy_sections()[f"backend {backend}"]
    found = []
    for line in lines:
        if line.startswith("server "):
            host, port = split_host_port(line.split()[2])
            found.append((host, port))
    return found


def default_server() -> list[str]:
    lines = haproxy_sections()["defaults"]
    return next(line.split()[1:] for line in lines if line.startswith("default-server "))


def frontend_bind(frontend: str) -> tuple[str, int]:
    lines = haproxy_sections()[f"frontend {frontend}"]
    return split_host_port(next(line.split()[1] for line in lines if line.startswith("bind ")))


def test_haproxy_accepts_the_config() -> None:
    haproxy = tool("haproxy")
    result = run(haproxy, "-c", "-f", str(HAPROXY_CFG))
    assert result.returncode == 0, result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr
    complaints = [
        line for line in result.stderr.splitlines() if "[WARNING]" in line or "[ALERT]" in line
    ]
    assert not complaints, complaints


def test_haproxy_relays_tcp_to_every_gateway_with_proxy_protocol_and_readyz_checks() -> None:
    sections = haproxy_sections()
    assert "mode tcp" in sections["defaults"], "the gateways terminate TLS: TCP mode only"
    options = default_server()
    assert "send-proxy-v2" in options
    assert "check" in options
    # Checks go to the metrics port, plain: no PROXY header in front of GET /readyz.
    assert "check-send-proxy" not in options
    check_port = int(options[options.index("port") + 1])
    for backend in ("gateways_proxy", "gateways_mllp"):
        lines = sections[f"backend {backend}"]
        assert "balance leastconn" in lines, backend
        assert "option httpchk GET /readyz" in lines, backend
        assert "http-check expect status 200" in lines, backend
        assert not any(line.startswith("mode http") for line in lines), backend
        assert len(servers(backend)) >= 2, backend
    config = host_config()
    assert config.admin.metrics_listen is not None
    assert check_port == port_of(config.admin.metrics_listen)
    assert check_port != port_of(config.admin.listen), "the API port stays on loopback"
    assert {port for _, port in servers("gateways_proxy")} == {port_of(config.proxy.listen)}
    # The MLLP backend's port is a reverse:tcp listener of the gateways (…@PORT).
    mllp_ports = {
        int(mode.rsplit("@", 1)[1])
        for mode in config.proxy.modes
        if mode.startswith("reverse:tcp://") and "@" in mode
    }
    assert {port for _, port in servers("gateways_mllp")} <= mllp_ports
    assert {h for h, _ in servers("gateways_proxy")} == {h for h, _ in servers("gateways_mllp")}


def test_haproxy_timeouts_outlast_the_gateways_own() -> None:
    """The gateway closes idle streams after mitmproxy's tcp_timeout (600 s): the balancer's
    timeouts are longer, so a long CONNECT tunnel or MLLP session is the gateway's to end."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

    def seconds(value: str) -> float:
        match = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value)
        assert match, value
        return int(match.group(1)) * units[match.group(2) or "ms"]

    sections = haproxy_sections()

    def timeout(section: str, name: str) -> float:
        for line in sections[section] + sections["defaults"]:
            parts = line.split()
            if parts[:2] == ["timeout", name]:
                return seconds(parts[2])
        raise AssertionError(f"no timeout {name} for {section}")

    for frontend, backend in (("proxy", "gateways_proxy"), ("mllp", "gateways_mllp")):
        assert timeout(f"frontend {frontend}", "client") > 600
        assert timeout(f"backend {backend}", "server") > 600
    assert timeout("frontend mllp", "client") >= 86400
    assert any(line.startswith("stats socket ") for line in sections["global"])
    assert any(line.startswith("log ") for line in sections["global"])


# --- keepalived ------------------------------------------------------------------------


def keepalived_view(node: str) -> str:
    """The file as ``node`` reads it: its own @node lines, no other node's."""
    lines = []
    for raw in KEEPALIVED_CONF.read_text().splitlines():
        line = raw
        if raw.startswith("@"):
            name, _, line = raw[1:].partition(" ")
            if name != node:
                continue
        lines.append(line.split("#", 1)[0])
    return "\n".join(lines)


def keepalived_value(node: str, key: str) -> str:
    match = re.search(rf"^\s*{key}\s+(\S+)", keepalived_view(node), re.M)
    assert match, f"{key} not set for {node}"
    return match.group(1)


def unicast_peers(node: str) -> list[str]:
    match = re.search(r"unicast_peer\s*\{([^}]*)\}", keepalived_view(node))
    assert match
    return match.group(1).split()


def vip() -> str:
    match = re.search(r"virtual_ipaddress\s*\{\s*(\S+)", keepalived_view("lb-1"))
    assert match
    return match.group(1).split("/")[0]


def keepalived_check(conf: Path, node: str) -> subprocess.CompletedProcess[str]:
    # keepalived 2.2 ends its config test by sending itself SIGTERM (exit -15, also when it
    # found problems): the verdict is what it prints. Its own session: the signal is its own.
    return run(tool("keepalived"), "-t", "-f", str(conf), "-i", node, start_new_session=True)


def checkable_keepalived_conf(tmp_path: Path) -> Path:
    """The config as is, unless its script user does not exist on this machine (it is created
    on the balancers: deploy/README.md): then with one that does, as keepalived refuses it."""
    text = KEEPALIVED_CONF.read_text()
    user = re.search(r"script_user\s+(\S+)", text)
    assert user, "track scripts must not run as root"
    try:
        pwd.getpwnam(user.group(1))
        return KEEPALIVED_CONF
    except KeyError:
        conf = tmp_path / "keepalived.conf"
        conf.write_text(text.replace(user.group(0), "script_user nobody"))
        return conf


@pytest.mark.parametrize("node", NODES)
def test_keepalived_accepts_the_config_on_each_node(node: str, tmp_path: Path) -> None:
    conf = checkable_keepalived_conf(tmp_path)
    result = keepalived_check(conf, node)
    assert result.returncode in (0, -15), (result.returncode, result.stderr)
    assert result.stderr == "" and result.stdout == "", result.stderr + result.stdout


def test_keepalived_config_test_reports_a_mistake(tmp_path: Path) -> None:
    """The check above would see a problem: the same test on a broken copy speaks up."""
    conf = checkable_keepalived_conf(tmp_path)
    broken = tmp_path / "broken.conf"
    broken.write_text(conf.read_text().replace("nopreempt", "nopreempt_typo"))
    result = keepalived_check(broken, "lb-1")
    assert "nopreempt_typo" in result.stderr


def test_keepalived_nodes_name_each_other_and_the_vip_haproxy_binds() -> None:
    sources = {node: keepalived_value(node, "unicast_src_ip") for node in NODES}
    assert sources["lb-1"] != sources["lb-2"]
    assert unicast_peers("lb-1") == [sources["lb-2"]]
    assert unicast_peers("lb-2") == [sources["lb-1"]]
    assert keepalived_value("lb-1", "priority") != keepalived_value("lb-2", "priority")
    for node in NODES:
        view = keepalived_view(node)
        assert re.search(r"^\s*state\s+BACKUP", view, re.M), "both BACKUP with nopreempt"
        assert re.search(r"^\s*nopreempt", view, re.M)
        assert re.search(r"track_script\s*\{\s*chk_haproxy", view)
        assert keepalived_value(node, "virtual_router_id") != "51", "not the examples' id"
        assert keepalived_value(node, "auth_pass")
    # The VIP is what the HAProxy frontends bind, what the PAC file names, and it is not a
    # balancer's own address.
    assert frontend_bind("proxy")[0] == vip()
    assert frontend_bind("mllp")[0] == vip()
    assert vip() not in sources.values()
    # The track script asks HAProxy's own stats frontend.
    stats_port = int(frontend_bind("stats")[1])
    assert f"127.0.0.1:{stats_port}/" in KEEPALIVED_CONF.read_text()


# --- the gateway host's config -----------------------------------------------------------


def test_gateway_host_config_passes_check_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)  # the unit's WorkingDirectory holds geo_db/, as the repo does
    assert cli.check_config(HOST_CONFIG) == cli.EXIT_OK, capsys.readouterr().err
    config = host_config()
    assert config.audit.backend == "postgresql"
    assert "password" not in config.audit.postgresql_dsn
    assert split_host_port(config.admin.listen)[0] == "127.0.0.1", "the API stays on loopback"
    assert config.admin.metrics_listen is not None
    assert "regular" in config.proxy.modes
    assert config.proxy.allow_public_clients is False
    # Without spool and checkpoint_log paths each chain (host, worker) gets its own pair.
    assert config.audit.spool is None and config.audit.checkpoint_log is None


def test_gateway_host_lists_the_balancers_as_proxy_protocol_senders() -> None:
    """proxy.proxy_protocol_from is exactly the balancers' own addresses (not the VIP)."""
    config = yaml.safe_load(HOST_CONFIG.read_text())
    entries = [ipaddress.ip_network(e) for e in config["proxy"]["proxy_protocol_from"]]
    balancers = {ipaddress.ip_network(keepalived_value(node, "unicast_src_ip")) for node in NODES}
    assert set(entries) == balancers
    assert ipaddress.ip_network(vip()) not in entries


# --- systemd ---------------------------------------------------------------------------


def unit_values(key: str) -> list[str]:
    return [
        line.split("=", 1)[1]
        for line in UNIT.read_text().splitlines()
        if line.startswith(f"{key}=")
    ]


def exposure_documented() -> float:
    match = re.search(r"Overall exposure level for phi-gateway\.service: (\d+\.\d)", readme())
    assert match, "deploy/README.md records the systemd-analyze security score"
    return float(match.group(1))


def readme() -> str:
    return (DEPLOY / "README.md").read_text()


def test_systemd_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    installed = str(Path(sys.executable).parent / "phi-gateway")
    if not Path(installed).is_file():
        pytest.skip("phi-gateway is not installed in this environment")
    # The unit names the release's /opt/phi-gateway: here, the installed command instead
    # (verify checks that every command exists and is executable).
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/phi-gateway/venv/bin/phi-gateway", installed))
    result = run(analyze, "verify", str(unit))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_systemd_security_score_is_the_documented_one() -> None:
    analyze = tool("systemd-analyze")
    result = run(analyze, "security", "--offline=true", str(UNIT))
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    match = re.search(r"Overall exposure level for phi-gateway\.service: (\d+\.\d)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= exposure_documented()
    assert float(match.group(1)) < 2.0


def test_unit_runs_the_gateway_as_documented() -> None:
    start = unit_values("ExecStart")
    assert len(start) == 1 and " run --config /etc/phi-gateway/gateway.yaml" in start[0]
    assert unit_values("ExecReload") == ["/bin/kill -HUP $MAINPID"]
    assert unit_values("KillSignal") == ["SIGTERM"]
    assert unit_values("TimeoutStopSec")
    assert unit_values("Restart") == ["on-failure"]
    assert unit_values("CapabilityBoundingSet") == [""]
    assert unit_values("NoNewPrivileges") == ["yes"]
    assert unit_values("ProtectSystem") == ["strict"]
    assert unit_values("EnvironmentFile")
    assert unit_values("LimitNOFILE")
    assert unit_values("SystemCallFilter")[0] == "@system-service"
    families = unit_values("RestrictAddressFamilies")[0].split()
    assert set(families) <= {"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"}
    # The config's writable and secret paths are the ones the unit provides.
    config = host_config()
    state = f"/var/lib/{unit_values('StateDirectory')[0]}"
    assert str(config.audit.database.parent) == state
    assert state in unit_values("ReadWritePaths")[0].split()
    assert str(config.proxy.confdir) == f"/run/credentials/{UNIT.name}"
    assert any(v.startswith("mitmproxy-ca.pem:") for v in unit_values("LoadCredential"))
    for port in (port_of(config.proxy.listen), port_of(config.admin.listen)):
        assert port >= 1024, "no CAP_NET_BIND_SERVICE in the unit"


_MDWE_PROBE = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (Linux 6.3+)
    sys.exit(77)
from cffi import FFI
try:
    FFI().callback("int(int)", lambda x: x)
except MemoryError:
    sys.exit(1)
"""


def test_memory_deny_write_execute_stays_off_while_cffi_callbacks_need_it() -> None:
    """pyOpenSSL (mitmproxy's TLS) makes cffi callbacks, which need writable executable
    memory: under MemoryDenyWriteExecute every intercepted HTTPS connection fails. Should
    cffi stop needing it, this test fails: then turn MemoryDenyWriteExecute on."""
    assert unit_values("MemoryDenyWriteExecute") == ["no"]
    result = run(sys.executable, "-c", _MDWE_PROBE)
    if result.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3): the cause is not re-checked")
    assert result.returncode == 1, "cffi callbacks work without W+X memory now: enable MDWE"


# --- Kubernetes ------------------------------------------------------------------------

# Discovery answers for the kinds the manifests use, written where kubectl caches them.
_API_RESOURCES = {
    "v1": [
        ("namespaces", False, "Namespace"),
        ("configmaps", True, "ConfigMap"),
        ("secrets", True, "Secret"),
        ("services", True, "Service"),
    ],
    "apps/v1": [("deployments", True, "Deployment")],
    "policy/v1": [("poddisruptionbudgets", True, "PodDisruptionBudget")],
    "networking.k8s.io/v1": [("networkpolicies", True, "NetworkPolicy")],
}


def discovery_cache(root: Path) -> Path:
    base = root / "discovery" / "127.0.0.1_1"
    groups = []
    for group_version, resources in _API_RESOURCES.items():
        group, _, version = group_version.rpartition("/")
        entry = {"groupVersion": group_version, "version": version}
        groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
        directory = base / group_version
        directory.mkdir(parents=True)
        (directory / "serverresources.json").write_text(
            json.dumps(
                {
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": group_version,
                    "resources": [
                        {
                            "name": name,
                            "singularName": "",
                            "namespaced": namespaced,
                            "kind": kind,
                            "verbs": ["create", "get", "list", "patch", "update", "delete"],
                        }
                        for name, namespaced, kind in resources
                    ],
                }
            )
        )
    (base / "servergroups.json").write_text(
        json.dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    )
    return root


def kubectl_dry_run(
    path: Path | None, tmp_path: Path, stdin: str | None = None
) -> list[dict[str, Any]]:
    """The objects kubectl would create: one JSON document each, one after another."""
    kubectl = tool("kubectl")
    cache = discovery_cache(tmp_path / "kube-cache")
    result = run(
        kubectl,
        "create",
        "--dry-run=client",
        "--validate=false",
        "-o",
        "json",
        f"--server={NO_SERVER}",
        f"--cache-dir={cache}",
        "-f",
        str(path) if path else "-",
        env={"KUBECONFIG": "/dev/null", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        input=stdin,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    decoder, text, objects = json.JSONDecoder(), result.stdout, []
    position = 0
    while text[position:].strip():
        obj, end = decoder.raw_decode(text, len(text) - len(text[position:].lstrip()))
        objects.append(obj)
        position = end
    return objects


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_object(kind: str) -> dict[str, Any]:
    for path in MANIFESTS:
        for doc in documents(path):
            if doc["kind"] == kind:
                return doc
    raise AssertionError(f"no {kind} in deploy/kubernetes")


def k8s_secret(name: str) -> dict[str, Any]:
    for doc in documents(K8S / "secrets.yaml"):
        if doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(name)


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_kubectl_dry_run_accepts_each_manifest(manifest: Path, tmp_path: Path) -> None:
    objects = kubectl_dry_run(manifest, tmp_path)
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        (d["kind"], d["metadata"]["name"]) for d in documents(manifest)
    ]
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "phi-gateway"


def test_kubectl_dry_run_refuses_an_unknown_kind(tmp_path: Path) -> None:
    """The dry run does recognise kinds: a misspelt one fails (its lookup goes to NO_SERVER,
    which refuses it at once)."""
    kubectl = tool("kubectl")
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: apps/v1\nkind: Deploymnt\nmetadata: {name: x}\n")
    result = run(
        kubectl,
        "create",
        "--dry-run=client",
        "--validate=false",
        "-o",
        "name",
        f"--server={NO_SERVER}",
        f"--cache-dir={discovery_cache(tmp_path / 'kube-cache')}",
        "-f",
        str(bad),
        env={"KUBECONFIG": "/dev/null", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0


def test_kustomization_lists_every_manifest_and_builds(tmp_path: Path) -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]
    kubectl = tool("kubectl")
    built = run(kubectl, "kustomize", str(K8S), env={"KUBECONFIG": "/dev/null", "HOME": "/"})
    assert built.returncode == 0, built.stderr
    kinds = sorted(o["kind"] for o in kubectl_dry_run(None, tmp_path, stdin=built.stdout))
    assert kinds == sorted(d["kind"] for p in MANIFESTS for d in documents(p))


def pod_config() -> str:
    """The config the init container writes: the ConfigMap's file, then the admin section."""
    base: str = k8s_object("ConfigMap")["data"]["gateway.yaml"]
    admin: str = k8s_secret("phi-gateway-admin")["stringData"]["admin.yaml"]
    init = k8s_object("Deployment")["spec"]["template"]["spec"]["initContainers"][0]
    script = " ".join(init["command"])
    assert "/etc/phi-gateway/base/gateway.yaml /etc/phi-gateway/admin/admin.yaml" in script
    return base + admin


def test_pod_config_passes_check_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(pod_config())
    monkeypatch.chdir(REPO)  # the image's WORKDIR /app holds geo_db/, as the repo does
    assert cli.check_config(config_file) == cli.EXIT_OK, capsys.readouterr().err
    base = yaml.safe_load(k8s_object("ConfigMap")["data"]["gateway.yaml"])
    assert "admin" not in base, "the admin section (token hashes) lives in the Secret"


def test_deployment_probes_ports_and_hardening_match_the_config() -> None:
    config = parse_config_text(pod_config(), "pod")
    deployment = k8s_object("Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 3
    gateway = next(c for c in pod["containers"] if c["name"] == "gateway")
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    assert config.admin.metrics_listen is not None
    assert ports["metrics"] == port_of(config.admin.metrics_listen)
    assert ports["proxy"] == port_of(config.proxy.listen)
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in pod["containers"] + pod["initContainers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
        assert "memory" in container["resources"]["limits"], container["name"]
    mounts = {m["mountPath"]: m["name"] for m in gateway["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    # The CA is the Secret, mounted where proxy.confdir points; var/ is an emptyDir.
    ca = volumes[mounts[str(config.proxy.confdir)]]
    assert ca["secret"]["secretName"] == "phi-gateway-ca"
    assert "mitmproxy-ca.pem" in k8s_secret("phi-gateway-ca")["stringData"]
    assert "emptyDir" in volumes[mounts["/app/var"]]
    # Secrets reach the gateway from Secrets only, never as literal values.
    env = {e["name"]: e for e in gateway["env"]}
    for name in ("PHI_GATEWAY_SECRET", "PGPASSWORD"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "phi-gateway-audit"
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["metrics"])


def test_service_keeps_client_addresses_and_the_budget_covers_the_pods() -> None:
    labels = k8s_object("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = k8s_object("Service")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert service["spec"]["selector"].items() <= labels.items()
    gateway = k8s_object("Deployment")["spec"]["template"]["spec"]["containers"][0]
    names = {p["name"] for p in gateway["ports"]}
    targets = {p["targetPort"] for p in service["spec"]["ports"]}
    assert targets <= names
    assert "metrics" not in targets, "metrics are scraped from the pods, not published"
    budget = k8s_object("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"].get("maxUnavailable") == 1 or budget["spec"].get("minAvailable") == 2


# --- PAC file and Prometheus -------------------------------------------------------------

_PAC_HARNESS = r"""
const fs = require("fs"), vm = require("vm");
const toInt = ip => ip.split(".").reduce((a, b) => a * 256 + Number(b), 0);
const resolved = [];
const ctx = {
  isPlainHostName: h => !h.includes("."),
  dnsDomainIs: (h, d) => h.endsWith(d),
  shExpMatch: (s, p) => new RegExp("^" + p.replace(/[.+^${}()|[\]\\]/g, "\\$&")
      .replace(/\*/g, ".*").replace(/\?/g, ".") + "$").test(s),
  isInNet: (h, net, mask) => {
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(h)) { resolved.push(h); return false; }
    return ((toInt(h) & toInt(mask)) >>> 0) === ((toInt(net) & toInt(mask)) >>> 0);
  },
  dnsResolve: h => { resolved.push(h); return null; },
  myIpAddress: () => "10.1.1.1",
};
vm.createContext(ctx);
vm.runInContext(fs.readFileSync(process.argv[1], "utf8"), ctx);
const answers = {};
for (const h of JSON.parse(process.argv[2]))
  answers[h] = ctx.FindProxyForURL("https://" + h + "/", h);
console.log(JSON.stringify({answers, resolved}));
"""

_PAC_CASES = {
    "intranet": "DIRECT",
    "printer.local": "DIRECT",
    "10.1.2.3": "DIRECT",
    "192.168.4.5": "DIRECT",
    "8.8.8.8": "PROXY",
    "api.vendor.example": "PROXY",
    "local.vendor.example": "PROXY",
    "10.1.2.3.nip.example": "PROXY",
}


def test_pac_file_sends_all_but_the_intranet_through_the_vip(tmp_path: Path) -> None:
    text = PAC.read_text()
    assert "function FindProxyForURL(url, host)" in text
    assert f"PROXY {vip()}:{frontend_bind('proxy')[1]}" in text
    assert "DIRECT BYPASSES INSPECTION" in text
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed: only the text of the PAC file was checked")
    result = run(node, "-e", _PAC_HARNESS, str(PAC), json.dumps(list(_PAC_CASES)))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    for host, want in _PAC_CASES.items():
        answer = out["answers"][host]
        assert answer.split()[0] == want, (host, answer)
        if want == "PROXY":
            proxies = [p.strip() for p in answer.split(";")]
            assert proxies[0] == f"PROXY {vip()}:{frontend_bind('proxy')[1]}"
            assert len(proxies) >= 2, "a fallback proxy"
            assert "DIRECT" not in answer, "never fall back to uninspected"
    assert out["resolved"] == [], "the PAC file must not resolve names"


def test_prometheus_scrapes_every_gateway_host_and_balancer(tmp_path: Path) -> None:
    scrape = yaml.safe_load(SCRAPE.read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    targets = {t for c in jobs["phi-gateway"]["static_configs"] for t in c["targets"]}
    config = host_config()
    assert config.admin.metrics_listen is not None
    metrics_port = port_of(config.admin.metrics_listen)
    assert targets == {f"{host}:{metrics_port}" for host, _ in servers("gateways_proxy")}
    balancers = {t for c in jobs["phi-gateway-haproxy"]["static_configs"] for t in c["targets"]}
    stats_port = frontend_bind("stats")[1]
    assert balancers == {f"{keepalived_value(n, 'unicast_src_ip')}:{stats_port}" for n in NODES}
    promtool = tool("promtool")
    # The rules file is copied beside the scrape config on the Prometheus host.
    shutil.copy(SCRAPE, tmp_path / SCRAPE.name)
    shutil.copy(REPO / "configs" / "prometheus" / "phi-gateway-rules.yml", tmp_path)
    result = run(promtool, "check", "config", str(tmp_path / SCRAPE.name))
    assert result.returncode == 0, result.stdout + result.stderr
