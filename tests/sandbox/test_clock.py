"""The modeled clock (sandbox/clock.py): on the scaled clock, modeled time is the wall clock."""

import time
from datetime import datetime, timezone

from sandbox.clock import ModeledClock


def test_a_clock_switched_to_scaled_reads_the_wall_clock_however_late_the_switch():
    clock = ModeledClock(scale=0.0)
    time.sleep(0.3)  # a server importing moto before it sets its scale
    clock.set_scale(10.0)
    assert abs((clock.now() - datetime.now(timezone.utc)).total_seconds()) < 0.05


def test_a_clock_moved_by_hand_stays_continuous_when_scaled():
    clock = ModeledClock(scale=0.0)
    clock._advance_offset(100.0)
    before = clock.now()
    clock.set_scale(10.0)
    assert 0 <= (clock.now() - before).total_seconds() < 0.05
    assert clock.duration(120) == 12.0


def test_anchoring_to_the_wall_clock_keeps_elapsed_time_for_the_schedule():
    clock = ModeledClock(scale=0.0)
    clock._advance_offset(2 * 86400.0)  # two modeled days ahead, as the RTO benchmark leaves it
    elapsed = clock.elapsed()
    clock.anchor_to_wall()
    assert clock.elapsed() == elapsed
    assert abs((clock.now() - datetime.now(timezone.utc)).total_seconds()) < 0.05
