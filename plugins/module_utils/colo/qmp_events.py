"""Scoped QMP event listeners (QMPClient.listen), as in QEMU's python/qemu/qmp.

A listener keeps only the events it names that arrive while it is open; the
client feeds every open listener from its one read loop.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the client imports this module
    from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient

EventPredicate = Callable[[dict[str, Any]], bool]


class EventListener:
    """The events named in `names` (None: all) that arrive while it is open.

    Made by QMPClient.listen(), open from then until close() (or the end of
    its `with` block). `events` is every event it accepted, in order; get()
    and wait() hand them out one at a time, reading the socket while they
    wait (which feeds every open listener of the client).
    """

    def __init__(self, client: QMPClient, names: Iterable[str] | None, max_events: int):
        self.client = client
        self.names = None if names is None else frozenset((names,) if isinstance(names, str) else names)
        # COLO emits STOP/RESUME at every checkpoint: a long-open listener keeps the newest max_events.
        self._history: deque[dict[str, Any]] = deque(maxlen=max_events)
        self._unread: deque[dict[str, Any]] = deque(maxlen=max_events)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Events accepted so far, oldest first (those handed out by get()/wait() too).

        Each is QEMU's dict: {"event": NAME, "data": {...},
        "timestamp": {"seconds": S, "microseconds": US}}. Events still unread on
        the socket are not in it: drain() reads them.
        """
        return list(self._history)

    def accept(self, event: dict[str, Any]) -> bool:
        """Keep the event if its name is one listened to."""
        if self.names is not None and event.get("event") not in self.names:
            return False
        self._history.append(event)
        self._unread.append(event)
        return True

    def get(self, timeout: float) -> dict[str, Any]:
        """The oldest event not handed out yet, waiting up to timeout seconds for one."""
        deadline = time.monotonic() + timeout
        while not self._unread:
            self.client._read_event(deadline, "an event" + (f" ({', '.join(sorted(self.names))})" if self.names else ""))
        return self._unread.popleft()

    def wait(self, name: str, timeout: float, predicate: EventPredicate | None = None) -> dict[str, Any]:
        """The oldest event NAME not handed out yet that matches predicate.

        Other events stay for later get()/wait() calls.
        """
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self._unread):
                if ev.get("event") == name and (predicate is None or predicate(ev)):
                    del self._unread[i]
                    return ev
            self.client._read_event(deadline, f"event {name}")

    def drain(self, seconds: float = 0.0) -> list[dict[str, Any]]:
        """Read the socket for `seconds` (0: only what is already there); returns `events`."""
        self.client._drain(seconds)
        return self.events

    def take(self, seconds: float = 0.0) -> list[dict[str, Any]]:
        """Read the socket for `seconds` (0: only what is already there); returns the events not handed out yet
        and hands them out. A listener open for days uses this: `events` keeps only the newest max_events."""
        self.client._drain(seconds)
        out = list(self._unread)
        self._unread.clear()
        return out

    def close(self) -> None:
        """Stop accepting events (those accepted stay readable)."""
        if self in self.client._listeners:
            self.client._listeners.remove(self)

    def __enter__(self) -> EventListener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
