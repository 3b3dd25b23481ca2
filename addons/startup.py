"""What ``phi-gateway run`` does the same way for one gateway and for the supervisor of
``--workers N``: the effective config, the checks a reload must pass, the admin servers."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

from gateway.admin import AdminServer, ReadinessState, Routes
from gateway.audit.factory import for_worker
from gateway.config import (
    GatewayConfig,
    parse_config,
    parse_config_text,
    read_config_text,
    reload_problems,
    split_host_port,
)
from gateway.engine import Gateway
from gateway.entry_expiry import ExpiryWatch
from gateway.errors import ConfigError
from gateway.siem.forwarder import SiemService

log = logging.getLogger("phi_gateway")


class TrailServices:
    """What reads the whole trail or adds to it for the whole gateway, and so runs once,
    where the admin API does (one gateway, or the supervisor of ``--workers``; never in a
    worker): the SIEM outputs and the recording of entry expiries."""

    def __init__(self) -> None:
        self.siem = SiemService()
        self.watch = ExpiryWatch()

    def apply(self, gateway: Gateway) -> None:
        """Start, or follow a reload to, this gateway's config."""
        for problem in self.siem.apply(gateway.config, gateway.audit.backend):
            log.warning("%s", problem)
        self.watch.apply(gateway.config.policy, gateway.audit, gateway.policy_version)

    def stop(self) -> None:
        self.watch.stop()
        self.siem.stop()


def effective_config(args: argparse.Namespace, text: str | None = None) -> GatewayConfig:
    """The config file (or ``text``, read from it) with command-line overrides applied,
    validated as a whole."""
    if text is None:
        text = read_config_text(args.config)
    config = parse_config_text(text, str(args.config))
    worker = getattr(args, "worker", 0)
    if not (args.listen or args.admin or args.mode or worker):
        return config
    data = config.model_dump(mode="json")
    if args.listen:
        data["proxy"]["listen"] = args.listen
    if args.mode:
        data["proxy"]["modes"] = args.mode
    if args.admin:
        data["admin"]["listen"] = args.admin
    if worker:
        # One worker of run --workers: its own chain and files, the supervisor's HAProxy on
        # loopback as its balancer, its metrics on its own admin port (merged there).
        data["audit"] = for_worker(config.audit, worker).model_dump(mode="json")
        data["proxy"]["proxy_protocol_from"] = [
            *data["proxy"]["proxy_protocol_from"],
            "127.0.0.1/32",
        ]
        data["admin"]["metrics_listen"] = None
    return parse_config(data, f"{args.config} with command-line overrides")


class ReloadCheck:
    """A reload reads the file again and is refused whole when the new config is valid but
    looks cut or drops what the running one has (config.reload_problems), judged against the
    text the running policy was read from."""

    def __init__(self, args: argparse.Namespace, running_text: str) -> None:
        self.args = args
        self.accepted = running_text
        self._pending: str | None = None

    def candidate(self, running: GatewayConfig | None) -> GatewayConfig:
        """The new config; raises ConfigError. ``accept`` once it is in force."""
        text = read_config_text(self.args.config)
        candidate = effective_config(self.args, text)
        problems = reload_problems(self.accepted, text, running or candidate, candidate)
        if problems:
            raise ConfigError(str(self.args.config), problems)
        self._pending = text
        return candidate

    def accept(self) -> None:
        if self._pending is not None:
            self.accepted, self._pending = self._pending, None


def open_admin_servers(
    config: GatewayConfig, readiness: ReadinessState, prepare: Callable[[Routes], None]
) -> list[AdminServer]:
    """The admin address (API, and /metrics unless it has an address of its own) and the
    metrics address, each prepared by ``prepare``, serving. Raises OSError naming the
    address that cannot be bound (the ones already bound are closed)."""
    separate = config.admin.metrics_listen
    wanted = [(config.admin.listen, Routes(serve_metrics=separate is None))]
    if separate is not None:
        wanted.append((separate, Routes(serve_api=False)))
    servers: list[AdminServer] = []
    for address, routes in wanted:
        prepare(routes)
        host, port = split_host_port(address)
        try:
            servers.append(AdminServer(host, port, readiness, routes))
        except OSError as exc:
            for opened in servers:
                opened.stop()
            raise OSError(exc.errno, f"cannot listen on admin address {address}: {exc}") from None
    for server in servers:
        server.start()
    return servers
