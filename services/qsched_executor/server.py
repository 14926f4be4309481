"""Builds the hardware executor from its configuration: lock the board (one executor per
board, OS-level), open it once, and serve qsched.executor.v1.HardwareExecutorService."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from qsched.api.executor.v1 import executor_pb2 as pb
from qsched.api.executor.v1 import executor_pb2_grpc as pb_grpc
from qsched_core.config import ServiceConfig
from qsched_core.principal import Role
from qsched_executor.configs_client import PinnedConfigs
from qsched_executor.executor import HardwareExecutor, Settings
from qsched_executor.experiment_code import sources_from_config
from qsched_executor.lock import BoardLock
from qsched_executor.servicer import ExecutorServicer
from qsched_runtime.security import peer_credentials, server_security
from qsched_runtime.server import Registration
from qsched_runtime.service import ServiceHandle

log = logging.getLogger(__name__)


def settings_from(config: ServiceConfig) -> Settings:
    data_root = Path(config.data_root).expanduser() if config.data_root else config.data_dir / "data"
    return Settings(
        data_root=data_root,
        hardware_config=Path(config.hardware_config).expanduser() if config.hardware_config else None,
        experiment_packages=tuple(config.experiment_packages),
        state_dir=config.data_dir,
        data_writers=config.data_writers,
        sources=sources_from_config(config),
    )


async def build(config: ServiceConfig, board=None) -> ServiceHandle:
    """`board` (an open qsched_hardware.board.Board) is for tests that bring their own."""
    from qsched_hardware.board import board_identity, open_board

    lock_dir = Path(config.lock_dir).expanduser() if config.lock_dir else config.data_dir / "locks"
    lock = BoardLock(lock_dir, board.board_id if board is not None else board_identity(config.board))
    lock.acquire()  # raises BoardLocked (an OSError: `qsched serve` prints it and exits 1)
    try:
        if board is None:
            board = await asyncio.to_thread(
                open_board, config.board, config.device_model or None, config.board_hmac_key or None
            )
        settings = settings_from(config)
        settings.data_root.mkdir(parents=True, exist_ok=True)
    except BaseException:
        lock.release()
        raise
    log.info("board %s (%s) opened; lock %s", board.board_id, board.uri, lock.path)
    configs = PinnedConfigs(config.endpoints.configs, peer_credentials(config))
    try:
        executor = HardwareExecutor(board, settings, configs)
    except BaseException:
        lock.release()
        raise
    servicer = ExecutorServicer(executor)
    name = pb.DESCRIPTOR.services_by_name["HardwareExecutorService"].full_name
    registration = Registration(
        name,
        lambda server: pb_grpc.add_HardwareExecutorServiceServicer_to_server(servicer, server),
        # The executor is driven by the scheduler alone.
        {
            method.name: Role.SCHEDULER
            for method in pb.DESCRIPTOR.services_by_name["HardwareExecutorService"].methods
        },
    )

    async def stop() -> None:
        await executor.close()
        lock.release()

    handle = ServiceHandle([registration], stop=stop, security=server_security(config))
    handle.executor = executor  # type: ignore[attr-defined]  # for in-process tests
    return handle
