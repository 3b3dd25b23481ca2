"""The e2e world: a real gateway process, real loopback upstreams placed in countries by a test
MaxMind database, real clients."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway_process import GatewayProcess
from tests.support.mmdb import (
    DOMESTIC_IP,
    FOREIGN_IP,
    FOREIGN_IP_2,
    TERRITORY_IP,
    UNKNOWN_IP,
    build_test_mmdb,
)
from tests.support.upstream import Pki, RecordingServer, make_pki


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("world")


@pytest.fixture(scope="session")
def test_mmdb(world_dir: Path) -> Path:
    return build_test_mmdb(world_dir / "test-world.mmdb")


@pytest.fixture(scope="session")
def pki(world_dir: Path) -> Pki:
    return make_pki(world_dir, [DOMESTIC_IP, FOREIGN_IP, FOREIGN_IP_2, TERRITORY_IP, UNKNOWN_IP])


class Upstreams:
    def __init__(self, pki: Pki) -> None:
        self.domestic = RecordingServer(DOMESTIC_IP)
        self.foreign = RecordingServer(FOREIGN_IP)
        self.foreign_2 = RecordingServer(FOREIGN_IP_2)
        self.territory = RecordingServer(TERRITORY_IP)
        self.unknown = RecordingServer(UNKNOWN_IP)
        self.domestic_tls = RecordingServer(DOMESTIC_IP, tls=pki.server_context)
        self.foreign_tls = RecordingServer(FOREIGN_IP, tls=pki.server_context)

    def all(self) -> list[RecordingServer]:
        return [
            self.domestic,
            self.foreign,
            self.foreign_2,
            self.territory,
            self.unknown,
            self.domestic_tls,
            self.foreign_tls,
        ]


@pytest.fixture(scope="session")
def upstreams(pki: Pki) -> Iterator[Upstreams]:
    servers = Upstreams(pki)
    yield servers
    for server in servers.all():
        server.close()


def gateway_config(test_mmdb: Path, pki: Pki, **sections: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "geo": {"databases": [{"path": str(test_mmdb), "answers_reserved": True}], "overrides": []},
        "proxy": {"upstream_ca_bundle": str(pki.ca_pem)},
    }
    for key, value in sections.items():
        config.setdefault(key, {}).update(value)
    return config


@pytest.fixture(scope="session")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, test_mmdb: Path, pki: Pki
) -> Iterator[GatewayProcess]:
    """The enforcing gateway most tests share."""
    config = gateway_config(
        test_mmdb,
        pki,
        policy={
            "allow_destinations": [{"cidr": f"{FOREIGN_IP_2}/32", "reason": "BAA 2024-17 test"}],
            "deny_destinations": [{"host": "127.0.0.1", "port": 1, "reason": "never used"}],
        },
        limits={"max_body_bytes": 4 * 1024 * 1024},
    )
    process = GatewayProcess(tmp_path_factory.mktemp("gateway"), config)
    yield process
    process.stop()


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(proxy=gateway.proxy_url, verify=trusting(gateway), timeout=10) as c:
        yield c


def trusting(gateway: GatewayProcess) -> ssl.SSLContext:
    """A client TLS context that trusts the gateway's CA, as a hospital client would."""
    return ssl.create_default_context(cafile=str(gateway.ca_pem))
