"""Which device a job goes to, what kinds each device takes, and which dispatcher serves it.

Lab devices come from the configuration (one executor each); provider devices from the
gateway's device list, refreshed when stale or when a submit names a device not in it. A
provider device gets its dispatcher on first use."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping

from qsched_scheduler.dispatch.lab import LabDispatcher
from qsched_scheduler.dispatch.provider import ProviderDispatcher
from qsched_scheduler.domain import JobKind
from qsched_scheduler.errors import Unavailable
from qsched_scheduler.gateway_port import GatewayRejected, GatewayUnavailable, ProviderGateway
from qsched_scheduler.validation import DeviceRoute

log = logging.getLogger(__name__)

PROVIDER_KINDS = frozenset({JobKind.CIRCUIT, JobKind.BENCHMARK})
PROVIDER_DEVICES_TTL_S = 30.0


class Routes:
    def __init__(
        self,
        labs: Mapping[str, LabDispatcher],
        gateway: ProviderGateway | None,
        provider_dispatcher: Callable[[str], ProviderDispatcher],
    ):
        self.labs = dict(labs)
        self._lab_routes = {name: DeviceRoute(name, frozenset({JobKind.LAB_EXPERIMENT})) for name in labs}
        self.gateway = gateway
        self._new_provider = provider_dispatcher
        self.providers: dict[str, ProviderDispatcher] = {}
        self._provider_routes: dict[str, DeviceRoute] = {}
        self._provider_routes_at = -math.inf
        self._started = False

    @property
    def devices(self) -> dict[str, DeviceRoute]:
        return {**self._provider_routes, **self._lab_routes}

    def is_lab(self, device: str) -> bool:
        return device in self.labs

    def lab(self, device: str) -> LabDispatcher | None:
        return self.labs.get(device)

    def provider(self, device: str) -> ProviderDispatcher:
        """The provider device's dispatcher (made and started on first use)."""
        dispatcher = self.providers.get(device)
        if dispatcher is None:
            dispatcher = self.providers[device] = self._new_provider(device)
            if self._started:
                dispatcher.start()
        return dispatcher

    def wake(self, device: str) -> None:
        lab = self.labs.get(device)
        if lab is not None:
            lab.wake()
        elif self.gateway is not None:
            self.provider(device).wake()

    def start(self, active_devices: list[str]) -> None:
        self._started = True
        for dispatcher in self.labs.values():
            dispatcher.start()
        for device in active_devices:  # provider work left from before a restart
            if device not in self.labs and self.gateway is not None:
                self.provider(device)
        for dispatcher in self.providers.values():
            dispatcher.start()

    async def stop(self) -> None:
        for lab in self.labs.values():
            await lab.stop()
        for provider in self.providers.values():
            await provider.stop()

    async def routes(self, device: str = "") -> dict[str, DeviceRoute]:
        """The devices known so far, after asking the gateway about `device` if it is new;
        without `device`, every device (the gateway's full list, refreshed when stale)."""
        if self.gateway is None or device in self._lab_routes or device in self._provider_routes:
            return self.devices
        now = asyncio.get_running_loop().time()
        if device:  # one name: a quick lookup, not the whole list
            try:
                found = await self.gateway.devices((device,))
            except GatewayUnavailable as exc:
                raise Unavailable(
                    "GATEWAY_UNAVAILABLE", f"the provider gateway cannot be reached to look up {device!r}"
                ) from exc
            except GatewayRejected as exc:
                log.warning("the gateway could not look up %s: %s", device, exc)
                found = []
            self._provider_routes.update({d.name: DeviceRoute(d.name, PROVIDER_KINDS) for d in found})
        elif now - self._provider_routes_at > PROVIDER_DEVICES_TTL_S:
            try:
                found = await self.gateway.devices()
            except (GatewayUnavailable, GatewayRejected) as exc:
                log.warning("the gateway did not list its devices: %s", exc)
            else:
                self._provider_routes = {d.name: DeviceRoute(d.name, PROVIDER_KINDS) for d in found}
                self._provider_routes_at = now
        return self.devices
