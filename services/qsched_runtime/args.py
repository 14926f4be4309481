"""Command-line flags shared by `qsched serve`, `qsched up` and `qsched db`.

Kept free of heavy imports: the CLI builds its parser from here on every call."""

from __future__ import annotations

import argparse
from pathlib import Path

from qsched_runtime.config import EXPORTERS, SERVICES, Endpoints, ServiceConfig, default_data_dir


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every service (and `qsched up`) understands."""
    defaults = Endpoints()
    for service in SERVICES:
        parser.add_argument(
            f"--{service}-address",
            default=defaults.of(service),
            metavar="HOST:PORT",
            help=f"where the {service} service listens (default {defaults.of(service)})",
        )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help=f"state directory (default {default_data_dir()})"
    )
    parser.add_argument("--trace-exporter", choices=EXPORTERS, default=None, help="OpenTelemetry exporter")
    parser.add_argument(
        "--database-url", default=None, help="scheduler database (default: SQLite in the data dir)"
    )
    parser.add_argument(
        "--lab-device",
        action="append",
        default=[],
        metavar="NAME=HOST:PORT",
        help="a lab device and its executor (default qick=<executor address>); repeatable",
    )


def config_from_args(service: str, args: argparse.Namespace) -> ServiceConfig:
    endpoints = Endpoints(**{s: getattr(args, f"{s}_address") for s in SERVICES})
    devices: dict[str, str] = {}
    for item in args.lab_device:
        name, sep, address = item.partition("=")
        if not sep or not name or not address:
            raise SystemExit(f"--lab-device expects NAME=HOST:PORT, got {item!r}")
        devices[name] = address
    kwargs: dict[str, object] = {"endpoints": endpoints, "lab_devices": devices}
    if args.data_dir is not None:
        kwargs["data_dir"] = args.data_dir.expanduser()
    if args.trace_exporter is not None:
        kwargs["trace_exporter"] = args.trace_exporter
    if args.database_url is not None:
        kwargs["database_url"] = args.database_url
    return ServiceConfig(service=service, **kwargs)  # type: ignore[arg-type]


def forward_args(args: argparse.Namespace) -> list[str]:
    """The flags `up` passes on to every child."""
    out: list[str] = []
    for service in SERVICES:
        out += [f"--{service}-address", getattr(args, f"{service}_address")]
    if args.data_dir is not None:
        out += ["--data-dir", str(args.data_dir)]
    if args.trace_exporter is not None:
        out += ["--trace-exporter", args.trace_exporter]
    if args.database_url is not None:
        out += ["--database-url", args.database_url]
    for device in args.lab_device:
        out += ["--lab-device", device]
    return out
