"""README line 1 on a stock Debian machine (no pip outside a venv, no bubblewrap, no Docker), as
root and as an ordinary user: it sets itself up and runs the demo to its accuracies."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.bare_debian import REPO, USER, BareDebian
from tests.support.package_index import make_wheel


def readme_line_1() -> str:
    """The first command of the README's quick start."""
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", quick, re.S)
    assert block, "the quick start has no bash block"
    return block.group(1).splitlines()[0].split("#", 1)[0].strip()


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> BareDebian:
    return BareDebian(tmp_path_factory.mktemp("bare") / "rootfs")


@pytest.mark.parametrize("user", ["root", USER])
def test_readme_line_1_runs_the_demo_on_a_stock_debian(machine: BareDebian, user: str) -> None:
    assert machine.run("pip --version; python3 -m pip --version; bwrap --version").returncode
    out = machine.run(readme_line_1(), user=user)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    # bubblewrap is missing here: the demo says so in one line and runs its own example anyway
    assert "note: no strong sandbox here" in out.stdout, out.stdout
    assert "sudo apt-get install bubblewrap" in out.stdout
    assert "held-out accuracy, federated (2 nodes):" in out.stdout, out.stdout
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["metric"] == "accuracy" and result["federated"] > 0.9, result
    assert result["federated"] > result["central"] - 0.03, result
    home = "root" if user == "root" else f"home/{user}"
    assert Path(machine.root, home, "gridx", ".venv", "bin", "just").exists()  # its own venv


def test_setup_asks_the_cpu_index_for_torch_where_no_gpu_answers(tmp_path: Path) -> None:
    """`infra/install_torch.sh` on a machine without a GPU whose CPU index answers: torch comes
    from there (PyPI's plain `torch==2.13.0` is the CUDA build). Here the index is ours, with a
    stand-in torch, and nothing of this machine's pip settings."""
    name, wheel, _ = make_wheel("torch", "2.13.0+cpu", {"torch/__init__.py": b"BUILD = 'cpu'\n"})
    (tmp_path / "index" / "torch").mkdir(parents=True)
    (tmp_path / "index" / name).write_bytes(wheel)
    sha = hashlib.sha256(wheel).hexdigest()
    link = f'<a href="../{name}#sha256={sha}">{name}</a>'
    (tmp_path / "index" / "torch" / "index.html").write_text(f"<html><body>{link}</body></html>")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "index"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        venv = tmp_path / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        out = subprocess.run(
            [str(REPO / "infra" / "install_torch.sh"), str(venv / "bin" / "python")],
            capture_output=True, text=True, timeout=300,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PIP_CONFIG_FILE": os.devnull,
                 "GRIDX_TORCH_CPU_INDEX": f"http://127.0.0.1:{server.server_address[1]}"},
        )  # fmt: skip
    finally:
        server.shutdown()
    assert out.returncode == 0, out.stderr
    assert "torch: no GPU here, the CPU build from http://127.0.0.1:" in out.stderr, out.stderr
    got = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import torch; print(torch.BUILD)"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert got.stdout.strip() == "cpu", got
