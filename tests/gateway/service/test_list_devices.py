"""ListDevices answers within its bound: a provider still listing (the fake backends' first
description takes seconds of CPU; a cloud API without network may not answer for long) is reported
unavailable instead of holding the answer, and its listing goes on for the next call."""

from __future__ import annotations

import asyncio
import threading

import pytest

from qsched_benchmarks.devices import DeviceInfo
from qsched_gateway.gateway import Gateway
from qsched_gateway.providers.base import Adapter
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(60)


class Listed(Adapter):
    def __init__(self, name: str, gate: threading.Event | None = None):
        super().__init__(None)
        self.name = name
        self.gate = gate
        self.calls = 0

    def list_devices(self) -> list[DeviceInfo]:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(30)
        return [DeviceInfo(self.name, "one", 5)]


async def test_a_slow_provider_does_not_hold_the_device_list(tmp_path):
    gate = threading.Event()
    slow, quick = Listed("slow", gate), Listed("quick")
    gateway = Gateway(tmp_path, adapters={"slow": slow, "quick": quick})
    gateway.list_timeout = 0.2
    await gateway.start()
    try:
        devices, unavailable = await asyncio.wait_for(gateway.list_devices(), 20)
        assert [d.name for d in devices] == ["quick:one"]
        assert "still listing" in unavailable["slow"]
        await gateway.list_devices()
        assert slow.calls == 1  # the listing under way is waited for again, not started twice
        gate.set()
        devices, unavailable = await eventually(
            gateway.list_devices, until=lambda answer: not answer[1], what="the slow provider listed"
        )
        assert sorted(d.name for d in devices) == ["quick:one", "slow:one"]
    finally:
        gate.set()
        await gateway.stop()


def test_the_fake_backends_are_described_once_then_read_from_the_cache(tmp_path, monkeypatch):
    """Describing the ≈68 IBM fake backends takes seconds of CPU (what made the first ListDevices of a
    fresh stack take half a minute): once per qiskit-ibm-runtime version, then from the cache file."""
    from qsched_benchmarks import devices

    monkeypatch.setenv("QSCHED_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(devices, "_described", None)
    first = devices.fake_devices()
    assert len(first) > 50 and list(tmp_path.glob("fake-backends-*.json"))
    monkeypatch.setattr(devices, "_described", None)  # a new process

    def never():
        raise AssertionError("the fake backends were built again")

    monkeypatch.setattr(devices, "fake_backends", never)
    again = devices.fake_devices()
    assert again == first
    assert devices.local_devices()[1:] == first
