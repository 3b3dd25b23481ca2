"""Transparent mode behind HAProxy: ``run --workers 2 --mode transparent`` on the router of
test_transparent.py's namespaces. The firewall redirects the client's TCP to HAProxy, which
learns each connection's original destination (SO_ORIGINAL_DST) and hands it, with the
client's address, to a worker in a PROXY protocol v2 header: the worker judges the real
destination and the audit row names the real client, not HAProxy's loopback address."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from gateway import haproxy
from gateway.errors import StartError
from tests.e2e.test_transparent import (
    CLIENT_IP,
    FOREIGN_IP,
    INCIDENT,
    MESSAGES,
    TransparentWorld,
    assert_no_identifiers,
    build_world,
    digest,
    post_hl7,
    send_mllp,
)
from tests.support.gateway_process import GatewayProcess
from tests.support.mllp import msa

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TransparentWorld]:
    try:
        haproxy.binary()
    except StartError as exc:
        pytest.skip(str(exc))
    yield build_world(
        request,
        tmp_path_factory.mktemp("transparent-workers"),
        ["--mode", "transparent", "--workers", "2"],
        started=lambda gateway: _wait_workers(gateway, 2),
    )


def _wait_workers(gateway: GatewayProcess, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, text = gateway.admin_get("/metrics")
        ready = [
            line
            for line in text.splitlines()
            if line.startswith("phi_gateway_worker_ready{") and line.endswith(" 1.0")
        ]
        if len(ready) >= count:
            time.sleep(2.5)  # HAProxy's checks see them up too
            return
        time.sleep(0.2)
    raise AssertionError(f"workers not ready:\n{gateway.output()}")


def test_http_abroad_is_refused_and_the_row_names_the_client_and_destination(
    world: TransparentWorld,
) -> None:
    for body in MESSAGES[:4]:  # connections of their own: both workers take some
        response = post_hl7(world, world.foreign.http, body)
        assert response.status_code == 451
        row = world.gateway.audit_row(response.headers["x-phi-gateway-incident"])
        assert (row["country"], row["ip"]) == ("DE", FOREIGN_IP)
        assert row["client"].rsplit(":", 1)[0] == CLIENT_IP  # not HAProxy's 127.0.0.1
        assert_no_identifiers(response.content + str(row).encode())
    assert world.foreign.http.received == []
    chains = {r["instance_id"] for r in world.gateway.audit_rows()}
    assert len({c for c in chains if c.rsplit("-", 1)[-1].startswith("w")}) == 2


def test_http_at_home_arrives_byte_identical(world: TransparentWorld) -> None:
    response = post_hl7(world, world.domestic.http, MESSAGES[4])
    assert response.status_code == 200
    assert [digest(r.body) for r in world.domestic.http.received] == [digest(MESSAGES[4])]


def test_mllp_abroad_gets_reject_acks_and_the_receiver_nothing(world: TransparentWorld) -> None:
    receiver = world.foreign.mllp(True)
    acks = send_mllp(world, receiver, MESSAGES[5:7])
    assert [msa(a)[1] for a in acks] == [b"AR", b"AR"]
    assert receiver.data == b"", "bytes of a refused message reached the foreign receiver"
    incidents = [INCIDENT.search(a.decode()) for a in acks]
    rows = [world.gateway.audit_row(m.group(0)) for m in incidents if m is not None]
    assert len(rows) == 2 and {r["protocol"] for r in rows} == {"mllp"}
    assert {(r["client"].rsplit(":", 1)[0], r["ip"], r["port"]) for r in rows} == {
        (CLIENT_IP, FOREIGN_IP, receiver.port)
    }
