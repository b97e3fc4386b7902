"""Per-job Python environments for requirements.txt, cached by the file's sha256.

Installing runs outside the sandbox (it needs the package index); training then runs inside it
with no network. Each environment sees the node's own packages through a `.pth` file naming the
node interpreter's site-packages (`--system-site-packages` would skip a virtualenv's), so a
requirement that is already there (torch, numpy) costs nothing and is never downloaded again.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

INSTALL_TIMEOUT_S = 900
_SITE_PATHS = "import site; print(chr(10).join(site.getsitepackages()))"
_PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'])"


class RequirementsError(Exception):
    """requirements.txt could not be installed; `tail` holds pip's last output."""

    def __init__(self, message: str, tail: str) -> None:
        super().__init__(message)
        self.tail = tail


async def _run(*cmd: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), INSTALL_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, "timed out"
    return proc.returncode or 0, out.decode("utf-8", "replace")[-8192:]


async def ensure_env(requirements: Path, sha256: str, cache_dir: Path, base_python: str) -> str:
    """The interpreter of an environment with `requirements` installed (built once per hash).

    Raises:
        RequirementsError: pip failed.
    """
    if not requirements.read_text().strip():
        return base_python
    env_dir = cache_dir / sha256[:16]
    python = env_dir / "bin" / "python"
    if (env_dir / ".ready").exists():
        return str(python)
    shutil.rmtree(env_dir, ignore_errors=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    rc, out = await _run(base_python, "-m", "venv", "--without-pip", str(env_dir))
    if rc != 0:
        raise RequirementsError("could not create a virtual environment", out)
    rc, base_paths = await _run(base_python, "-c", _SITE_PATHS)
    rc2, purelib = await _run(str(python), "-c", _PURELIB)
    if rc or rc2:
        raise RequirementsError("could not inspect the virtual environment", base_paths + purelib)
    Path(purelib.strip(), "_gridx_base.pth").write_text(base_paths)
    rc, out = await _run(
        base_python,
        "-m",
        "pip",
        "--python",
        str(python),
        "install",
        "--disable-pip-version-check",
        "-q",
        "-r",
        str(requirements),
    )
    if rc != 0:
        shutil.rmtree(env_dir, ignore_errors=True)
        raise RequirementsError("pip could not install requirements.txt", out)
    (env_dir / ".ready").touch()
    return str(python)
