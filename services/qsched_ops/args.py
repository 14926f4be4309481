"""Command-line flags shared by `qsched serve`, `qsched up` and `qsched db`.

Kept free of heavy imports: the CLI builds its parser from here on every call."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from qsched_core.config import EXPORTERS, SERVICES, Endpoints, ServiceConfig, default_data_dir


def default_web_address() -> str:
    return os.environ.get("QSCHED_WEB_ADDRESS") or "127.0.0.1:50080"


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
        "--web-address",
        default=default_web_address(),
        metavar="HOST:PORT",
        help=f"where the web view listens, HTTP (default {default_web_address()}; docs/web.md)",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help=f"state directory (default {default_data_dir()})"
    )
    parser.add_argument("--trace-exporter", choices=EXPORTERS, default=None, help="OpenTelemetry exporter")
    parser.add_argument(
        "--database-url",
        default=None,
        help="scheduler database (default: SQLite in the data dir); with `up`, every service's database "
        "unless given its own (one PostgreSQL database holds them all)",
    )
    parser.add_argument(
        "--configs-database-url",
        default=None,
        help="config service database (default: SQLite configs.db in the data dir)",
    )
    parser.add_argument(
        "--gateway-database-url",
        default=None,
        help="gateway task registry (default: SQLite gateway/tasks.db in the data dir)",
    )
    parser.add_argument(
        "--board",
        default=None,
        metavar="sim|pyro://HOST:PORT/NAME",
        help="executor: the QICK board (default sim)",
    )
    parser.add_argument(
        "--device-model", default=None, metavar="FILE", help="executor: simulated device model"
    )
    parser.add_argument(
        "--hardware-config",
        default=None,
        metavar="FILE",
        help="executor: hardware config used when none is pinned",
    )
    parser.add_argument(
        "--data-root", default=None, metavar="DIR", help="executor: data files (default <data-dir>/data)"
    )
    parser.add_argument(
        "--data-writers",
        type=int,
        default=None,
        metavar="N",
        help="executor: processes writing run data files (default 3; 0 = a thread of the executor)",
    )
    parser.add_argument(
        "--experiment-package",
        action="append",
        default=[],
        metavar="PKG",
        help="executor: a package lab experiment plug-ins may come from; repeatable",
    )
    parser.add_argument(
        "--experiment-repo",
        default=None,
        metavar="DIR",
        help="executor: a git repository plug-ins run from, at the commit each job pins at submit",
    )
    parser.add_argument(
        "--experiment-repo-root",
        default=None,
        metavar="SUBDIR",
        help="executor: where the packages sit in the experiment repository (default: its top)",
    )
    parser.add_argument(
        "--experiment-cache",
        default=None,
        metavar="DIR",
        help="executor: where repository commits are unpacked (default <data-dir>/experiment-cache)",
    )
    parser.add_argument(
        "--dirty-tree",
        choices=("flag", "refuse"),
        default=None,
        help="executor: run code from a working tree with uncommitted changes and record it (flag, "
        "the default), or refuse it",
    )
    parser.add_argument(
        "--lock-dir", default=None, metavar="DIR", help="executor: board locks (default <data-dir>/locks)"
    )
    parser.add_argument(
        "--no-config-pinning",
        dest="pin_configs",
        action="store_false",
        help="scheduler: run lab jobs without pinning config revisions (sites without config versioning)",
    )
    parser.add_argument(
        "--no-dispatch",
        dest="dispatch",
        action="store_false",
        help="scheduler: serve the API and watchers but dispatch no device (a replica beside one that "
        "does, on one PostgreSQL database)",
    )
    security = parser.add_argument_group("security (README: Users, roles and tokens)")
    security.add_argument(
        "--identity-database-url",
        default=None,
        help="users, tokens and audit log (default: SQLite identity.db in the data dir)",
    )
    security.add_argument(
        "--tls-cert", dest="tls_cert_file", default=None, metavar="PEM", help="server certificate"
    )
    security.add_argument(
        "--tls-key", dest="tls_key_file", default=None, metavar="PEM", help="server private key"
    )
    security.add_argument(
        "--tls-client-ca",
        dest="tls_client_ca_file",
        default=None,
        metavar="PEM",
        help="require client certificates signed by this CA (mutual TLS)",
    )
    security.add_argument(
        "--tls-ca",
        dest="tls_ca_file",
        default=None,
        metavar="PEM",
        help="CA trusted when calling peer services",
    )
    security.add_argument(
        "--allow-plaintext",
        action="store_true",
        default=None,
        help="listen on a non-loopback address without TLS (a private network only)",
    )
    security.add_argument(
        "--max-queued-per-user", type=int, default=None, help="scheduler quota (default 1000)"
    )
    security.add_argument(
        "--max-payload-bytes-per-job", type=int, default=None, help="scheduler quota (default 1 MiB)"
    )
    security.add_argument(
        "--max-user-priority",
        type=int,
        default=None,
        help="above this, priority needs the operator role (default 10)",
    )
    parser.add_argument(
        "--lab-device",
        action="append",
        default=[],
        metavar="NAME=HOST:PORT",
        help="a lab device and its executor (default qick=<executor address>); repeatable",
    )


# ServiceConfig fields of the experiment repository (their flags: the names with dashes).
_EXPERIMENT_REPO = ("experiment_repo", "experiment_repo_root", "experiment_cache", "dirty_tree")

# ServiceConfig field -> flag, for the security options `up` passes on.
_SECURITY = {
    "identity_database_url": "--identity-database-url",
    "tls_cert_file": "--tls-cert",
    "tls_key_file": "--tls-key",
    "tls_client_ca_file": "--tls-client-ca",
    "tls_ca_file": "--tls-ca",
    "allow_plaintext": "--allow-plaintext",
    "max_queued_per_user": "--max-queued-per-user",
    "max_payload_bytes_per_job": "--max-payload-bytes-per-job",
    "max_user_priority": "--max-user-priority",
}


# The databases `qsched up --database-url URL` puts on that one database (each service keeps its
# own tables and version table, so they share it; docs/deployment.md).
_SHARED_DATABASE = ("configs_database_url", "gateway_database_url", "identity_database_url")


def share_database(args: argparse.Namespace) -> None:
    """`up`: every service without a database of its own uses --database-url's."""
    if args.database_url:
        for name in _SHARED_DATABASE:
            if getattr(args, name, None) is None:
                setattr(args, name, args.database_url)


