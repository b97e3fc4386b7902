from pathlib import Path

import pytest

from gridx.node.config import load_config, read_env_file
from gridx.node.task_inputs import safe_filename


def test_flags_beat_environment_beat_worker_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "worker_config.env"
    env_file.write_text(
        "# written by setup_worker.sh\n"
        "export COORDINATOR_URL='http://file:8080'\n"
        'OWNER_EMAIL="owner@example.org"\n'
        "ENROLMENT_KEY=gxk_from_file\n\n"
    )
    assert read_env_file(env_file)["COORDINATOR_URL"] == "http://file:8080"
    for name in ("GRIDX_COORDINATOR_URL", "GRIDX_ENROLMENT_KEY", "GRIDX_OWNER_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    config = load_config(env_file)
    assert config.coordinator_url == "http://file:8080"
    assert config.owner_email == "owner@example.org" and config.enrolment_key == "gxk_from_file"
    monkeypatch.setenv("GRIDX_COORDINATOR_URL", "http://env:8080")
    monkeypatch.setenv("GRIDX_MEMORY_MB", "512")
    config = load_config(env_file)
    assert config.coordinator_url == "http://env:8080" and config.memory_mb == 512
    config = load_config(
        env_file,
        coordinator_url="http://flag:8080",
        once=True,
        name=None,
        state_dir=Path("relative/state"),
    )
    assert config.coordinator_url == "http://flag:8080" and config.once is True
    assert config.state_dir.is_absolute() and config.state_dir.name == "state"


def test_file_names_from_the_coordinator_cannot_escape_the_work_folder() -> None:
    assert safe_filename("../../etc/passwd", "data") == "passwd"
    assert safe_filename("/abs/path/train.csv", "data") == "train.csv"
    assert safe_filename("..", "data") == "data"
    assert safe_filename(".hidden", "data") == "hidden"
    assert safe_filename("we ird;name$.csv", "data") == "we_ird_name_.csv"


def test_executor_choice_falls_back_or_refuses_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from gridx.node.errors import ExecutorUnavailable
    from gridx.node.executors import ProcessExecutor, make_executor

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    auto = make_executor("auto", tmp_path, sys.executable, node_id="n")
    assert isinstance(auto, ProcessExecutor)
    assert isinstance(make_executor("process", tmp_path, sys.executable, "n"), ProcessExecutor)
    with pytest.raises(ExecutorUnavailable, match="no Docker engine answers"):
        make_executor("docker", tmp_path, sys.executable, node_id="n")
