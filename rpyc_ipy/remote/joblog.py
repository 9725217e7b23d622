"""The output of one execution, numbered and kept for whoever follows it later.

A cell's output is appended here in batches as it is produced; each batch gets the
next sequence number. Whoever follows the execution (the client that started it,
or one that re-attached after a dropped connection) is sent the batches after the
last number it saw, each delivery ending with a ``("mark", seq)`` event so the
client knows where to resume from::

    log = OutputLog(max_chars=4 << 20)
    seq = log.append((("stream", "stdout", "hi\\n"),))
    events, last = log.since(0)      # the batches after 0, flattened, and the last seq

The log is bounded: past ``max_chars`` characters the oldest batches are dropped,
and a reader who missed them gets ``("dropped", n)`` first, with the number of
characters lost.

Pure standard library: also shipped by source to classic peers.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

__all__ = ["DEFAULT_MAX_CHARS", "OutputLog", "event_size"]

#: characters of output kept per execution for a reader who is not there
DEFAULT_MAX_CHARS = 4 << 20


def event_size(event: tuple[Any, ...]) -> int:
    """About how many characters an event holds (for the bound, not exact)."""
    if event and event[0] == "stream" and len(event) > 2 and isinstance(event[2], str):
        return len(event[2])
    if event and event[0] == "display" and len(event) > 1 and isinstance(event[1], tuple):
        return sum(len(v) for _, v in event[1] if isinstance(v, (str, bytes))) + 64
    return 16


class OutputLog:
    """Numbered output batches of one execution; see the module docstring."""

    def __init__(self, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        self.max_chars = max_chars
        self._batches: collections.deque[tuple[int, tuple[Any, ...], int]] = collections.deque()
        self._chars = 0
        self._last = 0
        self._dropped_through = 0  # every batch up to this number was dropped
        self._dropped_chars = 0
        self._lock = threading.Lock()

    @property
    def chars(self) -> int:
        """About how many characters the log holds now."""
        return self._chars

    @property
    def last(self) -> int:
        """The number of the newest batch (0 before the first)."""
        return self._last

    def append(self, events: tuple[Any, ...]) -> int:
        """Keep a batch; returns its number. Drops the oldest batches past the bound."""
        size = sum(event_size(event) for event in events)
        with self._lock:
            self._last += 1
            self._batches.append((self._last, events, size))
            self._chars += size
            while self._chars > self.max_chars and len(self._batches) > 1:
                seq, _, dropped = self._batches.popleft()
                self._chars -= dropped
                self._dropped_through = seq
                self._dropped_chars += dropped
            return self._last

    def since(self, after: int) -> tuple[tuple[Any, ...], int]:
        """The events of every batch numbered above ``after``, flattened, and the last
        number included (``after`` itself when there is nothing new)."""
        with self._lock:
            out: list[Any] = []
            if after < self._dropped_through:
                out.append(("dropped", self._dropped_chars))
            last = after
            for seq, events, _ in self._batches:
                if seq > after:
                    out.extend(events)
                    last = seq
            return tuple(out), max(last, min(self._dropped_through, self._last))
