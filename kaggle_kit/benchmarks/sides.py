"""What the side-by-side benches share: a clock per side, and the order sides take turns in.

Each bench runs its two (or three) sides in turns on the same input, so that load from other
processes on a shared machine hits every side alike; each side's turns are timed in wall-clock and
process CPU seconds (the CPU rate is steadier on a busy machine, the benches print both).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class SideClock:
    """Wall-clock and CPU seconds one side of a bench spent, summed over its counted turns;
    ``last``: the latest turn's (wall, cpu), counted or not."""

    wall: float = 0.0
    cpu: float = 0.0
    last: tuple = (0.0, 0.0)

    @contextmanager
    def turn(self, counted: bool = True):
        """Time the ``with`` block (``time.perf_counter`` and ``time.process_time``); add it to the
        totals when ``counted`` (warm-up turns are not). A block that raises adds nothing."""
        t0, c0 = time.perf_counter(), time.process_time()
        yield self
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        self.last = (wall, cpu)
        if counted:
            self.wall += wall
            self.cpu += cpu


def abba(round_index: int, first: str, second: str) -> tuple:
    """The sides' order in round ``round_index`` (from 0): (first, second) in even rounds, reversed in
    odd ones. ABBA rounds: the machine's load drifts (shared cores), so each side runs in both positions."""
    return (first, second) if round_index % 2 == 0 else (second, first)
