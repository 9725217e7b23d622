"""The watchdog sleeps until the earliest time it was given, asks what is due, and
with nothing to watch sleeps until the next watch(): no ticks while idle."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from waitkit import WakeCounter

from rpyc_ipy.core.background import Timetable, Watchdog


class Request:
    """A Stallable that answers from a script and records when it was asked."""

    def __init__(self, *answers: float | None) -> None:
        self.answers = list(answers)
        self.asked: list[float] = []
        self.done = threading.Event()

    def hand_on_if_stalled(self, now: float, grace: float) -> float | None:
        self.asked.append(now)
        answer = self.answers.pop(0) if self.answers else None
        if answer is None:
            self.done.set()
        return answer

    def asked_before(self, moment: float) -> int:
        """How many times it was asked before ``moment`` (the watchdog must not be early)."""
        return sum(1 for when in self.asked if when < moment)


class Broken:
    def hand_on_if_stalled(self, now: float, grace: float) -> float | None:
        raise RuntimeError("a bug in what is watched")


@pytest.fixture
def counted() -> Iterator[tuple[Watchdog, WakeCounter]]:
    wakes = WakeCounter()
    yield Watchdog(grace=0.02, observer=wakes), wakes


def test_it_asks_again_when_told_then_parks(counted: tuple[Watchdog, WakeCounter]) -> None:
    watchdog, wakes = counted
    now = time.monotonic()
    request = Request(now + 0.05, None)  # still within grace once, then done
    watchdog.watch(request, now)
    assert request.done.wait(10.0)
    assert len(request.asked) == 2
    assert request.asked_before(now + 0.02) == 0  # not before the grace
    assert request.asked_before(now + 0.05) <= 1  # nor again before the time it gave
    assert wakes.wait_parked()
    woken = wakes.wakeups
    assert not wakes.wait_woken(woken, 0.5)  # nothing to watch: no ticks


def test_an_earlier_watch_cuts_a_long_sleep_short(counted: tuple[Watchdog, WakeCounter]) -> None:
    watchdog, wakes = counted
    later, sooner = Request(), Request()
    watchdog.watch(later, time.monotonic() + 600)
    assert wakes.wait_sleeping_until_a_deadline()
    watchdog.watch(sooner, time.monotonic())
    assert sooner.done.wait(10.0)  # not 600 s from now
    assert not later.asked


def test_a_repeated_watch_keeps_the_earlier_look(counted: tuple[Watchdog, WakeCounter]) -> None:
    watchdog, _ = counted
    request = Request()
    now = time.monotonic()
    for offset in (0.0, 0.001, 0.002):  # a stream of quick requests: one look, at the first
        watchdog.watch(request, now + offset)
    assert request.done.wait(10.0)
    assert len(request.asked) == 1


def test_a_failing_item_does_not_stop_the_watchdog(
        counted: tuple[Watchdog, WakeCounter], caplog: pytest.LogCaptureFixture) -> None:
    watchdog, _ = counted
    request = Request()
    now = time.monotonic()
    watchdog.watch(Broken(), now)
    watchdog.watch(request, now + 0.01)
    assert request.done.wait(10.0)
    assert "a bug in what is watched" in caplog.text


def test_timetable_keeps_the_latest_time_of_each_item() -> None:
    table: Timetable[str] = Timetable()
    table.set("a", 5.0)
    table.set("b", 3.0)
    table.set("a", 1.0)
    table.set("b", 9.0)  # moved later: its old entry no longer counts
    assert table.earliest() == 1.0
    assert table.pop_due(4.0) == ["a"]
    assert table.earliest() == 9.0
    table.set("b", None)
    assert table.earliest() is None and len(table) == 0
    for i in range(1000):  # replaced entries are never taken out as due
        table.set("c", float(i))
    assert table.pop_due(2000.0) == ["c"]
    assert table.earliest() is None


def test_timetable_peek_is_never_later_than_the_earliest_time() -> None:
    table: Timetable[str] = Timetable()
    assert table.peek() is None
    table.set("a", 1.0)
    table.set("a", 7.0)  # the replaced entry may still be seen: a lower bound, never later
    table.set("b", 4.0)
    peeked = table.peek()
    assert peeked is not None and peeked <= 4.0 == table.earliest()
    table.set("a", None)
    table.set("b", None)
    assert table.earliest() is None and table.peek() is None
