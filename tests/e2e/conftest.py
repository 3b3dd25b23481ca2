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


def _shared_config(test_mmdb: Path, pki: Pki, **sections: Any) -> dict[str, Any]:
    return gateway_config(
        test_mmdb,
        pki,
        policy={
            "allow_destinations": [{"cidr": f"{FOREIGN_IP_2}/32", "reason": "BAA 2024-17 test"}],
            "deny_destinations": [{"host": "127.0.0.1", "port": 1, "reason": "never used"}],
        },
        limits={"max_body_bytes": 4 * 1024 * 1024},
        **sections,
    )


@pytest.fixture(scope="session")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, test_mmdb: Path, pki: Pki
) -> Iterator[GatewayProcess]:
    """The enforcing gateway most tests share (domestic TLS relayed: the default)."""
    process = GatewayProcess(tmp_path_factory.mktemp("gateway"), _shared_config(test_mmdb, pki))
    yield process
    process.stop()


@pytest.fixture(scope="session")
def decrypting_gateway(
    tmp_path_factory: pytest.TempPathFactory, test_mmdb: Path, pki: Pki
) -> Iterator[GatewayProcess]:
    """The shared gateway's policy with ``proxy.relay_domestic_tls: false``: domestic TLS is
    decrypted too, for tests of what the gateway does inside a decrypted domestic connection."""
    config = _shared_config(test_mmdb, pki, proxy={"relay_domestic_tls": False})
    process = GatewayProcess(tmp_path_factory.mktemp("decrypting-gateway"), config)
    yield process
    process.stop()


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(proxy=gateway.proxy_url, verify=trusting(gateway), timeout=10) as c:
        yield c


def trusting(gateway: GatewayProcess) -> ssl.SSLContext:
    """A client TLS context that trusts the gateway's CA only: what it decrypts."""
    return ssl.create_default_context(cafile=str(gateway.ca_pem))


def trusting_both(gateway: GatewayProcess) -> ssl.SSLContext:
    """The gateway's CA for what it decrypts and the servers' CA (the test PKI, standing in
    for the public CAs) for the domestic TLS it relays, as a hospital client trusts both."""
    context = trusting(gateway)
    context.load_verify_locations(cafile=str(servers_ca(gateway)))
    return context


def ca_bundle(gateway: GatewayProcess) -> bytes:
    """PEM of both CAs of ``trusting_both`` (for clients that take bytes, e.g. grpcio)."""
    return gateway.ca_pem.read_bytes() + servers_ca(gateway).read_bytes()


def servers_ca(gateway: GatewayProcess) -> Path:
    """The CA the upstream servers' certificates chain to (the gateway verifies them with it:
    proxy.upstream_ca_bundle, the test PKI)."""
    return Path(gateway.config["proxy"]["upstream_ca_bundle"])
