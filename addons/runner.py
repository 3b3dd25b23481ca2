"""``phi-gateway run``: mitmproxy embedded with the PHI gateway addon, and nothing else.

Unlike ``mitmdump -s``, this never serves without the addon: the policy and the geo databases
are loaded before anything listens, and any failure exits non-zero. A reload (SIGHUP) that fails
keeps the last good policy.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime as dt
import errno
import gc
import logging
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from mitmproxy import exceptions
from mitmproxy.addons import (
    block,
    core,
    disable_h2c,
    dns_resolver,
    errorcheck,
    next_layer,
    proxyserver,
    strip_dns_https_records,
    tlsconfig,
    update_alt_svc,
)
from mitmproxy.master import Master
from mitmproxy.options import Options

from addons import supervisor
from addons.phi_gateway import PhiGateway
from addons.startup import ReloadCheck, TrailServices, effective_config, open_admin_servers
from gateway import cli, native
from gateway.admin import AdminServer, ReadinessState, audited_reload, record_reload
from gateway.api import Api
from gateway.config import GatewayConfig, read_config_text, split_host_port
from gateway.console.app import Console
from gateway.engine import Gateway
from gateway.entry_expiry import notices
from gateway.errors import ConfigError, StartError
from gateway.geo.locator import stale_sources
from gateway.report.job import ReportJobs
from gateway.siem.forwarder import describe_output

log = logging.getLogger("phi_gateway")
CA_FILE = "mitmproxy-ca-cert.pem"
_OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))

_REFUSED = "reload failed; the last good policy stays in force"


class _AcceptOnce:
    """A listening socket whose ``accept()`` says "nothing more" after a resource error."""

    __slots__ = ("_failed", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._failed = False

    def accept(self) -> tuple[socket.socket, Any]:
        if self._failed:
            raise BlockingIOError
        try:
            return self.sock.accept()
        except OSError as exc:
            self._failed = exc.errno in _OUT_OF_RESOURCES
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class GatewayEventLoop(asyncio.SelectorEventLoop):
    """The event loop ``phi-gateway run`` uses: asyncio's, but one out-of-descriptors error
    pauses accepting once. CPython 3.12 (gh-151615) keeps calling ``accept()`` after EMFILE
    and schedules a retry for each failure, so the retries multiply: measured, a full
    descriptor table gave 15,000 logged tracebacks a second at 88 % CPU."""

    def _accept_connection(self, protocol_factory: Any, sock: Any, *args: Any) -> None:
        if isinstance(sock, _AcceptOnce):
            sock = sock.sock
        super()._accept_connection(protocol_factory, _AcceptOnce(sock), *args)  # type: ignore[misc]

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        # Whoever handles it (mitmproxy installs its own handler) gets the error without its
        # traceback: a known condition, not a bug.
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _OUT_OF_RESOURCES:
            context = {**context, "exception": exc.with_traceback(None)}
        super().call_exception_handler(context)

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        # asyncio reports an accept() that ran out of descriptors with its traceback: a
        # known condition (the connection caps keep a reserve) says one line, rate-limited.
        exc = context.get("exception")
        if (
            isinstance(exc, OSError)
            and exc.errno in _OUT_OF_RESOURCES
            and "accept" in str(context.get("message", ""))
        ):
            log.warning("accept() out of resources (%s): new connections wait", exc.strerror)
            return
        super().default_exception_handler(context)


def mitmproxy_options(config: GatewayConfig, verbose: bool) -> dict[str, Any]:
    host, port = split_host_port(config.proxy.listen)
    options: dict[str, Any] = {
        "mode": list(config.proxy.modes),
        "listen_host": host,
        "listen_port": port,
        # Open upstream connections only once a request has been judged: a blocked request
        # never connects anywhere.
        "connection_strategy": "lazy",
        # Streamed bodies reach the server before inspection; bodies stay buffered.
        "stream_large_bodies": None,
        "block_global": not config.proxy.allow_public_clients,
        "termlog_verbosity": "info" if verbose else "warn",
    }
    if config.proxy.upstream_ca_bundle is not None:
        options["ssl_verify_upstream_trusted_ca"] = str(config.proxy.upstream_ca_bundle)
    return options


def proxy_master(confdir: Path) -> Master:
    """mitmproxy with the addons a gateway needs and no others: every hook visits every
    addon, and mitmdump's playback, rewriting, saving and scripting addons would only add
    cost (and, unused as they are, ways to write or alter traffic past the gateway)."""
    master = Master(Options(confdir=str(confdir)), with_termlog=True)
    master.addons.add(
        core.Core(),
        block.Block(),  # block_global: no open relay for public clients
        strip_dns_https_records.StripDnsHttpsRecords(),  # no ECH keys handed to clients
        disable_h2c.DisableH2C(),  # no cleartext HTTP/2 upgrade past the HTTP layer
        proxyserver.Proxyserver(),
        dns_resolver.DnsResolver(),
        next_layer.NextLayer(),
        tlsconfig.TlsConfig(),
        update_alt_svc.UpdateAltSvc(),  # reverse mode: Alt-Svc names the gateway
        errorcheck.ErrorCheck(),  # an error logged at start-up ends the start-up
    )
    return master


def banner(
    config: GatewayConfig,
    args: argparse.Namespace,
    gateway: Gateway,
    listen: list[str],
    admin: tuple[str, int],
) -> str:
    lines = [
        f"PHI egress gateway (instance {gateway.instance_id})",
        f"  proxy:   {', '.join(config.proxy.modes)} on {', '.join(listen)}",
        f"  admin:   http://{admin[0]}:{admin[1]}/api/v1/ ({len(config.admin.tokens)} token(s))",
        f"  metrics: http://{config.admin.metrics_listen or f'{admin[0]}:{admin[1]}'}"
        "/metrics  /healthz  /readyz",
        f"  policy:  {args.config} (version {gateway.policy_version}, "
        f"mode {config.policy.mode.value}, foreign PHI: {config.policy.foreign_phi_action.value}"
        f", allowed: {' '.join(config.jurisdiction.allowed_countries)})",
    ]
    locator = gateway.locator
    lines.append(f"  geo:     databases combined by {locator.rule.value}")
    lines += [f"           {db.describe()}" for db in locator.databases]
    if locator.providers is not None:
        lines.append(f"           {locator.providers.describe()}")
    lines += [
        f"  geo:     WARNING stale data: {line}"
        for line in stale_sources(locator, config.geo.max_source_age_days, dt.datetime.now(dt.UTC))
    ]
    if _redacts(config):
        secret = config.redaction.secret_env
        lines.append(
            f"  redact:  pseudonyms keyed by ${secret}"
            if gateway.secret_from_environment
            else f"  redact:  WARNING ${secret} is not set: pseudonyms change at every restart"
        )
    lines += [
        f"  CA:      {(config.proxy.confdir / CA_FILE).resolve()} "
        "(clients must trust it for HTTPS)",
        f"  audit:   {gateway.audit.location} (chain {gateway.instance_id})",
        f"  code:    {native.STATE.describe()}",
    ]
    lines += [f"  siem:    {describe_output(output)}" for output in config.siem.outputs]
    lines += [f"  policy:  WARNING {line}" for line in notices(config.policy, time.time())]
    if not gateway.audit_key_from_environment:
        lines.append(
            f"  audit:   WARNING ${config.audit.secret_env} is not set: checkpoints and payload "
            "fingerprints use a random key nobody can verify later"
        )
    return "\n".join(lines)


def _redacts(config: GatewayConfig) -> bool:
    policy = config.policy
    return policy.foreign_phi_action.value == "redact" or any(
        rule.action.value == "redact" for rule in policy.allow_destinations
    )


class _Lifecycle:
    """Marks the gateway ready once mitmproxy listens, and prints where."""

    def __init__(self, on_running: Any) -> None:
        self.on_running = on_running

    def running(self) -> None:
        self.on_running()


async def serve(
    args: argparse.Namespace,
    config: GatewayConfig,
    gateway: Gateway,
    readiness: ReadinessState,
    admins: list[AdminServer],
    *,
    running_text: str,
    services: TrailServices | None,
) -> int:
    """``running_text``: the config file as the running policy was read from it (a reload
    is checked against it)."""
    admin = admins[0]
    master = proxy_master(config.proxy.confdir)
    addon = PhiGateway(gateway)
    master.addons.add(addon)
    try:
        master.options.update(**mitmproxy_options(config, args.verbose))
    except exceptions.OptionsError as exc:
        print(f"phi-gateway: invalid proxy settings: {exc}", file=sys.stderr)
        return cli.EXIT_CONFIG

    def on_running() -> None:
        proxyserver = master.addons.get("proxyserver")
        listen = [f"{a[0]}:{a[1]}" for a in proxyserver.listen_addrs()]
        text = banner(config, args, gateway, listen, admin.address)
        print(f"{text}\n  conns:   {addon.watch.describe()}", flush=True)
        # What start-up loaded (geo databases, mitmproxy, the parsers) lives as long as
        # the process: out of the collector's sight, each full collection walks only what
        # traffic made since.
        gc.collect()
        gc.freeze()
        readiness.set_problem("proxy", None)

    master.addons.add(_Lifecycle(on_running))

    check = ReloadCheck(args, running_text)

    def reload_checked() -> GatewayConfig:
        running = addon.gateway.config if addon.gateway is not None else None
        loaded = addon.reload(lambda: check.candidate(running), str(args.config))
        check.accept()
        if services is not None and addon.gateway is not None:
            services.apply(addon.gateway)
        return loaded

    def reload() -> None:
        # A failure is logged and counted by the addon; the last good policy stays in force.
        before = current().policy_version
        try:
            loaded = reload_checked()
        except exceptions.OptionsError:
            record_reload(current(), before, by="SIGHUP", role="-", ok=False, message=_REFUSED)
        else:
            record_reload(
                current(),
                before,
                by="SIGHUP",
                role="-",
                ok=True,
                message=f"policy {loaded.version} in force",
            )

    loop = asyncio.get_running_loop()

    def reload_from_api() -> tuple[bool, str]:
        """Runs on an admin thread: the reload itself happens on the event loop."""
        done: concurrent.futures.Future[tuple[bool, str]] = concurrent.futures.Future()

        def attempt() -> None:
            try:
                loaded = reload_checked()
            except exceptions.OptionsError:
                done.set_result((False, _REFUSED))
            except Exception as exc:  # the future must always be answered
                done.set_exception(exc)
            else:
                done.set_result((True, f"policy {loaded.version} in force"))

        loop.call_soon_threadsafe(attempt)
        return done.result(timeout=60)

    def current() -> Gateway:
        assert addon.gateway is not None
        return addon.gateway

    reports = ReportJobs.from_config(config)
    reload_for = audited_reload(reload_from_api, current)
    for server in admins:
        server.routes.api = Api(current, reload_for, reports)
        if config.admin.console.enabled:
            server.routes.console = Console(current, reload_for, reports)
        if current().config.admin.metrics_require_token:
            server.routes.metrics_tokens = lambda: current().config.admin.tokens
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, master.shutdown)
    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await master.run()
    finally:
        readiness.set_problem("proxy", "stopped")
    return cli.EXIT_OK


def audit_state(readiness: ReadinessState, message: str | None, recording: bool) -> None:
    """Spooling still records every decision (ready, with a note); not recording is not ready."""
    readiness.set_problem("audit", None if recording else message)
    readiness.set_note("audit", message if recording else None)


def run(args: argparse.Namespace) -> int:
    # Records below the level shown are never created: mitmproxy logs several debug lines per
    # request, and building them costs more than the inspection itself.
    logging.getLogger().setLevel(logging.INFO if args.verbose else logging.WARNING)
    for name in ("tornado", "asyncio", "hpack", "urwid", "quic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        running_text = read_config_text(args.config)
        config = effective_config(args, running_text)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return cli.EXIT_CONFIG
    try:
        count = supervisor.worker_count(getattr(args, "workers", "1"))
    except ValueError as exc:
        print(f"phi-gateway: {exc}", file=sys.stderr)
        return cli.EXIT_CONFIG
    if count > 1 and not getattr(args, "worker", 0):
        return supervisor.run_workers(args, config, count, running_text)
    try:
        gateway = Gateway.from_config(config)
    except StartError as exc:
        print(f"phi-gateway: cannot start: {exc}", file=sys.stderr)
        return cli.EXIT_CONFIG
    gateway.publish_metrics()
    readiness = ReadinessState()
    # The store outlives reloads (a reload never moves it): /readyz says when it fails.
    gateway.audit.on_state = lambda message, recording: audit_state(readiness, message, recording)
    try:
        admins = open_admin_servers(config, readiness, lambda routes: None)
    except OSError as exc:
        print(f"phi-gateway: {exc.strerror}", file=sys.stderr)
        gateway.close()
        return cli.EXIT_FAILURE
    Path(config.proxy.confdir).mkdir(parents=True, exist_ok=True)
    services = None if getattr(args, "worker", 0) else TrailServices()
    if services is not None:
        services.apply(gateway)
    try:
        code = asyncio.run(
            serve(
                args,
                config,
                gateway,
                readiness,
                admins,
                running_text=running_text,
                services=services,
            ),
            loop_factory=GatewayEventLoop,
        )
    finally:
        if services is not None:
            services.stop()
        for server in admins:
            server.stop()
        gateway.close()
    if not gateway.audit.spooled and not gateway.audit.unwritten:
        print(
            f"phi-gateway: stopped; {gateway.audit.decided} audit event(s) of this run are "
            f"in the trail ({gateway.audit.location})",
            file=sys.stderr,
        )
    if gateway.audit.spooled:
        print(
            f"phi-gateway: {gateway.audit.spooled} decided audit event(s) are in the spool "
            f"{gateway.audit.spool.path if gateway.audit.spool else ''}: they are written to "
            "the trail at the next start",
            file=sys.stderr,
        )
    if gateway.audit.unwritten:  # never a clean exit with decided events not recorded
        print(
            f"phi-gateway: {gateway.audit.unwritten} decided audit event(s) were not written "
            "(the audit database failed)",
            file=sys.stderr,
        )
        return code or cli.EXIT_FAILURE
    return code


def main() -> int:
    return cli.main(run=run)


if __name__ == "__main__":
    sys.exit(main())
