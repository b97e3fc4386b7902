"""The dashboard's types are generated from web/openapi.json in the web build: that file must be
the API's document as the code defines it now."""

from __future__ import annotations

from pathlib import Path

from gridx.coordinator.api.app import create_app
from gridx.coordinator.api.openapi import document
from gridx.coordinator.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_web_openapi_json_is_the_current_api_document(tmp_path: Path) -> None:
    current = document(create_app(Settings(data_dir=tmp_path)))
    committed = (REPO / "web" / "openapi.json").read_text()
    assert committed == current, "web/openapi.json is stale: run `just api-types` and commit it"


def test_the_dashboard_reads_its_types_from_the_generated_file() -> None:
    types = (REPO / "web" / "lib" / "types.ts").read_text()
    assert 'from "./api.gen"' in types and "interface " not in types
