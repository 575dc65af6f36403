"""``chatops`` command line: ``run``, ``demo``, ``policy check``, ``manifest``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from chatops.errors import ConfigError

__all__ = ["main"]


def _problems(exc: ConfigError) -> int:
    for problem in exc.problems:
        print(f"chatops: {problem}", file=sys.stderr)
    return 2


def _run() -> int:
    from chatops.app import Daemon
    from chatops.logs import configure_logging
    from chatops.settings import Settings

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        return _problems(exc)
    configure_logging(settings.log_level)
    try:
        asyncio.run(Daemon(settings).run_until_signal())
    except ConfigError as exc:
        return _problems(exc)
    except KeyboardInterrupt:
        return 130
    return 0


def _demo(args: argparse.Namespace) -> int:
    from chatops.demo import run_demo

    try:
        policy_dir = Path(os.environ.get("CHATOPS_POLICY_DIR", "policy")).resolve()
        code: int = asyncio.run(
            run_demo(policy_dir=policy_dir, severity=args.severity, service=args.service, verbose=args.verbose)
        )
        return code
    except ConfigError as exc:
        return _problems(exc)


def _policy_check(args: argparse.Namespace) -> int:
    from chatops.policy.check import run_check

    return run_check(Path(args.directory), sys.stdout, sys.stderr)


def _manifest(args: argparse.Namespace) -> int:
    import os

    from chatops.manifest import build_manifest, render_manifest
    from chatops.registry import Registry

    directory = Path(args.commands_dir or os.environ.get("CHATOPS_COMMANDS_DIR") or "commands")
    try:
        registry = Registry.discover(directory)
    except ConfigError as exc:
        return _problems(exc)
    sys.stdout.write(render_manifest(build_manifest(registry, name=args.name), args.format))
    return 0


def _timeline_export(args: argparse.Namespace) -> int:
    from chatops.settings import Settings
    from chatops.timeline.export import run_export
    from chatops.timeline.query import VALID_TYPES

    types = [t.strip().lower() for t in ",".join(args.type or []).split(",") if t.strip()] or None
    unknown = sorted(set(types or ()) - set(VALID_TYPES))
    if unknown:
        print(f"chatops: unknown event type {', '.join(unknown)}; valid: {', '.join(VALID_TYPES)}", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env(require_slack=False)
        return asyncio.run(run_export(settings, args.incident, args.format, types, sys.stdout))
    except ConfigError as exc:
        return _problems(exc)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="chatops", description="Incident response from Slack.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="run the daemon (settings from the environment)")
    demo = sub.add_parser("demo", help="run the daemon on embedded defaults against the sandbox and declare once")
    demo.add_argument("--severity", default="sev2")
    demo.add_argument("--service", default="checkout")
    demo.add_argument("--verbose", action="store_true", help="show the daemon's JSON logs")
    policy = sub.add_parser("policy", help="policy tools")
    policy_sub = policy.add_subparsers(dest="policy_cmd", required=True)
    check = policy_sub.add_parser("check", help="validate a policy folder (exit 1 on problems)")
    check.add_argument("directory", nargs="?", default="policy")
    manifest = sub.add_parser("manifest", help="print the Slack app manifest (slash commands from the registry)")
    manifest.add_argument("--format", choices=("yaml", "json"), default="yaml")
    manifest.add_argument("--name", default="chatops", help="the app's and bot user's display name")
    manifest.add_argument("--commands-dir", help="command modules (default: $CHATOPS_COMMANDS_DIR or ./commands)")
    timeline = sub.add_parser("timeline", help="timeline tools")
    timeline_sub = timeline.add_subparsers(dest="timeline_cmd", required=True)
    export = timeline_sub.add_parser("export", help="print an incident's timeline (for post-mortem authors)")
    export.add_argument("incident", help="the incident id, e.g. inc-2026-04-22-0247-checkout")
    export.add_argument("--format", choices=("jsonl", "md"), default="jsonl")
    export.add_argument("--type", action="append", help="only these event types (comma-separated or repeated)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``chatops`` script."""
    args = build_parser().parse_args(argv)
    if args.cmd == "run":
        return _run()
    if args.cmd == "demo":
        return _demo(args)
    if args.cmd == "policy":
        return _policy_check(args)
    if args.cmd == "manifest":
        return _manifest(args)
    if args.cmd == "timeline":
        return _timeline_export(args)
    return 2  # pragma: no cover - argparse enforces the choices


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
