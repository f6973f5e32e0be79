"""Command line: `receiver serve` runs the service, `receiver check` validates a config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aiohttp import web

from receiver import __version__
from receiver.config import Config, load_config
from receiver.errors import ConfigError, ConfigErrors
from receiver.logs import configure, get_logger


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
    web.run_app(create_app(config), host=host, port=port, print=None, access_log=None)
    return 0


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
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `receiver` console script."""
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
