"""Progress when output goes to a log file: plain lines at an interval and at each stage's end."""

from __future__ import annotations

from densecaption.cli._common import LineTicker


def test_line_ticker_prints_at_interval_and_at_the_end(capsys):
    now = [0.0]
    tick = LineTicker("encoding", 10, interval=30.0, clock=lambda: now[0])
    for _ in range(4):
        now[0] += 5.0
        tick()
    assert capsys.readouterr().err == ""  # 20 s: nothing yet
    now[0] += 10.0
    tick()  # 30 s, 5 of 10 at 1/6 per second: 30 s left
    assert capsys.readouterr().err == "encoding: 5/10 (50%), 0.2/s, eta 0:00:30\n"
    now[0] += 1.0
    tick(5)
    assert capsys.readouterr().err == "encoding: 10/10 (100%), 0.3/s, took 0:00:31\n"


def test_line_ticker_without_total_counts_and_renames(capsys):
    now = [0.0]
    tick = LineTicker("steps", None, interval=0.0, clock=lambda: now[0])
    tick.describe("epoch 1")
    now[0] = 3725.0
    tick(2)
    assert capsys.readouterr().err == "epoch 1: 2, 0.0/s, 1:02:05 elapsed\n"


def test_a_stage_that_ends_short_of_its_total_gets_a_closing_line(capsys):
    now = [0.0]
    tick = LineTicker("encoding", 332, interval=30.0, clock=lambda: now[0])
    now[0] = 12.0
    tick(298)  # the 34 crops were not needed
    tick.finish()
    assert capsys.readouterr().err == "encoding: 298 done, took 0:00:12\n"
    tick.finish()  # nothing new: no second line
    assert capsys.readouterr().err == ""
