"""gRPC's own log records, as an operator should see them.

When a server-streaming handler writes after its client has gone (a scheduler killed while it
fetched a data file, a `qsched watch` closed), grpc's core fails the write and its Cython layer
logs `ExecuteBatchError raised in core by servicer method [...]` at ERROR with a traceback. That
is the client hanging up, not a fault of the service: it is kept as one INFO line."""

from __future__ import annotations

import logging

GRPC_LOGGER = "grpc._cython.cygrpc"
_PEER_GONE = "ExecuteBatchError raised in core by servicer method"


class PeerGoneFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and _PEER_GONE in record.getMessage():
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            record.msg, record.args = f"{record.getMessage()} (the client went away)", None
            record.exc_info = record.exc_text = None
        return True


def quiet_peer_gone() -> None:
    """Install the filter on grpc's logger (once per process)."""
    logger = logging.getLogger(GRPC_LOGGER)
    if not any(isinstance(f, PeerGoneFilter) for f in logger.filters):
        logger.addFilter(PeerGoneFilter())
