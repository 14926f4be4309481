"""The main revision of every config type, kept in memory from the config service's stream
(ConfigService.WatchMainRevisions, followed by configs_client.GrpcMainRevisionsFeed), so a lab run
that takes the main configs is pinned without a call.

Which types a lab run pins is the config service's rule, and this is the scheduler's one place for
it: every type marked required_for_lab_runs (the stream says which), the same set PinConfigs pins
when it is given no types. `pin` answers None, meaning "ask PinConfigs", when the job names a
revision or sends override content (those are stored and checked by the config service), when a
type to pin has no main (PinConfigs then fails the job with NO_MAIN_REVISION), and whenever the
stream is not live: nothing is pinned from a main that may be stale.

A run pins the main that is current when it is handed to the board; when main moves before a
handed-over run starts, subscribers (the dispatcher) hear of it and can pin it again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass

from qsched_core.execution import PinnedRevision
from qsched_core.payloads import LabExperiment

log = logging.getLogger(__name__)


# -- what the stream says (the adapter translates the proto into these) -----------------------------------
@dataclass(frozen=True)
class MainRevision:
    """The main revision of a config type, as of change `change_id`."""

    config_type: str
    revision_id: str
    sha256: str
    change_id: int


@dataclass(frozen=True)
class Snapshot:
    """Every main as of `change_id`, and the types a lab run pins."""

    change_id: int
    required_types: frozenset[str]
    mains: tuple[MainRevision, ...]


@dataclass(frozen=True)
class RequiredTypes:
    """The types a lab run pins (sent when a resumed stream starts and when a type is registered)."""

    config_types: frozenset[str]


@dataclass(frozen=True)
class CaughtUp:
    """The stream has delivered every change up to `change_id`: the mains here are current."""

    change_id: int


StreamEvent = Snapshot | MainRevision | RequiredTypes | CaughtUp


@dataclass(frozen=True)
class MainMoved:
    """What subscribers hear: what a run pins changed for these types (a main moved, or a type
    became required or stopped being known); `version` is the cache's version after it."""

    version: int
    config_types: frozenset[str]


Subscriber = Callable[[MainMoved], None]


class MainRevisions:
    def __init__(self) -> None:
        self._mains: dict[str, MainRevision] = {}
        self._required: frozenset[str] = frozenset()
        self._position = 0  # the last change applied: a new stream resumes after it
        self._version = 0
        self._live = False
        self._became_live = asyncio.Event()
        self._subscribers: list[Subscriber] = []

    # -- read by the dispatcher --------------------------------------------------------------------------
    @property
    def live(self) -> bool:
        """True while the stream is up and caught up; False before the first catch-up and while it is
        down or silent (then `pin` answers None)."""
        return self._live

    @property
    def version(self) -> int:
        """Increases each time what `pin` returns may have changed."""
        return self._version

    @property
    def position(self) -> int:
        """The id of the last change applied (0: none yet); the stream resumes after it."""
        return self._position

    @property
    def required_types(self) -> frozenset[str]:
        return self._required

    def main(self, config_type: str) -> MainRevision | None:
        return self._mains.get(config_type)

    def pin(
        self, experiment: LabExperiment, required_types: Collection[str] | None = None
    ) -> tuple[PinnedRevision, ...] | None:
        """The revisions a run of `experiment` uses, by type name, from memory; None: ask PinConfigs.
        `required_types` None = the types the config service marks required for lab runs (what
        PinConfigs pins when it is given none)."""
        if not self._live or not experiment.pins_main:
            return None
        types = self._required if required_types is None else frozenset(required_types)
        pinned: list[PinnedRevision] = []
        for config_type in sorted(types):
            main = self._mains.get(config_type)
            if main is None:  # PinConfigs names the problem (NO_MAIN_REVISION, CONFIG_TYPE_NOT_FOUND)
                return None
            pinned.append(PinnedRevision(config_type, main.revision_id, main.sha256))
        return tuple(pinned)

    async def wait_live(self, timeout_s: float) -> bool:
        """Wait (at most `timeout_s`) until the cache is live; whether it is."""
        if not self._live:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._became_live.wait()
        return self._live

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` (on the event loop, synchronously) after each change of what `pin`
        returns; returns the function that unsubscribes."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    # -- fed by the stream -------------------------------------------------------------------------------
    def apply(self, event: StreamEvent) -> None:
        if isinstance(event, CaughtUp):
            self._live = True
            self._became_live.set()
        elif isinstance(event, MainRevision):
            if event.change_id <= self._position:
                return  # delivered before (a replay overlapping what was applied)
            self._position = event.change_id
            if self._mains.get(event.config_type) != event:
                self._mains[event.config_type] = event
                self._moved({event.config_type})
        elif isinstance(event, RequiredTypes):
            changed = self._required ^ event.config_types
            self._required = event.config_types
            if changed:
                self._moved(changed)
        else:
            mains = {m.config_type: m for m in event.mains}
            changed = {t for t in self._mains.keys() | mains.keys() if self._mains.get(t) != mains.get(t)}
            changed |= self._required ^ event.required_types
            self._mains, self._required, self._position = mains, event.required_types, event.change_id
            if changed:
                self._moved(changed)

    def lost(self) -> None:
        """The stream is down or silent: stop pinning from memory until it has caught up again."""
        self._live = False
        self._became_live.clear()

    def forget_position(self) -> None:
        """The config service does not know our position (another history): start from a snapshot."""
        self._position = 0

    def _moved(self, config_types: set[str] | frozenset[str]) -> None:
        self._version += 1
        moved = MainMoved(self._version, frozenset(config_types))
        for subscriber in list(self._subscribers):
            try:
                subscriber(moved)
            except Exception:  # one broken subscriber must not stop the cache
                log.exception("a main-revisions subscriber failed on %s", moved)
