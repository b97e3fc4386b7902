"""What a task left behind is read as untrusted: only a regular file of its own, under its cap,
never through a link, never blocking; errors name the file, not its bytes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from gridx.coordinator.cli.screen import clean
from gridx.node.outputs import UnsafeOutput, copy_output, read_output


def test_a_regular_file_is_read_and_copied_exactly(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_bytes(b'{"loss": 0.5}')
    assert read_output(tmp_path, "metrics.json", 100) == b'{"loss": 0.5}'
    payload = os.urandom(3 << 20)
    (tmp_path / "model.pth").write_bytes(payload)
    dest = tmp_path / "out" / "result.pth"
    dest.parent.mkdir()
    assert copy_output(tmp_path, "model.pth", 4 << 20, dest) == (
        len(payload),
        hashlib.sha256(payload).hexdigest(),
    )
    assert dest.read_bytes() == payload
    assert read_output(tmp_path, "absent.json", 100) is None


@pytest.mark.parametrize("kind", ["link", "dangling", "fifo", "device", "folder", "hardlink"])
def test_anything_but_a_file_of_its_own_is_refused(tmp_path: Path, kind: str) -> None:
    secret = tmp_path.parent / f"{tmp_path.name}-secret"
    secret.write_text("the host's secret")
    work = tmp_path / "work"
    work.mkdir()
    target = work / "model.pth"
    if kind == "link":
        target.symlink_to(secret)
    elif kind == "dangling":
        target.symlink_to(tmp_path / "nowhere")
    elif kind == "fifo":
        os.mkfifo(target)  # an open without O_NONBLOCK would wait here for ever
    elif kind == "device":
        target.symlink_to("/dev/zero")
    elif kind == "folder":
        target.mkdir()
    else:
        os.link(secret, target)
    with pytest.raises(UnsafeOutput) as caught:
        copy_output(work, "model.pth", 1 << 20, tmp_path / "dest")
    assert caught.value.code == "unsafe_output"
    assert "model.pth" in str(caught.value) and "secret" not in str(caught.value)
    assert not (tmp_path / "dest").exists()


def test_a_file_over_its_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    with (tmp_path / "metrics.json").open("wb") as fh:
        fh.truncate(1 << 30)  # sparse: a read would take a gigabyte of memory
    with pytest.raises(UnsafeOutput) as caught:
        read_output(tmp_path, "metrics.json", 64 << 10)
    assert caught.value.code == "output_too_large"


def test_a_work_folder_replaced_by_a_link_is_not_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "model.pth").write_text("x")
    (tmp_path / "work").symlink_to(real)
    with pytest.raises(OSError):
        read_output(tmp_path / "work", "model.pth", 100)


def test_text_from_the_coordinator_prints_as_one_line_on_a_terminal() -> None:
    forged = "ops\n2026-12-02 05:00:00  admin  user.disable  victim\x1b[2J\u202e"
    shown = clean(forged)
    assert "\n" not in shown and "\x1b" not in shown and "\u202e" not in shown
    assert shown.startswith("ops\\x0a2026") and "\\x1b[2J" in shown and "\\u202e" in shown
