"""Submit-time check of benchmark and suite configs by the provider gateway (its Validate RPC, the
checks Estimate and Submit make), so a config that can never run is refused before it is queued
instead of failing at dispatch. As with lab jobs and the executor, the check is best effort: a gateway
that cannot be reached (or predates Validate) leaves the job to be checked at dispatch."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from qsched_core.payloads import BenchmarkConfig
from qsched_scheduler.domain import JobKind, NewJob
from qsched_scheduler.errors import FailedPrecondition, InvalidArgument
from qsched_scheduler.gateway_port import GatewayRejected, GatewayUnavailable, ProviderGateway

log = logging.getLogger(__name__)
PASSED_FOR_S = 30.0  # an identical config on the same device passed this recently: not asked again
CACHE_SIZE = 1024
# What the gateway can refuse that no later attempt would change.
_FINAL_PRECONDITIONS = frozenset({"DEVICE_TOO_SMALL", "DEVICE_UNSUITABLE", "PROVIDER_NOT_CONFIGURED"})


class ProviderChecks:
    def __init__(self, gateway: ProviderGateway, clock: Callable[[], float] = time.monotonic):
        self._gateway = gateway
        self._clock = clock
        self._passed: dict[tuple[str, str, str], float] = {}

    async def check(self, new: NewJob) -> None:
        """Raise INVALID_ARGUMENT / INVALID_CONFIG (the gateway's message names the key or suite
        entry) or FAILED_PRECONDITION for a benchmark job the gateway would refuse."""
        if new.payload.kind is not JobKind.BENCHMARK:
            return
        config = new.payload.typed
        assert isinstance(config, BenchmarkConfig)
        key = (new.device, config.config_json, config.suite_json)
        if self._passed.get(key, -1.0) > self._clock():
            return
        try:
            await self._gateway.validate(new.device, new.payload)
        except GatewayRejected as exc:
            details = {k: v for k, v in exc.metadata.items() if k in ("key", "provider", "limit", "variable")}
            if exc.code == "INVALID_ARGUMENT":
                raise InvalidArgument(
                    "INVALID_CONFIG",
                    f"the benchmark cannot run on {new.device}: {exc.message}",
                    device=new.device,
                    gateway_reason=exc.reason,
                    **details,
                ) from exc
            if exc.code == "FAILED_PRECONDITION" and exc.reason in _FINAL_PRECONDITIONS:
                raise FailedPrecondition(exc.reason, exc.message, device=new.device, **details) from exc
            log.info("submit-time benchmark check skipped on %s: %s", new.device, exc)
            return
        except GatewayUnavailable as exc:
            log.info("submit-time benchmark check skipped on %s: %s", new.device, exc)
            return
        if len(self._passed) >= CACHE_SIZE:
            self._passed.clear()
        self._passed[key] = self._clock() + PASSED_FOR_S
