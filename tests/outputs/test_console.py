"""Console progress of train and infer (autolfads.outputs.console.PhaseLines): the conventions of the
run's console — plain lines at the start, every 10 % or 30 s and at the end off a terminal; a bar on one."""

from __future__ import annotations

import io

from autolfads.outputs.console import PhaseLines


def test_plain_lines_at_the_start_every_tenth_and_at_the_end() -> None:
    stream = io.StringIO()
    with PhaseLines("posterior sampling (50 samples)", live=False, stream=stream) as lines:
        for done in range(0, 1301, 26):  # 51 calls, one per 2 %
            lines(done, 1300, "trials")
    shown = stream.getvalue().splitlines()
    assert len(shown) == 1 + 10  # the start, then every 10 % (the last one is 100 %)
    assert shown[0].startswith("posterior sampling (50 samples): 0/1300 trials (0%), elapsed ")
    assert shown[5].startswith("posterior sampling (50 samples): 650/1300 trials (50%), elapsed ")
    assert ", ETA " in shown[5] and ", ETA " not in shown[-1]
    assert shown[-1].startswith("posterior sampling (50 samples): 1300/1300 trials (100%), elapsed ")


def test_an_unknown_total_still_shows_the_count() -> None:
    stream = io.StringIO()
    PhaseLines("sampling", live=False, stream=stream)(3, None, "batches")
    assert stream.getvalue().startswith("sampling: 3/? batches, elapsed ")


def test_on_a_terminal_a_bar_that_is_taken_down_at_the_end() -> None:
    stream = io.StringIO()
    with PhaseLines("posterior sampling", live=True, stream=stream) as lines:
        lines(0, 40, "trials")
        lines(40, 40, "trials")
        assert lines._bar is not None
    assert lines._bar is None
    assert "posterior sampling" in stream.getvalue() and "40/40" in stream.getvalue()
