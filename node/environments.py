"""A job's requirements.txt: checked, then installed from wheels only, so no job code runs.

Installing a wheel unpacks files and writes metadata; it runs nothing from the package. Building
an sdist runs its build backend, which is arbitrary code: nodes never do that. So:
- `check_requirements` accepts only named requirements (`name[extras] specifiers ; marker`):
  no options (`-e`, `-r`, `--index-url`, ...) and no direct references (`pkg @ URL`), which pip
  would build even under `--only-binary :all:`.
- pip runs with `--only-binary :all:`; a requirement with no wheel for this platform is refused
  with the reason `requirements_need_build`.
The process executor installs into a virtualenv per requirements hash, which tasks then see
read-only inside the sandbox; each environment sees the node's own packages through a `.pth`
file naming the node interpreter's site-packages (`--system-site-packages` would skip a
virtualenv's), so a requirement that is already there (torch, numpy) is never downloaded again,
and the node's frameworks are pinned (`wheels.PINNED`).

What runs where: on the host, the node's own pip only reads the index and fetches files, with
the node's interpreter (never the environment's): it plans (`--dry-run --report`: metadata) and
downloads the planned wheels (`pip download --no-deps`: files saved, nothing unpacked), showing
the download as progress (`wheels.watch`). Unpacking them into the environment is done by
`install`, which the executor runs inside the task's sandbox (no network, the task's user, only
the wheels and the environment's folder writable).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from gridx.node import wheels
from gridx.node.errors import RequirementsError
from gridx.schemas.requirements import RequirementProblem, requirement_lines

INSTALL_TIMEOUT_S = 900
_SITE_PATHS = "import site; print(chr(10).join(site.getsitepackages()))"
_PURELIB = (  # an environment's site-packages, found by the node's interpreter, not the env's
    "import sys, sysconfig; print(sysconfig.get_path('purelib', 'venv', "
    "vars={'base': sys.argv[1], 'platbase': sys.argv[1]}))"
)
Install = Callable[[list[str], Path, list[Path]], Awaitable[tuple[int, str]]]
"""Run a command in the task's sandbox, `folder` writable and the paths given read-only:
(exit status, output tail)."""
WHEELS_ONLY = ("--only-binary", ":all:", "--disable-pip-version-check", "--no-input")
_NOT_FOUND = re.compile(r"No matching distribution found for ([A-Za-z0-9._-]+)")


def check_requirements(text: str) -> list[str]:
    """The requirement lines of `text` (`schemas.requirements`, as the coordinator checked).

    Raises:
        RequirementsError: a line a node does not accept, with its reason code.
    """
    try:
        return requirement_lines(text)
    except RequirementProblem as exc:
        raise RequirementsError(str(exc), code=exc.code) from exc


async def run_pip(*cmd: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a command (pip) to the end; (exit status, last 8 KB of its output)."""
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **env} if env else None,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), INSTALL_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, "timed out"
    return proc.returncode or 0, out.decode("utf-8", "replace")[-8192:]


async def explain_failure(base_python: str, out: str, what: str) -> RequirementsError:
    """pip with wheels only found nothing for a package: if the index has it at all, only a
    source build could install it (`requirements_need_build`)."""
    missing = _NOT_FOUND.search(out)
    if missing:
        # only asks the index which versions exist: nothing is downloaded, built or run
        rc, versions = await run_pip(
            base_python, "-m", "pip", "index", "versions", missing.group(1), "--no-input"
        )
        if rc == 0 and "versions:" in versions.lower():
            return RequirementsError(
                f"{missing.group(1)} has no wheel for this node's platform, only a source "
                "distribution; nodes never run a package's build (it is arbitrary code)",
                out,
                code="requirements_need_build",
            )
    return RequirementsError(what, out)


def conflict(lines: list[str], pins: list[str], out: str = "") -> RequirementsError | None:
    """A requirement the node's pinned frameworks cannot meet: asked for directly (a line
    whose version excludes the node's), or through another package (pip's ResolutionImpossible
    naming it). None when there is none."""
    for pin in pins:
        name, version = pin.split("==", 1)
        for line in lines:
            req = Requirement(line)
            if canonicalize_name(req.name) != name:
                continue
            if not req.specifier.contains(version, prereleases=True):
                return RequirementsError(
                    f"requirements.txt asks for {line}; this node provides {name} {version} and "
                    "never downloads a second copy: loosen that line (or leave it out)",
                    code="requirements_conflict",
                )
        if "ResolutionImpossible" in out and re.search(rf"\b{re.escape(name)}\b", out):
            return RequirementsError(
                f"a package in requirements.txt needs another {name} than this node's {version} "
                "(nodes never download a second copy): pin versions that work with it",
                out,
                code="requirements_conflict",
            )
    return None


async def node_pins(python: str) -> list[str]:
    """`name==version` of the frameworks `python` already has (see wheels.PINNED)."""
    rc, out = await run_pip(python, "-c", wheels.PINS_SCRIPT)
    return out.split() if rc == 0 else []


