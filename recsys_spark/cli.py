"""The `recsys` command: `recsys run` chains every step; each step also runs alone; `recsys serve`
answers online from the published tables (no Spark: the Spark modules load only for the others)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from recsys_spark.config import DEFAULT_CONF_DIR, TARGETS, Config, ConfigError, load_config, parse_settings
from recsys_spark.progress import setup_logging
from recsys_spark.steps import STEP_NAMES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__)
    parser.add_argument(
        "command", choices=["run", "fetch-jars", "report", "serve", *STEP_NAMES], help="what to run"
    )
    parser.add_argument("--run-id", help="report: the evaluation run to report on (default: the latest)")
    parser.add_argument("--target", default="local", choices=TARGETS, help="conf overlay (default: local)")
    parser.add_argument(
        "--conf", action="append", default=[], metavar="FILE", help="extra YAML overlay, applied last"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="settings",
        help="override one dotted key, applied after the files (e.g. --set catalog=main); value is YAML",
    )
    parser.add_argument("--host", default="127.0.0.1", help="serve: the address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="serve: the port to listen on")
    parser.add_argument(
        "--conf-dir", default=str(DEFAULT_CONF_DIR), metavar="DIR", help="folder of base.yml + overlays"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        settings = parse_settings(args.settings)
        config = load_config(args.target, conf_dir=args.conf_dir, extra_files=args.conf, overrides=settings)
    except ConfigError as exc:
        print(f"recsys: config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return _serve(config, args.host, args.port)
    try:
        for line in _run(args.command, config, args.run_id):
            print(line)
    except ConfigError as exc:  # found once running, e.g. a work_dir that cannot be written
        print(f"recsys: config error: {exc}", file=sys.stderr)
        return 2
    return 0


def _serve(config: Config, host: str, port: int) -> int:
    import uvicorn

    from recsys_spark.serving.api import Snapshots, create_app
    from recsys_spark.serving.published import NotPublishedError

    try:
        snapshots = Snapshots.of(config)
    except NotPublishedError as exc:
        print(f"recsys: nothing to serve: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(create_app(snapshots), host=host, port=port, log_level="info")
    return 0


def _run(command: str, config: Config, run_id: str | None) -> list[str]:
    from recsys_spark.io.session import fetch_delta_jars, get_spark
    from recsys_spark.pipeline import run_order, run_steps
    from recsys_spark.tracking.report import build_report, write_report

    if command == "fetch-jars":
        return [str(path) for path in fetch_delta_jars(config)]
    if command == "report":
        report = build_report(get_spark(config), config, run_id)
        return [str(write_report(report, config.work_path / "reports"))]
    return run_steps(config, run_order(config) if command == "run" else [command])


def entry_point() -> None:
    """The console script and the bundle's wheel-task entry point: ``recsys <step> [options]``.

    A Databricks wheel task calls this function and ignores what it returns, so the exit status
    is raised, never returned: a config error fails the task instead of passing silently.
    """
    raise SystemExit(main())


if __name__ == "__main__":
    entry_point()
