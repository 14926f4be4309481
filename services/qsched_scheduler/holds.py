"""Device queue holds: PauseDevice / DrainDevice / ResumeDevice.

A held device still accepts jobs; its dispatcher starts none until it is resumed. The
difference between the two holds is what they report: PAUSED at once, or DRAINING while
a run is still on the device and DRAINED once it is idle (the moment maintenance may
begin). Holds are stored, so a restarted scheduler keeps them."""

from __future__ import annotations

import asyncio
import enum
from datetime import datetime

from qsched_scheduler.store.control import ControlStore, Hold


class QueueState(enum.Enum):
    OPEN = "OPEN"
    PAUSED = "PAUSED"
    DRAINING = "DRAINING"
    DRAINED = "DRAINED"


PAUSED, DRAINING = "PAUSED", "DRAINING"


class DeviceHolds:
    def __init__(self, store: ControlStore):
        self._store = store
        self._holds: dict[str, Hold] = {}

    async def load(self) -> None:
        self._holds = {h.device: h for h in await asyncio.to_thread(self._store.holds)}

    async def reload(self) -> set[str]:
        """Read the holds again (replicas: another replica may have held or resumed a device);
        the devices whose hold changed."""
        before = self._holds
        await self.load()
        return {d for d in before.keys() | self._holds.keys() if before.get(d) != self._holds.get(d)}

    def held(self, device: str) -> bool:
        return device in self._holds

    def hold_of(self, device: str) -> Hold | None:
        return self._holds.get(device)

    def state(self, device: str, busy: bool) -> QueueState:
        hold = self._holds.get(device)
        if hold is None:
            return QueueState.OPEN
        if hold.mode == PAUSED:
            return QueueState.PAUSED
        return QueueState.DRAINING if busy else QueueState.DRAINED

    async def hold(self, device: str, mode: str, by: str, reason: str, now: datetime) -> Hold:
        hold = Hold(device, mode, reason, by, now)
        await asyncio.to_thread(self._store.put_hold, hold)
        self._holds[device] = hold
        return hold

    async def release(self, device: str) -> bool:
        """Open the device's queue; False if it was not held."""
        if device not in self._holds:
            return False
        await asyncio.to_thread(self._store.remove_hold, device)
        del self._holds[device]
        return True
