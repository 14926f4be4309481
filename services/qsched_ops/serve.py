"""Run one qsched service in this process until SIGINT or SIGTERM.

`qsched serve <service>` and `qsched up` (once per child) come here."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys

from qsched_core.config import SERVICES, ServiceConfig
from qsched_core.tracing import configure_tracing
from qsched_ops.args import add_common_arguments, config_from_args
from qsched_runtime.server import start_server

log = logging.getLogger("qsched.serve")
BUILDERS = {service: f"qsched_{service}.server" for service in SERVICES}
STOP_GRACE_S = 3.0


async def run(config: ServiceConfig, stop: asyncio.Event | None = None) -> None:
    configure_tracing(config.service, config.trace_exporter)
    module = importlib.import_module(BUILDERS[config.service])
    handle = await module.build(config)
    # SERVING only once started (the config service's first main seeded, the scheduler's
    # dispatchers running): readiness means a job submitted now can run.
    running = await start_server(config.listen, handle.registrations, handle.security, serving=False)
    await handle.start()
    problems = getattr(handle, "problems", None)
    await running.set_serving(problems is None or problems.ok)
    loop = asyncio.get_running_loop()
    if problems is not None:  # health follows what keeps the service from working

        async def follow() -> None:  # the state when it runs: the last task run sets the last state
            await running.set_serving(problems.ok)

        problems.subscribe(lambda _ok: loop.create_task(follow()))
    host = config.listen.rsplit(":", 1)[0]
    print(f"qsched {config.service} serving on {host}:{running.port}", flush=True)
    stop = stop or asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping %s", config.service)
    await running.stop(STOP_GRACE_S)
    await handle.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qsched serve", description="Run one qsched service.")
    parser.add_argument("service", choices=SERVICES)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return serve(args.service, args)


def serve(service: str, args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"
    )
    # Libraries' INFO chatter (migration plumbing, transpiler passes) is noise in a service log.
    for noisy in ("alembic", "qiskit", "stevedore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = config_from_args(service, args)
    try:
        asyncio.run(run(config))
    except OSError as exc:
        print(f"qsched {service}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
