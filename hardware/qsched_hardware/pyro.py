"""Reaching a board through qick's Pyro4 proxy, and serving the simulated board the same way.

Client side: `connect()` uses `qick.pyro.make_proxy(..., remote_traceback=False)` (the default
True imports IPython). When an HMAC key is configured (strongly advised: Pyro4 with the pickle
serializer lets any peer that can connect run code), the same steps are done with the key set
on the name-server lookup and on the proxy, since make_proxy takes no key.

Server side (`python -m qsched_hardware.pyro --ns-port 8888 --name simqick --hmac-key-env VAR`):
a name server and a daemon serving a SimSoc, bound to 127.0.0.1 unless told otherwise. Used by
the tests and for trying the Pyro path without a board."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import Any

import Pyro4
import Pyro4.naming
from qick import QickConfig


def _configure_pickle() -> None:
    Pyro4.config.SERIALIZER = "pickle"
    Pyro4.config.SERIALIZERS_ACCEPTED = {"pickle"}
    Pyro4.config.PICKLE_PROTOCOL_VERSION = 4
    Pyro4.config.REQUIRE_EXPOSE = False


def connect(host: str, port: int, name: str, hmac_key: str | None = None) -> tuple[Any, QickConfig]:
    """(soc proxy, QickConfig) for the board registered as `name` on the name server."""
    if not hmac_key:
        from qick.pyro import make_proxy

        return make_proxy(ns_host=host, ns_port=port, proxy_name=name, remote_traceback=False)
    _configure_pickle()
    key = hmac_key.encode()
    ns = Pyro4.locateNS(host=host, port=port, hmac_key=key)
    uri = ns.lookup(name)
    soc = Pyro4.Proxy(uri)
    soc._pyroHmacKey = key
    return soc, QickConfig(soc.get_cfg())


class SimServer:
    """A name server and a daemon serving a SimSoc, in threads of this process."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        ns_port: int = 0,
        name: str = "simqick",
        hmac_key: str | None = None,
        device_model: str | None = None,
    ):
        from qsched_hardware.sim.soc import SimSoc

        _configure_pickle()
        key = hmac_key.encode() if hmac_key else None
        self.name = name
        self.ns_uri, self.ns_daemon, _ = Pyro4.naming.startNS(host=host, port=ns_port, hmac=key)
        self.ns_port = self.ns_uri.port
        self.host = host
        self.daemon = Pyro4.Daemon(host=host)
        if key:
            self.daemon._pyroHmacKey = key
        self.soc = SimSoc(device=device_model)
        uri = self.daemon.register(self.soc)
        self.ns_daemon.nameserver.register(name, uri)
        self._threads = [
            threading.Thread(target=self.ns_daemon.requestLoop, name="pyro-ns", daemon=True),
            threading.Thread(target=self.daemon.requestLoop, name="pyro-daemon", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def board_uri(self) -> str:
        return f"pyro://{self.host}:{self.ns_port}/{self.name}"

    def close(self) -> None:
        self.daemon.shutdown()
        self.ns_daemon.shutdown()
        for thread in self._threads:
            thread.join(timeout=5)
        self.daemon.close()
        self.ns_daemon.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a simulated QICK board over Pyro4.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ns-port", type=int, default=8888)
    parser.add_argument("--name", default="simqick")
    parser.add_argument("--device-model", default=None)
    parser.add_argument(
        "--hmac-key-env", default="QSCHED_BOARD_HMAC_KEY", help="environment variable holding the HMAC key"
    )
    args = parser.parse_args(argv)
    server = SimServer(
        args.host, args.ns_port, args.name, os.environ.get(args.hmac_key_env) or None, args.device_model
    )
    print(f"serving a simulated board at {server.board_uri}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
