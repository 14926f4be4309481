"""grpc's ERROR for a stream whose client went away is one INFO line; its other errors stay."""

from __future__ import annotations

import logging

from qsched_runtime.grpc_logging import GRPC_LOGGER, quiet_peer_gone


def test_a_write_to_a_client_gone_is_info_and_other_grpc_errors_stay_errors(caplog):
    quiet_peer_gone()
    quiet_peer_gone()  # idempotent: one filter
    logger = logging.getLogger(GRPC_LOGGER)
    assert len(logger.filters) == 1
    with caplog.at_level(logging.DEBUG, logger=GRPC_LOGGER):
        try:
            raise RuntimeError("Failed execute_batch")
        except RuntimeError:
            logger.exception("ExecuteBatchError raised in core by servicer method [/a.B/FetchData]")
        logger.error("Unexpected [RuntimeError] raised by servicer method [/a.B/C]")
    gone, other = caplog.records
    assert (gone.levelno, gone.exc_info) == (logging.INFO, None)
    assert gone.getMessage().endswith("(the client went away)")
    assert other.levelno == logging.ERROR
