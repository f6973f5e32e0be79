"""Command line: `serve` runs the service, `check` validates a config, `run` tries a playbook."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import ssl
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from receiver import __version__
from receiver.auth import TlsSettings
from receiver.config import Config, load_config
from receiver.dryrun import dry_run
from receiver.errors import ConfigError, ConfigErrors, PayloadError, StoreUnavailable
from receiver.logs import configure, get_logger
from receiver.models import Alert, parse_payload
from receiver.routetest import RouteRow, StoreState, as_json, as_text, explain, read_state
from receiver.rules import RouteDecision, route
from receiver.states import ExecutionStatus


def _load(args: argparse.Namespace) -> Config | None:
    try:
        return load_config(
            args.config,
            store_override=getattr(args, "store", None),
            listen_override=getattr(args, "listen", None),
        )
    except ConfigErrors as e:
        print(f"receiver: the configuration has {len(e.errors)} error(s):", file=sys.stderr)
        for err in e.errors:
            print(f"  {err}", file=sys.stderr)
    except ConfigError as e:
        print(f"receiver: {e}", file=sys.stderr)
    return None


def cmd_check(args: argparse.Namespace) -> int:
    """Load the config, rules and playbooks and report every error; exit 1 if any."""
    config = _load(args)
    if config is None:
        return 1
    print(f"ok: {len(config.rules)} rule(s), {len(config.playbooks)} playbook(s); store {config.store_url}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the webhook receiver, its workers and its API until SIGINT or SIGTERM."""
    configure(json={"json": True, "console": False}.get(args.log_format), level=args.log_level)
    config = _load(args)
    if config is None:
        return 1
    from receiver.app import create_app

    host, port = config.settings.host_port()
    get_logger().info(
        "receiver.starting",
        version=__version__,
        listen=f"{host}:{port}",
        store=config.store_url.split("@")[-1],
        rules=len(config.rules),
        playbooks=len(config.playbooks),
    )
    try:
        app = create_app(
            config,
            load=lambda: load_config(args.config, store_override=args.store, listen_override=args.listen),
            sighup=True,
        )
    except ConfigError as e:  # the store URL, checked when the store is opened
        print(f"receiver: {e}", file=sys.stderr)
        return 1
    # Everything loaded so far lives as long as the process: keep the collector from walking it
    # again at every full collection (a webhook allocates many short-lived objects).
    gc.freeze()
    web.run_app(
        app,
        host=host,
        port=port,
        print=None,
        access_log=None,
        ssl_context=_ssl_context(config.settings.tls) if config.settings.tls else None,
    )
    return 0


