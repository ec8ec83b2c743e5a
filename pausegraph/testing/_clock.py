"""A clock that moves only when a test says so, and the ``TIMEOUT`` answer.

``Runner(..., clock=...)`` reads the time through a function returning epoch
milliseconds: deadlines are that time plus the timeout, and ``tick()`` fires
the ones at or before it. A test that sleeps to reach a deadline is slow and
flaky; a ``FakeClock`` is moved instead, so a week passes in a microsecond
and every run of the test sees the same times.
"""

from __future__ import annotations

import datetime
import enum

from .._instructions import seconds_of

__all__ = ["TIMEOUT", "FakeClock"]


class FakeClock:
    """Epoch milliseconds that stand still until ``advance`` moves them.

    Pass it as ``Runner(graph, store, clock=clock)`` (or ``drive(...,
    clock=clock)``); it is the callable the runner asks for the time::

        clock = FakeClock()
        runner = Runner(graph, clock=clock)
        runner.run("r")                 # pauses at Interrupt(..., timeout=60)
        clock.advance(60)               # a minute later (nothing sleeps)
        runner.tick()                   # the interrupt times out

    ``advance`` takes seconds (``int``, ``float`` or ``timedelta``, like a
    timeout) and rounds to the millisecond as deadlines do; time never goes
    back, so a negative step is a ``ValueError``.
    """

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = now_ms

    def __repr__(self) -> str:
        return f"FakeClock(now_ms={self.now_ms!r})"

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float | datetime.timedelta) -> int:
        """Move the clock ``seconds`` forward; returns the new time in epoch ms."""
        self.now_ms += round(seconds_of(seconds, "FakeClock.advance(seconds)") * 1000)
        return self.now_ms

    def advance_to(self, when_ms: int) -> int:
        """Move the clock to ``when_ms`` (a ``deadline_ms``, say), or leave it if it is later."""
        self.now_ms = max(self.now_ms, when_ms)
        return self.now_ms


class _Timeout(enum.Enum):
    TIMEOUT = "TIMEOUT"

    def __repr__(self) -> str:
        return "TIMEOUT"


#: What a ``drive`` answer function returns to let an interrupt's deadline
#: pass instead of answering it: the driver moves its clock to the deadline
#: and calls ``Runner.tick()``, which throws ``InterruptTimeout`` into the step
#: (or ends a ``Sleep`` with ``None``). Only for interrupts that have a
#: deadline; for one without, ``drive`` raises ``ValueError``.
TIMEOUT = _Timeout.TIMEOUT
