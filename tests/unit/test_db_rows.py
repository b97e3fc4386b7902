"""Rows cross the db boundary decoded and checked: JSON columns as their Structs, statuses as
the schemas' Literals (the API suites read them back from both engines)."""

from __future__ import annotations

import msgspec
import pytest

from gridx.coordinator.db import jobs
from gridx.coordinator.db.connection import decode_row, json_columns
from gridx.coordinator.db.datasets import Holder
from gridx.coordinator.db.nodes import NodeRow
from gridx.coordinator.db.rounds import RoundRow
from gridx.coordinator.db.tasks import TaskRow
from gridx.schemas.jobs import JobConfig


def test_json_columns_are_the_fields_typed_as_structs_or_collections() -> None:
    assert json_columns(jobs.JobRow) == ("config",)
    assert json_columns(TaskRow) == ("metrics",)
    assert json_columns(RoundRow) == ("metrics", "held_out")
    assert json_columns(NodeRow) == ("capabilities",)
    assert json_columns(Holder) == ("capabilities", "columns")


def test_a_row_decodes_its_json_and_refuses_a_status_outside_its_literal() -> None:
    config = JobConfig(rounds=3, shards=2)
    row = {
        "id": "j1", "owner_id": 1, "owner_email": "a@b.org", "name": "n", "status": "running",
        "config": msgspec.json.encode(config).decode(), "code_sha": "c",
        "requirements_sha": None, "data_sha": None, "data_name": None, "current_round": 0,
        "final_pth_sha": None, "final_st_sha": None, "error": None, "created_at": 1,
        "updated_at": 1, "tasks_done": 0, "updates_merged": 0, "round_width": 2,
    }  # fmt: skip
    got = decode_row(row, jobs.JobRow)
    assert got.config == config and got.status == "running"
    with pytest.raises(msgspec.ValidationError, match="status"):
        decode_row({**row, "status": "paused"}, jobs.JobRow)