def _ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """HTTPS with the configured certificate; with client_ca_file, client certificates required."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file is not None:
        ctx.load_verify_locations(tls.client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _read_alert(path: Path) -> Alert:
    """The first alert of a webhook payload file, or a file holding one alert."""
    body = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(body, dict) and "alerts" not in body:
        body = {"alerts": [body]}
    return parse_payload(body).alerts[0]


def cmd_run(args: argparse.Namespace) -> int:
    """Show what a playbook would do for an alert (--dry-run), or run it here and print the result."""
    configure(json=False, level="warning", stream=sys.stderr)  # stdout carries the result
    config = _load(args)
    if config is None:
        return 1
    playbook = config.playbooks.get(args.playbook)
    if playbook is None:
        print(
            f"receiver: no playbook {args.playbook!r} (loaded: {', '.join(sorted(config.playbooks))})",
            file=sys.stderr,
        )
        return 1
    try:
        alert = _read_alert(args.alert)
    except (OSError, ValueError, PayloadError) as e:
        print(f"receiver: --alert {args.alert}: {e}", file=sys.stderr)
        return 1
    if alert.status != "firing":
        print(
            f"receiver: --alert {args.alert}: the alert is {alert.status}; playbooks run for firing alerts",
            file=sys.stderr,
        )
        return 1
    rule, params = "(none)", {}
    for d in route(alert, config.rules):
        if isinstance(d, RouteDecision) and d.playbook == playbook.name:
            rule, params = d.rule, dict(d.params)
            break
    for kv in args.param:
        key, sep, value = kv.partition("=")
        if not sep:
            print(f"receiver: --param {kv!r}: expected NAME=VALUE", file=sys.stderr)
            return 1
        params[key] = value
    if args.dry_run:
        print(f"playbook {playbook.name}: rule {rule}, params {json.dumps(params)}")
        for step in dry_run(playbook, alert, params, rule):
            state = {True: "runs", False: "skips", None: "decided at run time"}[step.runs]
            needs = ", ".join(step.needs) or "-"
            print(f"  {step.id} [{step.action}] needs: {needs}; {state}")
            if step.with_ is not None:
                print(f"    with: {json.dumps(step.with_)}")
            if step.note:
                print(f"    note: {step.note}")
        return 0
    return asyncio.run(_run_here(config, playbook.name, alert, params, rule, approve=args.approve))


async def _run_here(
    config: Config, playbook: str, alert: Alert, params: dict[str, str], rule: str, *, approve: bool
) -> int:
    """Run one playbook in this process on a throwaway in-memory store; print the execution.

    An approval step stops the run there (exit 2, status waiting_approval) unless `approve`.
    """
    from receiver.engine import Engine
    from receiver.execution import Verdict
    from receiver.metrics import Metrics
    from receiver.store.sqlite import SQLiteStore

    store = SQLiteStore(":memory:")
    engine = Engine(config=config, store=store, metrics=Metrics(), consumer="cli")
    try:
        meta = await engine.enqueue(alert=alert, rule=rule, playbook=playbook, params=params)
        while True:
            claimed = await store.claim("cli", 1.0)
            assert claimed is not None and claimed.id == meta.id
            status = await engine.execute(claimed, "cli")
            if status is not ExecutionStatus.WAITING_APPROVAL or not approve:
                break
            await engine.decide(meta.id, Verdict.APPROVED, by="receiver run --approve")
        done = await store.get(meta.id)
        assert done is not None
        print(json.dumps(done.detail(), indent=2))
    finally:
        await store.close()
    return 0 if status is ExecutionStatus.SUCCEEDED else 2


def cmd_route_test(args: argparse.Namespace) -> int:
    """Show which rules an alert matches, in order, what each would run with which params, and
    whether admission would suppress it now. Exit 0 when a rule matches, 1 when none does, 2 when
    the config or the alert is bad."""
    configure(json=False, level="warning", stream=sys.stderr)
    config = _load(args)
    if config is None:
        return 2
    try:
        alert = _alert_for_route_test(args.alert, args.labels)
    except (OSError, ValueError, PayloadError) as e:
        print(f"receiver: {e}", file=sys.stderr)
        return 2
    rows = explain(alert, config.rules, config.playbooks)
    state = None
    if not args.offline:
        try:
            state = asyncio.run(_store_state(config, alert, rows))
        except StoreUnavailable as e:
            print(f"receiver: the store was not consulted: {e}", file=sys.stderr)
        except ConfigError as e:
            print(f"receiver: {e}", file=sys.stderr)
            return 2
    print(json.dumps(as_json(alert, rows, state), indent=2) if args.json else as_text(alert, rows, state))
    return 0 if rows else 1


def _alert_for_route_test(path: Path | None, labels: list[str]) -> Alert:
    """The alert of --alert FILE, or a firing alert with these NAME=VALUE labels, starting now."""
    if path is not None:
        if labels:
            raise ValueError("give labels or --alert, not both")
        try:
            return _read_alert(path)
        except (OSError, ValueError, PayloadError) as e:
            raise ValueError(f"--alert {path}: {e}") from e
    if not labels:
        raise ValueError("give the alert's labels as NAME=VALUE, or --alert FILE")
    parsed: dict[str, str] = {}
    for kv in labels:
        name, sep, value = kv.partition("=")
        if not sep or not name:
            raise ValueError(f"label {kv!r}: expected NAME=VALUE")
        parsed[name] = value.strip('"')
    body = {"alerts": [{"status": "firing", "labels": parsed, "startsAt": datetime.now(UTC).isoformat()}]}
    return parse_payload(body).alerts[0]


async def _store_state(config: Config, alert: Alert, rows: list[RouteRow]) -> StoreState:
    """What the configured store knows now about this alert and these rules (reads only)."""
    from receiver.store import open_store

    store = open_store(config.store_url, limits=config.settings.limits())
    try:
        return await read_state(store, alert, rows, time.time())
    finally:
        await store.close()


def parser() -> argparse.ArgumentParser:
    """The argument parser."""
    p = argparse.ArgumentParser(prog="receiver", description="Alertmanager remediation receiver")
    p.add_argument("--version", action="version", version=f"receiver {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the receiver")
    serve.add_argument("--config", type=Path, help="main config file (YAML); defaults apply without it")
    serve.add_argument("--store", help="store URL, overriding the config (redis://..., sqlite:///PATH)")
    serve.add_argument("--listen", help="HOST:PORT to listen on, overriding the config")
    serve.add_argument("--log-format", choices=["auto", "json", "console"], default="auto")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check", help="validate the config, rules and playbooks, then exit")
    check.add_argument("--config", type=Path, help="main config file (YAML)")
    check.set_defaults(func=cmd_check)

    run = sub.add_parser("run", help="show what a playbook would do for an alert, or run it here")
    run.add_argument("playbook", help="playbook name")
    run.add_argument("--config", type=Path, help="main config file (YAML)")
    run.add_argument(
        "--alert", type=Path, required=True, help="a webhook payload (its first alert) or one alert, JSON"
    )
    run.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="set or override a param"
    )
    run.add_argument("--dry-run", action="store_true", help="render the plan; run nothing")
    run.add_argument(
        "--approve", action="store_true", help="approve every approval step (else the run stops there)"
    )
    run.set_defaults(func=cmd_run)

    rt = sub.add_parser(
        "route-test", help="show which rules an alert matches and whether it would run now (like amtool)"
    )
    rt.add_argument("labels", nargs="*", metavar="NAME=VALUE", help="the alert's labels")
    rt.add_argument("--config", type=Path, help="main config file (YAML)")
    rt.add_argument("--store", help="store URL to consult, overriding the config")
    rt.add_argument("--alert", type=Path, help="a webhook payload (its first alert) or one alert, JSON")
    rt.add_argument("--offline", action="store_true", help="routing only; do not read the store")
    rt.add_argument("--json", action="store_true", help="print the report as JSON")
    rt.set_defaults(func=cmd_route_test)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `receiver` console script."""
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
