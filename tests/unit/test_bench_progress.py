"""The benchmark's steady-state rate (benchmarks.common.Progress): the rate between 10% and 90% of
the alerts done, whatever the start and the end took."""

from __future__ import annotations

import pytest

from benchmarks.common import Progress


def test_the_steady_rate_leaves_out_a_slow_start_and_end() -> None:
    progress = Progress(1000)
    progress.update(0, 0.0)
    progress.update(50, 10.0)  # a slow start: 10 s for 50 alerts
    for done in range(100, 901, 100):  # then 100 alerts a second
        progress.update(done, 10.0 + (done - 100) / 100)
    progress.update(1000, 60.0)  # and a slow end
    assert progress.per_second() == pytest.approx(100.0)


def test_marks_are_taken_when_first_passed_and_unreached_marks_give_zero() -> None:
    progress = Progress(100)
    progress.update(5, 1.0)
    assert progress.per_second() == 0.0
    progress.update(50, 2.0)  # passes the 10% mark
    progress.update(95, 4.0)  # passes the 90% mark
    progress.update(100, 9.0)
    assert progress.per_second() == pytest.approx((90 - 10) / (4.0 - 2.0))
