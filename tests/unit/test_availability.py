"""When an owner lends the machine: pause and resume, hours that may wrap past midnight, only
while idle; and the owner's own tally of what the machine gave."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner

from gridx.node import availability
from gridx.node.availability import Schedule, parse_hours, within
from gridx.node.cli import cli


def test_hours_parse_and_wrap_past_midnight() -> None:
    assert parse_hours("") is None
    assert parse_hours("22-07") == (22, 7) and parse_hours("9-17") == (9, 17)
    for bad in ("22", "25-3", "7-7", "a-b"):
        with pytest.raises(ValueError, match="START-END"):
            parse_hours(bad)
    night = (22, 7)
    assert [h for h in range(24) if within(night, h)] == [0, 1, 2, 3, 4, 5, 6, 22, 23]
    assert [h for h in range(24) if within((9, 17), h)] == list(range(9, 17))


def test_why_a_node_rests(tmp_path: Path) -> None:
    noon, night = dt.datetime(2026, 1, 1, 12), dt.datetime(2026, 1, 1, 23)
    schedule = Schedule(hours=(22, 7), when_idle=True)
    assert schedule.why_not(tmp_path, night, load=0.2, cpus=2) is None
    assert "outside its hours (22:00-07:00)" in str(schedule.why_not(tmp_path, noon, 0.2, 2))
    assert "busy (load 1.50 on 2 cores)" in str(schedule.why_not(tmp_path, night, 1.5, 2))
    availability.pause(tmp_path)
    assert "paused" in str(Schedule().why_not(tmp_path, noon, 0.0, 2))
    assert availability.resume(tmp_path) and not availability.resume(tmp_path)
    assert Schedule().why_not(tmp_path, noon, 9.0, 2) is None  # no terms: always


def test_credits_are_kept_on_the_machine(tmp_path: Path) -> None:
    assert availability.credits(tmp_path) == {"tasks": 0, "seconds": 0.0}
    availability.credit(tmp_path, 1.5)
    assert availability.credit(tmp_path, 2.25) == {"tasks": 2, "seconds": 3.75}
    assert availability.credits(tmp_path) == {"tasks": 2, "seconds": 3.75}


def test_pause_and_resume_commands(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    out = CliRunner().invoke(cli, ["pause", "--state-dir", state])
    assert out.exit_code == 0 and "paused" in out.output
    assert (tmp_path / "state" / availability.PAUSED).exists()
    assert "resumed" in CliRunner().invoke(cli, ["resume", "--state-dir", state]).output
    again = CliRunner().invoke(cli, ["resume", "--state-dir", state])
    assert "was not paused" in again.output


def test_bad_hours_stop_the_node_before_it_starts() -> None:
    out = CliRunner().invoke(cli, ["start", "--hours", "late", "--state-dir", "/nonexistent/x"])
    assert out.exit_code == 2 and "START-END" in out.output