async def plan(
    pip: list[str], checked: Path, pins: list[str], tmp: Path, extra: tuple[str, ...] = ()
) -> list[wheels.Wheel]:
    """What `pip install -r checked` would download, with sizes (a dry run: metadata only),
    against the environment `pip` runs in (`extra`: another target, e.g. an image's platform).

    Raises:
        RequirementsError: nothing installable (no wheel, a conflict with a pinned framework).
    """
    report = tmp / "report.json"
    cons = wheels.constraints(pins, tmp)
    rc, out = await run_pip(
        *pip,
        "install",
        "--dry-run",
        "--report",
        str(report),
        "-q",
        *WHEELS_ONLY,
        *extra,
        "-c",
        str(cons),
        "-r",
        str(checked),
        env={"TMPDIR": str(tmp)},
    )
    if rc != 0:
        lines = check_requirements(checked.read_text())
        what = "pip could not install requirements.txt"
        raise conflict(lines, pins, out) or await explain_failure(pip[0], out, what)
    return await wheels.with_sizes(wheels.parse_report(report.read_bytes()))


async def fetch(
    python: str,
    needed: list[wheels.Wheel],
    into: Path,
    tmp: Path,
    progress: wheels.Progress,
    extra: tuple[str, ...] = (),
) -> None:
    """Download the planned wheels into `into` (files only: nothing is unpacked or run),
    telling `progress` how much arrived.

    Raises:
        RequirementsError: pip could not fetch them.
    """
    download = asyncio.ensure_future(
        run_pip(
            python,
            "-m",
            "pip",
            "download",
            "--no-deps",
            *WHEELS_ONLY,
            *extra,
            "-q",
            "-d",
            str(into),
            *(w.pin for w in needed),
            env={"TMPDIR": str(tmp)},
        )
    )
    rc, out = await wheels.watch(download, needed, [tmp, into], progress)
    if rc != 0:
        raise await explain_failure(python, out, "pip could not fetch the wheels")
    for path in (into, *into.iterdir()):  # readable by the sandbox's user, who unpacks them
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


async def ensure_env(
    requirements: Path,
    sha256: str,
    cache_dir: Path,
    base_python: str,
    install: Install,
    progress: wheels.Progress = wheels.quiet,
) -> str:
    """The interpreter of an environment with `requirements` installed (built once per hash):
    planned and downloaded on the host, unpacked by `install` in the sandbox; `progress` hears
    what is being downloaded and installed.

    Raises:
        RequirementsError: rejected, needs a build, conflicts with the node's frameworks, or
            pip failed.
    """
    lines = check_requirements(requirements.read_text())
    if not lines:
        return base_python
    env_dir = cache_dir / sha256[:16]
    python = env_dir / "bin" / "python"
    if (env_dir / ".ready").exists():
        return str(python)
    shutil.rmtree(env_dir, ignore_errors=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    progress("creating the environment")
    await _new_venv(base_python, env_dir)
    try:
        with wheels.pip_tmp(cache_dir / ".tmp") as tmp:
            checked = tmp / "requirements.txt"  # the checked lines, never the job's file
            checked.write_text("\n".join(lines) + "\n")
            pins = await node_pins(base_python)
            if clash := conflict(lines, pins):
                raise clash
            # planned against the node's own packages, which the environment sees too
            needed = await plan([base_python, "-m", "pip"], checked, pins, tmp)
            if needed:
                wheelhouse = tmp / "wheels"
                await fetch(base_python, needed, wheelhouse, tmp, progress)
                progress(f"installing {wheels.describe(needed)} in the sandbox")
                await _unpack(install, base_python, wheelhouse, env_dir)
    except BaseException:
        shutil.rmtree(env_dir, ignore_errors=True)
        raise
    (env_dir / ".ready").touch()
    return str(python)


async def _new_venv(base_python: str, env_dir: Path) -> None:
    """An empty virtualenv at `env_dir` that also sees the node's own packages (torch).

    Raises:
        RequirementsError: it could not be made.
    """
    rc, out = await run_pip(base_python, "-m", "venv", "--without-pip", str(env_dir))
    rc2, base_paths = await run_pip(base_python, "-c", _SITE_PATHS)
    rc3, purelib = await run_pip(base_python, "-c", _PURELIB, str(env_dir))
    if rc or rc2 or rc3:
        raise RequirementsError("could not create a virtual environment", out + purelib)
    Path(purelib.strip(), "_gridx_base.pth").write_text(base_paths)


async def _unpack(install: Install, base_python: str, wheelhouse: Path, env_dir: Path) -> None:
    """The downloaded wheels unpacked into `env_dir` by `install`, inside the task's sandbox
    (offline, no dependencies resolved, nothing compiled: a wheel runs no code to install).

    Raises:
        RequirementsError: pip failed.
    """
    command = [
        base_python,
        "-m",
        "pip",
        "install",
        "--no-index",
        "--no-deps",
        "--ignore-installed",
        "--no-compile",
        *WHEELS_ONLY,
        "-q",
        "--prefix",
        str(env_dir),
        *map(str, sorted(wheelhouse.glob("*.whl"))),
    ]
    rc, out = await install(command, env_dir, [wheelhouse])
    if rc != 0:
        raise RequirementsError("installing the wheels failed", out)