def config_from_args(service: str, args: argparse.Namespace) -> ServiceConfig:
    endpoints = Endpoints(**{s: getattr(args, f"{s}_address") for s in SERVICES})
    devices: dict[str, str] = {}
    for item in args.lab_device:
        name, sep, address = item.partition("=")
        if not sep or not name or not address:
            raise SystemExit(f"--lab-device expects NAME=HOST:PORT, got {item!r}")
        devices[name] = address
    kwargs: dict[str, object] = {
        "endpoints": endpoints,
        "lab_devices": devices,
        "pin_configs": getattr(args, "pin_configs", True),
        "dispatch": getattr(args, "dispatch", True),
    }
    if args.data_dir is not None:
        kwargs["data_dir"] = args.data_dir.expanduser()
    if args.trace_exporter is not None:
        kwargs["trace_exporter"] = args.trace_exporter
    if args.database_url is not None:
        kwargs["database_url"] = args.database_url
    for name in ("configs_database_url", "gateway_database_url"):
        if getattr(args, name, None) is not None:
            kwargs[name] = getattr(args, name)
    for name in (
        "board",
        "device_model",
        "hardware_config",
        "data_root",
        "data_writers",
        "lock_dir",
        *_SECURITY,
    ):
        if getattr(args, name, None) is not None:
            kwargs[name] = getattr(args, name)
    if getattr(args, "experiment_package", None):
        kwargs["experiment_packages"] = tuple(args.experiment_package)
    for name in _EXPERIMENT_REPO:
        if getattr(args, name, None) is not None:
            kwargs[name] = getattr(args, name)
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
    for name in ("configs_database_url", "gateway_database_url"):
        if getattr(args, name, None) is not None:
            out += [f"--{name.replace('_', '-')}", getattr(args, name)]
    for device in args.lab_device:
        out += ["--lab-device", device]
    if not getattr(args, "pin_configs", True):
        out.append("--no-config-pinning")
    for name in ("board", "device_model", "hardware_config", "data_root", "data_writers", "lock_dir"):
        if getattr(args, name, None) is not None:
            out += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    for name, flag in _SECURITY.items():
        value = getattr(args, name, None)
        if value is True:
            out.append(flag)
        elif value is not None and value is not False:
            out += [flag, str(value)]
    for package in getattr(args, "experiment_package", None) or []:
        out += ["--experiment-package", package]
    for name in _EXPERIMENT_REPO:
        if getattr(args, name, None) is not None:
            out += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return out
