"""`infra/install_torch.sh` (the dev setup's and the worker bundle's one way to get torch) on a
machine without a GPU: the pinned release, the CPU build, and never a CUDA download. The indexes
are ours, on 127.0.0.1, with stand-in torch wheels, and nothing of this machine's pip settings."""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.bare_debian import REPO
from tests.support.package_index import make_wheel, served_folder

SCRIPT = REPO / "infra" / "install_torch.sh"
CUDA_REQUIRES = (
    'nvidia-cublas==13.0.0; platform_system == "Linux"',
    'triton==3.7.0; platform_system == "Linux"',
)


@contextlib.contextmanager
def served(folder: Path, version: str, build: str, requires: tuple[str, ...] = ()) -> Iterator[str]:
    """A PEP 503 index under `folder` with one stand-in torch, served on 127.0.0.1."""
    files = {"torch/__init__.py": f"BUILD = {build!r}\n".encode()}
    name, wheel, _ = make_wheel("torch", version, files, requires)
    (folder / "torch").mkdir(parents=True)
    (folder / name).write_bytes(wheel)
    link = f'<a href="../{name}#sha256={hashlib.sha256(wheel).hexdigest()}">{name}</a>'
    (folder / "torch" / "index.html").write_text(f"<html><body>{link}</body></html>")
    with served_folder(folder) as url:
        yield url


def install(
    tmp_path: Path, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    out = subprocess.run(
        [str(SCRIPT), str(venv / "bin" / "python"), *args],
        capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PIP_CONFIG_FILE": "/dev/null", **env},
    )  # fmt: skip
    return out, venv


def installed(venv: Path) -> str:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True, text=True, check=True,
    ).stdout.lower()  # fmt: skip


def test_the_cpu_index_serves_the_pinned_release(tmp_path: Path) -> None:
    """Where PyTorch's CPU index answers, torch comes from there, at the pinned release (PyPI's
    plain `torch==2.13.0` is the CUDA build); `GRIDX_TORCH_VERSION` moves the pin."""
    with served(tmp_path / "cpu", "2.9.1+cpu", "cpu") as cpu_index:
        out, venv = install(tmp_path, GRIDX_TORCH_CPU_INDEX=cpu_index, GRIDX_TORCH_VERSION="2.9.1")
    assert out.returncode == 0, out.stderr
    assert f"installing torch 2.9.1 (CPU-only build, from {cpu_index})" in out.stdout, out.stdout
    got = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import torch; print(torch.BUILD)"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert got.stdout.strip() == "cpu", got
    assert "torch==2.9.1+cpu" in installed(venv)


def test_a_cuda_build_is_refused_before_it_downloads(tmp_path: Path) -> None:
    """No GPU, the CPU index unreachable, and this machine's pip would bring the CUDA build
    (what PyPI gives on x86-64 and aarch64): one line saying which index to configure, exit 3,
    nothing installed."""
    with served(tmp_path / "pypi", "2.13.0", "cuda", CUDA_REQUIRES) as pypi:
        out, venv = install(
            tmp_path, "auto",
            GRIDX_TORCH_CPU_INDEX=(tmp_path / "unreachable").as_uri(), PIP_INDEX_URL=pypi,
        )  # fmt: skip
    assert out.returncode == 3, out.stdout + out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("torch: no GPU answers here"), out.stderr
    assert "set GRIDX_TORCH_CPU_INDEX to a mirror of that index" in line
    assert "installing" not in out.stdout
    assert "torch" not in installed(venv) and "nvidia" not in installed(venv)


def test_cuda_is_refused_where_no_gpu_answers(tmp_path: Path) -> None:
    out, venv = install(tmp_path, "cuda")
    assert out.returncode == 2, out
    assert "no NVIDIA GPU answers nvidia-smi here; use --torch cpu" in out.stderr
    assert "torch" not in installed(venv)
