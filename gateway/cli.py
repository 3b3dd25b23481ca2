"""The ``phi-gateway`` command: run, check-config, geo lookup, policy explain, audit
list/verify/fingerprint, report.

``run`` needs mitmproxy, which only ``addons/`` may import: the entry point in
``addons.runner`` hands its server function in, keeping imports pointing one way.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import ipaddress
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway import entry_expiry
from gateway.api_auth import new_token
from gateway.audit.backend import AuditBackend
from gateway.audit.chain import fingerprint
from gateway.audit.factory import (
    audit_secret,
    checkpoint_key,
    checkpoint_log_path,
    fingerprint_key,
    open_backend,
    pending_files,
    spool_path,
    worker_checkpoint_logs,
)
from gateway.audit.query import parse_period
from gateway.audit.spool import read_events, spooled_events
from gateway.audit.store import AuditStore
from gateway.audit.verify import verify
from gateway.audit.workflow import CHANGES, CLOSED
from gateway.config import (
    ApiToken,
    GatewayConfig,
    changed_keys,
    load_config,
    parse_config,
    parse_config_text,
    read_config_text,
    reload_problems,
    split_host_port,
)
from gateway.demo.run import add_parser as add_demo_parser
from gateway.errors import (
    AuditError,
    ConfigError,
    GeoDatabaseError,
    ProviderDataError,
    QueryError,
    RangesError,
)
from gateway.geo import Locator
from gateway.geo.locator import stale_sources
from gateway.geo.providers import PROVIDERS
from gateway.geo.ranges import ProviderRanges
from gateway.geo.resolver import Resolver
from gateway.geo.update import update_ranges
from gateway.model import Destination, host_and_port
from gateway.policy import effective_location, explain
from gateway.report import FORMATS
from gateway.report.job import write_report

DEFAULT_CONFIG = Path("configs/gateway.yaml")
EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2

RunFunction = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phi-gateway",
        description="Egress gateway that stops PHI from leaving US jurisdiction.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the proxy and the admin server")
    run.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    run.add_argument("--listen", metavar="HOST:PORT", help="proxy address (overrides config)")
    run.add_argument("--admin", metavar="HOST:PORT", help="admin address (overrides config)")
    run.add_argument(
        "--mode",
        action="append",
        metavar="MODE",
        help="mitmproxy mode (regular, reverse:URL, transparent, socks5, ...); "
        "repeatable; overrides proxy.modes",
    )
    run.add_argument("--verbose", action="store_true", help="log every connection")
    run.add_argument(
        "--workers",
        default="1",
        metavar="N",
        help="proxy worker processes behind HAProxy (a number, or auto: one per core); "
        "default 1: one process, no HAProxy",
    )
    # One worker of run --workers (started by the supervisor, never by hand).
    run.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)

    check = sub.add_parser("check-config", help="validate a config file and what it references")
    check.add_argument("file", type=Path)
    check.add_argument(
        "--against",
        type=Path,
        metavar="RUNNING",
        help="the config in force: say which keys would change and whether a reload "
        "(SIGHUP) would take the file",
    )

    geo = sub.add_parser("geo", help="geolocation tools")
    geo_sub = geo.add_subparsers(dest="geo_command", required=True)
    lookup = geo_sub.add_parser("lookup", help="where is an address or host, legally?")
    lookup.add_argument("target", metavar="IP|HOST")
    lookup.add_argument("--config", type=Path, default=None)
    policy = sub.add_parser("policy", help="policy tools")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    explain_cmd = policy_sub.add_parser(
        "explain", help="which rule decides a client's messages to a destination, and why"
    )
    explain_cmd.add_argument("--client", required=True, type=_client_ip, metavar="IP")
    explain_cmd.add_argument(
        "--destination", required=True, metavar="HOST[:PORT]", help="port default 443"
    )
    explain_cmd.add_argument("--config", type=Path, default=None)
    update = geo_sub.add_parser(
        "update",
        help="refresh the cloud-provider ranges from lists you downloaded",
        description="Replace the named providers' prefixes in the provider ranges file "
        "(geo.provider_ranges, or --output); providers not named keep theirs. Regions are "
        "mapped with the table stored in the file, or --regions FILE "
        "(provider<TAB>region<TAB>country, ZZ for anycast/global).",
    )
    for provider, what in (
        ("aws", "ip-ranges.json"),
        ("gcp", "cloud.json"),
        ("azure", "ServiceTags_Public_*.json"),
        ("oracle", "public_ip_ranges.json"),
        ("cloudflare", "ips-v4 and ips-v6 concatenated"),
    ):
        update.add_argument(f"--{provider}", type=Path, metavar="FILE", help=what)
    update.add_argument("--regions", type=Path, metavar="TSV", help="region → country table")
    update.add_argument(
        "--date",
        type=_date,
        metavar="YYYY-MM-DD",
        help="download date for files that carry none (Azure, Cloudflare); default: today",
    )
    update.add_argument("--config", type=Path, default=None)
    update.add_argument(
        "-o", "--output", type=Path, help="write here (default: geo.provider_ranges)"
    )

    audit = sub.add_parser("audit", help="audit trail tools")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    listing = audit_sub.add_parser("list", help="show the most recent audit events")
    listing.add_argument("--config", type=Path, default=None)
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    check = audit_sub.add_parser(
        "verify", help="check the hash chains and keyed checkpoints: intact, or the first problem"
    )
    check.add_argument("--config", type=Path, default=None)
    check.add_argument("--json", action="store_true", help="the result as one JSON object")
    check.add_argument(
        "--checkpoints",
        type=Path,
        action="append",
        metavar="FILE",
        help="checkpoint log to check the chains against (repeatable, e.g. one per PostgreSQL "
        "instance); default: the configured audit.checkpoint_log",
    )
    fp = audit_sub.add_parser(
        "fingerprint", help="the keyed fingerprint of a message file, to match an audit event"
    )
    fp.add_argument("file", type=Path)
    fp.add_argument("--config", type=Path, default=None)
    admin = sub.add_parser("admin", help="admin API tools")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    token = admin_sub.add_parser(
        "token", help="make a bearer token; prints it once and the line for admin.tokens"
    )
    token.add_argument("--name", required=True, help="who holds it (recorded with every use)")
    token.add_argument("--role", choices=("auditor", "analyst", "admin"), default="auditor")
    inc = sub.add_parser(
        "incident",
        help="the incident workflow, through the running gateway's admin API (analyst role)",
    )
    inc.add_argument("change", choices=("show", *CHANGES))
    inc.add_argument("incident_id")
    inc.add_argument("--disposition", choices=CLOSED, default="", help="close: how it ended")
    inc.add_argument("--assignee", default="", help="assign: who takes it")
    inc.add_argument("--comment", default="", help="free text, kept in the trail only")
    inc.add_argument(
        "--token-env",
        default="PHI_GATEWAY_TOKEN",
        help="environment variable holding the bearer token (default PHI_GATEWAY_TOKEN)",
    )
    inc.add_argument("--admin", metavar="HOST:PORT", help="the admin address (default: config)")
    inc.add_argument("--config", type=Path, default=None)
    report = sub.add_parser(
        "report", help="block report for auditors: summary, timeline, incidents, verification"
    )
    report.add_argument("--from", dest="first", metavar="YYYY-MM-DD", help="default: 30 days ago")
    report.add_argument("--to", dest="last", metavar="YYYY-MM-DD", help="default: today (UTC)")
    report.add_argument("--format", choices=FORMATS, default="html")
    report.add_argument("--out", type=Path, help="file to write (default: standard output)")
    report.add_argument("--config", type=Path, default=None)
    add_demo_parser(sub)
    return parser


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _client_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None


def _config_or_default(path: Path | None) -> GatewayConfig:
    if path is not None:
        return load_config(path)
    if DEFAULT_CONFIG.is_file():
        return load_config(DEFAULT_CONFIG)
    return parse_config({})


def check_config(path: Path, against: Path | None = None) -> int:
    try:
        text = read_config_text(path)
        config = parse_config_text(text, str(path))
        if against is not None:
            running_text = read_config_text(against)
            running = parse_config_text(running_text, str(against))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    problems: list[tuple[str, str]] = []
    if against is not None:
        changed = changed_keys(running, config)
        print(f"against {against}: " + (", ".join(changed) if changed else "no key changes"))
        problems += reload_problems(running_text, text, running, config)
    for index, db in enumerate(config.geo.databases):
        try:
            Locator.from_config(
                config.jurisdiction.allowed_countries,
                config.geo.model_copy(update={"databases": (db,), "provider_ranges": None}),
            ).close()
        except GeoDatabaseError as exc:
            problems.append((f"geo.databases[{index}].path", str(exc)))
    if config.geo.provider_ranges is not None:
        try:
            ProviderRanges.load(config.geo.provider_ranges)
        except RangesError as exc:
            problems.append(("geo.provider_ranges", str(exc)))
    if (
        config.audit.backend == "sqlite"
        and not config.audit.database.parent.exists()
        and not _creatable(config.audit.database.parent)
    ):
        problems.append(
            (
                "audit.database",
                f"directory {config.audit.database.parent} does not exist and cannot be created",
            )
        )
    if config.ocr.enabled:
        from gateway.formats.ocr import ocr_problem

        if problem := ocr_problem(config.ocr.languages):
            problems.append(("ocr.enabled", problem))
    if problems:
        print(ConfigError(str(path), problems), file=sys.stderr)
        return EXIT_CONFIG
    try:
        locator = Locator.from_config(config.jurisdiction.allowed_countries, config.geo)
        for line in stale_sources(locator, config.geo.max_source_age_days, _now()):
            print(f"warning: stale geo data: {line}", file=sys.stderr)
        locator.close()
    except GeoDatabaseError:  # reported above
        pass
    for line in entry_expiry.notices(config.policy, time.time()):
        print(f"warning: policy entry {line}", file=sys.stderr)
    print(
        f"{path}: OK (policy version {config.version}, mode {config.policy.mode.value}, "
        f"{len(config.geo.databases)} geo database(s), "
        f"allowed: {', '.join(config.jurisdiction.allowed_countries)})"
    )
    return EXIT_OK


def _creatable(directory: Path) -> bool:
    parent = directory
    while not parent.exists():
        parent = parent.parent
    return parent.is_dir() and bool(parent.stat().st_mode & 0o200)


def geo_lookup(target: str, config_path: Path | None) -> int:
    try:
        config = _config_or_default(config_path)
        locator = Locator.from_config(config.jurisdiction.allowed_countries, config.geo)
    except (ConfigError, GeoDatabaseError) as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    addresses = Resolver(0).resolve_sync(target)
    destination = Destination(target, 0, tuple(locator.locate(a) for a in addresses))
    print(f"{target}:")
    if not addresses:
        print("  does not resolve: location unknown")
    for judged in destination.addresses:
        print(
            f"  {judged.ip}: {judged.country_label} ({judged.location.value}, by {judged.reason})"
        )
        print(f"    rule: {judged.rule}")
        if judged.disagreement:
            print(f"    sources disagree ({judged.disagreement})")
        for answer in judged.evidence:
            detail = f" [{answer.detail}]" if answer.detail else ""
            version = f" (data {answer.version})" if answer.version else ""
            print(f"    {answer.source}: {answer.country or 'no answer'}{detail}{version}")
    verdict = effective_location(destination, config)
    print(
        f"jurisdiction verdict: {verdict.value}"
        + (
            f" (unknown treated as configured by {_treated_by(destination)})"
            if any(j.location.value == "unknown" for j in destination.addresses) or not addresses
            else ""
        )
    )
    print(f"databases (combined by {locator.rule.value}):")
    for db in locator.databases:
        print(f"  {db.describe()}")
    if locator.providers is not None:
        print(f"provider lists: {locator.providers.describe()}")
    for line in stale_sources(locator, config.geo.max_source_age_days, _now()):
        print(f"warning: stale geo data: {line}")
    locator.close()
    return EXIT_OK


def policy_explain(client: str, target: str, config_path: Path | None) -> int:
    try:
        config = _config_or_default(config_path)
        locator = Locator.from_config(config.jurisdiction.allowed_countries, config.geo)
    except (ConfigError, GeoDatabaseError) as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    host, port = host_and_port(target)
    addresses = Resolver(0).resolve_sync(host)
    destination = Destination(host, port, tuple(locator.locate(a) for a in addresses))
    locator.close()
    found = explain(destination, config, client)
    groups = f" (client groups: {', '.join(found.groups)})" if found.groups else ""
    print(f"client {client}{groups} -> {host}:{port}")
    if not addresses:
        print("  does not resolve: location unknown")
    for judged in destination.addresses:
        print(
            f"  {judged.ip}: {judged.country_label} ({judged.location.value}, by {judged.reason})"
        )
    print(f"  location as the policy treats it: {found.location.value}")
    print("entries (deny before allow; the first that applies decides):")
    if not found.entries:
        print("  none")
    for entry in found.entries:
        print(f"  {entry_expiry.describe(entry.key, entry.rule)}: {entry.describe()}")
    mode = config.policy.mode.value
    print(f"decision by what the payload holds (mode {mode}):")
    for payload, verdict in found.verdicts:
        action = verdict.action.value if verdict.enforced else f"monitor ({verdict.action.value})"
        print(f"  {payload + ':':<22}{action} by {verdict.rule}: {verdict.reason}")
    return EXIT_OK


def _treated_by(destination: Destination) -> str:
    reasons = {j.reason for j in destination.addresses if j.location.value == "unknown"}
    keys = ["geo.anycast"] if "anycast" in reasons else []
    if reasons - {"anycast"} or not destination.addresses:
        keys.append("geo.unknown")
    return " and ".join(keys)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def geo_update(args: argparse.Namespace) -> int:
    files = {p: getattr(args, p) for p in PROVIDERS if getattr(args, p) is not None}
    if not files and args.regions is None:
        print("geo update: name at least one list (--aws, --gcp, --azure, ...)", file=sys.stderr)
        return EXIT_CONFIG
    try:
        config = _config_or_default(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    output: Path | None = args.output or config.geo.provider_ranges
    if output is None:
        print("geo update: geo.provider_ranges is null: give --output FILE", file=sys.stderr)
        return EXIT_CONFIG
    date = args.date or _now().date()
    try:
        ranges = update_ranges(
            output,
            files,
            base=config.geo.provider_ranges,
            region_table=args.regions,
            dates={"azure": date, "cloudflare": date},
        )
    except (ProviderDataError, RangesError) as exc:
        print(f"geo update: {exc}", file=sys.stderr)
        for region in getattr(exc, "unmapped", ()):
            print(f"  no country for region {region}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"wrote {output}: {len(ranges.entries)} prefixes")
    for name, info in sorted(ranges.sources.items()):
        when = info.date.isoformat() if info.date else "undated"
        mark = " (updated)" if name in files else ""
        print(f"  {name}: {info.prefixes} prefixes, {when}{mark}")
    print("restart the gateway (or send SIGHUP) to use it")
    return EXIT_OK


def audit_list(config_path: Path | None, limit: int, as_json: bool) -> int:
    try:
        config = _config_or_default(config_path)
        store = AuditStore(open_backend(config.audit))
        rows = store.recent(limit)
    except (ConfigError, AuditError) as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return EXIT_OK
    if not rows:
        print(f"no audit events in {store.location}")
    for row in reversed(rows):
        print(
            f"{row['time']}  {row['incident_id']}  {row['action']:<7} {row['rule']:<14} "
            f"{row['client']} -> {row['host']}:{row['port']} [{row['ip']} {row['country']}]  "
            f"{row['format']} {row['message_type']}  {row['categories']}"
        )
    return EXIT_OK


def _journal_events_not_written(backend: AuditBackend, journals: list[Path]) -> int:
    """Events in the journals that the trail does not hold (by incident id)."""
    ids = sorted({e.incident_id for path in journals if path.is_file() for e in read_events(path)})
    if not ids:
        return 0
    conn = backend.connect()
    try:
        return len(ids) - len(backend.written(conn, ids))
    finally:
        conn.close()


def audit_verify(config_path: Path | None, as_json: bool, logs: list[Path] | None = None) -> int:
    """Exit 0: every chain intact and complete, every checkpoint genuine and the checkpoint
    log read; 1: tampered, incomplete (decided events never written), or unverifiable (no site
    secret to check the checkpoints with, no checkpoint log)."""
    try:
        config = _config_or_default(config_path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    missing_log = ""
    if logs is None:
        default = checkpoint_log_path(config.audit)
        logs = [default] if default.is_file() else []
        missing_log = "" if logs else str(default)
        logs += worker_checkpoint_logs(config.audit)  # run --workers: one per worker
    for log in logs:
        if not log.is_file():
            print(f"{log}: no such checkpoint log", file=sys.stderr)
            return EXIT_CONFIG
    try:
        backend = open_backend(config.audit)
        result = verify(backend, checkpoint_key(config.audit), checkpoint_logs=logs)
    except AuditError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"audit verify: cannot read a checkpoint log: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # a driver error while reading: the trail is not verified
        print(
            f"audit verify: cannot read {config.audit.backend} audit database: {exc}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    spools, journals = pending_files(config.audit)
    spooled = sum(spooled_events(path) for path in spools)
    try:
        unjournaled = _journal_events_not_written(backend, journals)
    except Exception as exc:  # a driver error while reading: reported, the rest stands
        print(f"audit verify: cannot compare the journals with the trail: {exc}", file=sys.stderr)
        unjournaled = 0
    if as_json:
        print(
            json.dumps(
                result.as_dict()
                | {
                    "missing_checkpoint_log": missing_log,
                    "spooled": spooled,
                    "journaled_not_written": unjournaled,
                }
            )
        )
    else:
        print(f"{backend.location}:")
        print(result.describe())
        if spooled:
            print(
                f"{spooled} decided event(s) wait in the spool(s) beside "
                f"{spool_path(config.audit)} for the audit database (written when it takes them)"
            )
        if unjournaled:
            print(
                f"{unjournaled} decided event(s) are in a journal beside "
                f"{spool_path(config.audit)} and not in the trail: a gateway or worker that "
                "was killed writes them when it starts again"
            )
        if not result.keyed:
            print(f"set ${config.audit.secret_env} to the site secret to verify checkpoints")
        if missing_log:
            print(
                f"NOT checked against a checkpoint log: {missing_log} does not exist (deleting "
                "the last events and the checkpoint rows would go unnoticed); give "
                "--checkpoints FILE, e.g. the copy shipped elsewhere"
            )
    good = result.intact and result.complete and result.keyed and not missing_log
    return EXIT_OK if good else EXIT_FAILURE


def audit_fingerprint(path: Path, config_path: Path | None) -> int:
    try:
        config = _config_or_default(config_path)
        payload = path.read_bytes()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"{path}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    secret = audit_secret(config.audit)
    if secret is None:
        print(f"${config.audit.secret_env} is not set: no key to fingerprint with", file=sys.stderr)
        return EXIT_FAILURE
    print(fingerprint(fingerprint_key(secret), payload))
    return EXIT_OK


def block_report(args: argparse.Namespace) -> int:
    """Exit 0 with the report written; 1 when the chain is not intact (the report says so)."""
    try:
        config = _config_or_default(args.config)
        period = parse_period(args.first, args.last)
        out = io.BytesIO()
        report = write_report(config, period, args.format, out)
    except (ConfigError, AuditError, QueryError) as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"report: cannot read a checkpoint log: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    content = out.getvalue()
    if args.out is None:
        sys.stdout.buffer.write(content)
    else:
        try:
            args.out.write_bytes(content)
        except OSError as exc:
            print(f"{args.out}: {exc.strerror}", file=sys.stderr)
            return EXIT_FAILURE
        print(
            f"{args.out}: {args.format} block report {period.since} to {period.last}, "
            f"{len(report.incidents)} incident(s), chain "
            f"{'intact' if report.verification.intact else 'TAMPERED'}",
            file=sys.stderr,
        )
    return EXIT_OK if report.verification.intact else EXIT_FAILURE


def admin_token(name: str, role: str) -> int:
    try:
        ApiToken(name=name, role=role, sha256="0" * 64)  # type: ignore[arg-type]
    except ValueError:
        print(f"token name {name!r}: letters, digits and ._@- only", file=sys.stderr)
        return EXIT_CONFIG
    token, digest = new_token()
    print(f"token (give it to {name}; it is not stored anywhere): {token}")
    print("add under admin.tokens in the config:")
    print(f"  - {{name: {name}, role: {role}, sha256: {digest}}}")
    return EXIT_OK


def incident_change(args: argparse.Namespace) -> int:
    """Show an incident, or change its workflow state, as an API client of the running
    gateway (its admin address from the config): one writer of the trail, the API's roles."""
    try:
        config = _config_or_default(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    token = os.environ.get(args.token_env, "")
    if not token:
        print(f"phi-gateway incident: set ${args.token_env} to an API token", file=sys.stderr)
        return EXIT_CONFIG
    host, port = split_host_port(args.admin or config.admin.listen)
    base = f"http://{host if ':' not in host else f'[{host}]'}:{port}/api/v1/incidents/"
    url = base + urllib.parse.quote(args.incident_id, safe="")
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if args.change != "show":
        url += "/workflow"
        fields = {"change": args.change}
        for name in ("disposition", "assignee", "comment"):
            if getattr(args, name):
                fields[name] = getattr(args, name)
        data = json.dumps(fields).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            body = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error", "")
        except ValueError:
            reason = ""
        print(f"phi-gateway incident: {exc.code} {reason}".rstrip(), file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        print(f"phi-gateway incident: cannot reach {base}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.change == "show":
        workflow = body.get("workflow", {})
        print(f"{body['incident_id']}  {body['action']} {body['rule']}  state {workflow['state']}")
        for item in workflow.get("history", []):
            print(
                f"  {item['time']}  {item['by']}: {item['change']} {item['from']} -> {item['to']}"
            )
    else:
        print(f"{body['incident_id']}: {body['from']} -> {body['state']} ({body['event_id']})")
    return EXIT_OK


def main(argv: Sequence[str] | None = None, run: RunFunction | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        if run is None:
            print("phi-gateway run: no proxy runner available", file=sys.stderr)
            return EXIT_FAILURE
        return run(args)
    if args.command == "check-config":
        return check_config(args.file, args.against)
    if args.command == "geo" and args.geo_command == "update":
        return geo_update(args)
    if args.command == "geo":
        return geo_lookup(args.target, args.config)
    if args.command == "policy":
        return policy_explain(args.client, args.destination, args.config)
    if args.command == "admin":
        return admin_token(args.name, args.role)
    if args.command == "report":
        return block_report(args)
    if args.command == "incident":
        return incident_change(args)
    if args.command == "demo":
        from gateway.demo.run import run_demo

        return run_demo(args)
    if args.command == "audit":
        if args.audit_command == "verify":
            return audit_verify(args.config, args.json, args.checkpoints)
        if args.audit_command == "fingerprint":
            return audit_fingerprint(args.file, args.config)
        return audit_list(args.config, args.limit, args.json)
    return EXIT_FAILURE
