"""``run --workers 2`` through the real HAProxy (Debian's), and the PROXY protocol v2 on a
single gateway: foreign PHI blocked by both workers, domestic traffic forwarded by both, the
client's own address (127.0.0.9, not HAProxy's 127.0.0.1) in every audit row, over plain
HTTP, a CONNECT tunnel and MLLP through a ``reverse:tcp`` listener; one admin API and one
/metrics for all workers; a worker killed with SIGKILL under load: the other serves, nothing
identifying reaches the foreign receiver, the trail still verifies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import haproxy
from gateway.api_auth import new_token
from gateway.errors import StartError
from gateway.proxy_protocol import encode
from tests.e2e.conftest import Upstreams, gateway_config
from tests.support.gateway_process import BIN, GatewayProcess, free_port
from tests.support.mllp import MllpReceiver, MllpSender, msa, run
from tests.support.mmdb import FOREIGN_IP
from tests.support.patients import hl7_adt, make_patient
from tests.support.upstream import Pki

pytestmark = pytest.mark.e2e
CLIENT_IP = "127.0.0.9"  # the clients' own address: HAProxy connects from 127.0.0.1
PATIENT = make_patient(1907)
PHI = json.dumps({"resourceType": "Patient", "name": [{"family": PATIENT.family}],
                  "birthDate": PATIENT.birth_date_iso}).encode()  # fmt: skip
CLEAN = b'{"invoice": "2026-11", "amount": 12.5}'
SECRET = "workers-test-site-secret"
AUDITOR, AUDITOR_HASH = new_token()
ADMIN, ADMIN_HASH = new_token()


def _haproxy() -> None:
    try:
        haproxy.binary()
    except StartError as exc:
        pytest.skip(str(exc))


class Site:
    def __init__(self, workdir: Path, test_mmdb: Path, pki: Pki, upstreams: Upstreams) -> None:
        self.abroad = MllpReceiver(FOREIGN_IP)
        self.mllp_port = free_port()
        config = gateway_config(
            test_mmdb,
            pki,
            admin={
                "tokens": [
                    {"name": "auditor-1", "role": "auditor", "sha256": AUDITOR_HASH},
                    {"name": "admin-1", "role": "admin", "sha256": ADMIN_HASH},
                ]
            },
        )
        modes = ["regular", f"reverse:tcp://{FOREIGN_IP}:{self.abroad.port}@{self.mllp_port}"]
        self.gateway = GatewayProcess(
            workdir,
            config,
            ["--workers", "2", *(a for m in modes for a in ("--mode", m))],
            env={"PHI_GATEWAY_SECRET": SECRET},
        )
        self.wait_workers(2)

    def worker_ready(self) -> dict[str, float]:
        _, text = self.gateway.admin_get("/metrics")
        ready: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("phi_gateway_worker_ready{"):
                name = line.split('worker="', 1)[1].split('"', 1)[0]
                ready[name] = float(line.rsplit(" ", 1)[1])
        return ready

    def wait_workers(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(self.worker_ready().values()) >= count:
                time.sleep(2.5)  # HAProxy's checks see them up too
                return
            time.sleep(0.2)
        raise AssertionError(f"workers not ready: {self.worker_ready()}\n{self.gateway.output()}")

    def worker_pid(self, number: int) -> int:
        out = subprocess.run(
            ["pgrep", "-f", "--", f"--worker {number} --admin"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        pids = [int(p) for p in out if int(p) != os.getpid()]
        assert pids, f"no process of worker {number}"
        return pids[0]

    def close(self) -> None:
        self.gateway.stop()
        self.abroad.close()


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, test_mmdb: Path, pki: Pki, upstreams: Upstreams
) -> Iterator[Site]:
    _haproxy()
    s = Site(tmp_path_factory.mktemp("workers"), test_mmdb, pki, upstreams)
    yield s
    s.close()


def _send(port: int, head: bytes, body: bytes, tls_host: str = "", ca: Path | None = None) -> bytes:
    """One request on a connection of its own from CLIENT_IP (HAProxy balances connections);
    through a CONNECT tunnel and TLS when ``tls_host`` is given."""
    import ssl

    raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(CLIENT_IP, 0))
    sock: socket.socket = raw
    with contextlib.ExitStack() as stack:
        stack.enter_context(raw)
        if tls_host:
            raw.sendall(f"CONNECT {tls_host} HTTP/1.1\r\nHost: {tls_host}\r\n\r\n".encode())
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += raw.recv(4096)
            assert reply.startswith(b"HTTP/1.1 200"), reply[:40]
            context = ssl.create_default_context(cafile=str(ca))
            sock = stack.enter_context(
                context.wrap_socket(raw, server_hostname=tls_host.split(":", maxsplit=1)[0])
            )
        sock.sendall(head + body)
        chunks = []
        with contextlib.suppress(OSError):
            while data := sock.recv(65536):
                chunks.append(data)
        return b"".join(chunks)


def _post(gateway: GatewayProcess, url: str, body: bytes) -> tuple[int, str]:
    """(status, incident id) of one POST through the gateway."""
    head = (
        f"POST {url} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = _send(gateway.port, head, body)
    return _status(answer), _incident(answer)


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def _incident(answer: bytes) -> str:
    head = answer.split(b"\r\n\r\n", 1)[0]
    at = head.lower().find(b"x-phi-gateway-incident: ")
    if at < 0:
        return ""
    return head[at + 24 :].split(b"\r\n", 1)[0].decode()


def test_both_workers_block_abroad_forward_at_home_and_name_the_client(
    site: Site, upstreams: Upstreams
) -> None:
    incidents = []
    for n in range(6):  # new connections in turn: least connections takes turns
        status, incident = _post(site.gateway, f"{upstreams.foreign.url}/w/phi/{n}", PHI)
        assert status == 451
        incidents.append(incident)
    for n in range(6):
        status, _ = _post(site.gateway, f"{upstreams.domestic.url}/w/home/{n}", PHI)
        assert status == 200
    assert not [p for p in upstreams.foreign.paths() if p.startswith("/w/phi/")]
    assert upstreams.domestic.first_at("/w/home/0").body == PHI
    rows = [site.gateway.audit_row(i) for i in incidents]
    chains = {r["instance_id"] for r in rows}
    assert len(chains) == 2 and all(c.endswith(("-w1", "-w2")) for c in chains), chains
    assert all(r["client"].startswith(f"{CLIENT_IP}:") for r in rows), [r["client"] for r in rows]
    # Both workers decided domestic traffic too: their counters, merged under "worker".
    _, text = site.gateway.admin_get("/metrics")
    domestic = [
        line for line in text.splitlines()
        if line.startswith("phi_gateway_decisions_total{worker=") and 'rule="domestic"' in line
    ]  # fmt: skip
    assert {line.split('"', 2)[1] for line in domestic} == {"w1", "w2"}, domestic


def test_a_connect_tunnel_names_the_client(site: Site, upstreams: Upstreams) -> None:
    server = upstreams.foreign_tls
    head = (
        f"POST /w/tls HTTP/1.1\r\nHost: {server.host}\r\nContent-Length: {len(PHI)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    answer = _send(
        site.gateway.port, head, PHI, f"{server.host}:{server.port}", site.gateway.ca_pem
    )
    assert _status(answer) == 451
    row = site.gateway.audit_row(_incident(answer))
    assert row["client"].startswith(f"{CLIENT_IP}:") and row["location"] == "foreign"


def test_mllp_through_a_reverse_listener_names_the_client(site: Site) -> None:
    async def talk() -> bytes:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", site.mllp_port, local_addr=(CLIENT_IP, 0)
        )
        sender = MllpSender(reader, writer)
        ack = await sender.exchange(hl7_adt(PATIENT, control_id="WORKERS1"))
        await sender.close()
        return ack

    ack = run(talk())
    assert msa(ack)[1] == b"AR"
    assert not site.abroad.frames
    rows = site.gateway.audit_rows_where(protocol="mllp")
    assert rows and all(r["client"].startswith(f"{CLIENT_IP}:") for r in rows)


def test_one_admin_api_and_one_metrics_for_all_workers(site: Site, upstreams: Upstreams) -> None:
    _, incident = _post(site.gateway, f"{upstreams.foreign.url}/w/api", PHI)
    site.gateway.audit_row(incident)  # written by the worker's audit thread
    request = urllib.request.Request(
        f"http://127.0.0.1:{site.gateway.admin_port}/api/v1/incidents/{incident}",
        headers={"Authorization": f"Bearer {AUDITOR}"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        found = json.loads(reply.read())
    assert found["incident_id"] == incident and found["client"].startswith(CLIENT_IP)
    _, text = site.gateway.admin_get("/metrics")
    families = [line for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(families) == len(set(families))  # one family, once, for every process
    assert 'phi_gateway_worker_scrape_ok{worker="w1"} 1.0' in text
    assert 'phi_gateway_worker_scrape_ok{worker="w2"} 1.0' in text


def test_a_killed_worker_under_load(site: Site, upstreams: Upstreams) -> None:
    stop = threading.Event()
    answered: list[tuple[float, int, str]] = []  # (time, status, incident)
    errors: list[float] = []

    def load() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                status, incident = _post(site.gateway, f"{upstreams.foreign.url}/w/kill/{n}", PHI)
            except OSError:
                errors.append(time.monotonic())
                continue
            if status:
                answered.append((time.monotonic(), status, incident))
            else:
                errors.append(time.monotonic())  # cut by the kill: no answer

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    killed_at = time.monotonic()
    os.kill(site.worker_pid(1), signal.SIGKILL)
    time.sleep(4)
    stop.set()
    for thread in threads:
        thread.join(20)
    assert all(status == 451 for _, status, _ in answered), {s for _, s, _ in answered}
    after = [a for a in answered if a[0] > killed_at + 1]
    assert len(after) >= 10, (len(after), len(errors))  # the other worker kept serving
    assert not [p for p in upstreams.foreign.paths() if p.startswith("/w/kill/")]
    # Every block answered has its row, those of the killed worker too: its journal held
    # them, and the restarted worker wrote them (gateway/audit/journal.py).
    assert answered
    site.wait_workers(2)  # restarted by the supervisor
    blocked = {incident for _, _, incident in answered}
    deadline = time.monotonic() + 20
    while True:
        recorded = {r["incident_id"]: r["action"] for r in site.gateway.audit_rows()}
        missing = blocked - recorded.keys()
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not missing, f"{len(missing)} of {len(blocked)} answered blocks have no row"
    assert {recorded[i] for i in blocked} == {"block"}
    assert site.gateway.metric("phi_gateway_worker_restarts_total", process="worker") >= 1
    verified = subprocess.run(
        [str(BIN), "audit", "verify", "--config", str(site.gateway.config_path), "--json"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PHI_GATEWAY_SECRET": SECRET},
        cwd=Path(__file__).parents[2],
    )
    result = json.loads(verified.stdout)
    assert verified.returncode == 0, result
    assert len(result["checkpoint_logs"]) == 3  # the supervisor's and each worker's


def _reload(site: Site) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{site.gateway.admin_port}/api/v1/policy/reload", method="POST"
    )
    request.add_header("Authorization", f"Bearer {ADMIN}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _reloads(site: Site, result: str) -> dict[str, float]:
    _, text = site.gateway.admin_get("/metrics")
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("phi_gateway_config_reloads_total{") and f'"{result}"' in line:
            worker = line.split('worker="', 1)[1].split('"', 1)[0] if "worker=" in line else ""
            found[worker] = float(line.rsplit(" ", 1)[1])
    return found


def test_a_reload_reaches_every_worker_and_a_bad_one_none(site: Site, upstreams: Upstreams) -> None:
    good = dict(site.gateway.config)
    # A file missing a section the running one has: refused by the supervisor, as by one
    # gateway, and no worker is asked.
    site.gateway.write_config({k: v for k, v in good.items() if k != "proxy"})
    status, answer = _reload(site)
    assert status == 409 and answer["reloaded"] is False, answer
    assert _post(site.gateway, f"{upstreams.foreign.url}/w/reload/1", PHI)[0] == 451

    # India allowed: every worker forwards PHI there after the reload.
    before = _reloads(site, "success")
    wider = {**good, "jurisdiction": {"allowed_countries": ["US", "IN"]}}
    site.gateway.write_config(wider)
    try:
        status, answer = _reload(site)
        assert status == 200 and answer["reloaded"] is True, answer
        assert "in force in 2 worker(s)" in str(answer["message"])
        after = _reloads(site, "success")
        assert {w: after[w] - before.get(w, 0) for w in ("w1", "w2")} == {"w1": 1, "w2": 1}
        for n in range(6):  # a connection each: both workers answer
            assert _post(site.gateway, f"{upstreams.foreign.url}/w/reload/{n}", CLEAN)[0] == 200
        assert _post(site.gateway, f"{upstreams.foreign.url}/w/reload/phi", PHI)[0] == 200
    finally:  # a section a reload drops must be written empty (its defaults)
        site.gateway.write_config({**good, "jurisdiction": {}})
        assert _reload(site)[0] == 200
    assert _post(site.gateway, f"{upstreams.foreign.url}/w/reload/2", PHI)[0] == 451


# -- the PROXY protocol on one gateway ------------------------------------------------------
@pytest.fixture(scope="module")
def balanced(
    tmp_path_factory: pytest.TempPathFactory, test_mmdb: Path, pki: Pki
) -> Iterator[GatewayProcess]:
    config = gateway_config(test_mmdb, pki, proxy={"proxy_protocol_from": ["127.0.0.1/32"]})
    process = GatewayProcess(tmp_path_factory.mktemp("balanced"), config, listen_host="0.0.0.0")
    yield process
    process.stop()


def _raw_request(port: int, source: str, header: bytes, url: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        request = (
            f"POST {url} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(PHI)}\r\nConnection: close\r\n\r\n"
        ).encode()
        s.sendall(header + request + PHI)
        chunks = []
        with contextlib.suppress(OSError):
            while data := s.recv(65536):
                chunks.append(data)
        return b"".join(chunks)


def test_a_balancer_names_the_client_with_a_proxy_header(
    balanced: GatewayProcess, upstreams: Upstreams
) -> None:
    header = encode(("10.20.30.40", 51515), ("127.0.0.1", balanced.port))
    answer = _raw_request(balanced.port, "127.0.0.1", header, f"{upstreams.foreign.url}/pp/1")
    assert answer.startswith(b"HTTP/1.1 451")
    incident = answer.split(b"X-PHI-Gateway-Incident: ", 1)[1].split(b"\r\n", 1)[0].decode()
    assert balanced.audit_row(incident)["client"] == "10.20.30.40:51515"
    assert balanced.metric("phi_gateway_proxy_protocol_connections_total", result="proxied") >= 1


def test_a_balancer_connection_without_a_header_is_closed(
    balanced: GatewayProcess, upstreams: Upstreams
) -> None:
    answer = _raw_request(balanced.port, "127.0.0.1", b"", f"{upstreams.foreign.url}/pp/2")
    assert answer == b""
    assert "/pp/2" not in upstreams.foreign.paths()
    assert balanced.metric("phi_gateway_proxy_protocol_connections_total", result="refused") >= 1


def test_other_clients_are_served_as_they_come(
    balanced: GatewayProcess, upstreams: Upstreams
) -> None:
    answer = _raw_request(balanced.port, CLIENT_IP, b"", f"{upstreams.foreign.url}/pp/3")
    assert answer.startswith(b"HTTP/1.1 451")
    incident = answer.split(b"X-PHI-Gateway-Incident: ", 1)[1].split(b"\r\n", 1)[0].decode()
    assert balanced.audit_row(incident)["client"].startswith(f"{CLIENT_IP}:")
