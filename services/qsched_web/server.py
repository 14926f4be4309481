"""`qsched serve web` (and the web child of `qsched up`): the web view on its own HTTP port."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from aiohttp import web

from qsched.connection import scheduler_address
from qsched_web.app import build_app

DEFAULT_ADDRESS = "127.0.0.1:50080"


async def run(
    listen: str, scheduler: str, cache_dir: Path, instance: str = "", stop: asyncio.Event | None = None
) -> None:
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(build_app(scheduler, cache_dir, instance), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host or "127.0.0.1", int(port))
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    print(f"qsched web serving on http://{host or '127.0.0.1'}:{bound}", flush=True)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # Open event streams end with the process: the browsers reconnect to the next one.
    await runner.shutdown()
    await runner.cleanup()


def serve(listen: str, scheduler: str, cache_dir: Path, instance: str = "") -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s web %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(run(listen, scheduler, cache_dir, instance))
    except OSError as exc:
        print(f"qsched web: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qsched_web.server", description="Run the qsched web view."
    )
    parser.add_argument("--web-address", default=DEFAULT_ADDRESS, metavar="HOST:PORT")
    parser.add_argument("--scheduler-address", default=None, metavar="HOST:PORT")
    parser.add_argument("--cache-dir", type=Path, required=True, help="where fetched data files are kept")
    parser.add_argument(
        "--instance", default="", help="echoed in X-Qsched-Instance (qsched up's readiness check)"
    )
    args = parser.parse_args(argv)
    return serve(args.web_address, scheduler_address(args.scheduler_address), args.cache_dir, args.instance)


if __name__ == "__main__":
    sys.exit(main())
