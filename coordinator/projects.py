"""What a submission's code is checked for before anything is stored: a script compiles; a
project (a folder sent as one zip) holds only plain files inside it, its entry point among
them, every Python file compiling, under a cap on files and bytes; `requirements.txt` says only
what a node accepts, and pins no framework version that no node of the fleet has. Compiling
runs none of the code (and a parser pushed to its limits by hostile input is an error like any
other)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from gridx.coordinator.errors import InvalidInput
from gridx.schemas.projects import MAX_FILES, member_problem
from gridx.schemas.requirements import FRAMEWORKS, RequirementProblem, requirement_lines

MAX_SOURCE_BYTES = 4 << 20
"""Past this a Python file is not compiled at submit (the node will still run it)."""


def compile_problem(source: bytes, name: str) -> str | None:
    """Why `source` does not compile as Python (None: it does), as `file:line: message`."""
    if len(source) > MAX_SOURCE_BYTES:
        return None
    try:
        compile(source, name, "exec", dont_inherit=True)
    except SyntaxError as exc:  # IndentationError and TabError too
        where = f"{name}:{exc.lineno}" if exc.lineno else name
        return f"{where}: {exc.msg}"
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, absurd nesting
        return f"{name}: {type(exc).__name__}: {exc}"[:300]
    return None


def check_script(path: Path, field: str, name: str) -> None:
    """A single script must compile.

    Raises:
        InvalidInput: it does not (naming the file, the line and the field).
    """
    problem = compile_problem(path.read_bytes(), name)
    if problem is not None:
        raise InvalidInput(f"{name} does not compile: {problem}", field=field)


def check_project(path: Path, entry: str, max_bytes: int) -> list[str]:
    """The project's file names, once it is checked.

    Raises:
        InvalidInput (field `project`): not a zip, a member outside it, too many files or
            bytes, no `entry`, or a Python file that does not compile.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            problems = [p for i in zf.infolist() if (p := member_problem(i.filename.rstrip("/")))]
            if problems:
                raise _bad(f"project member {problems[0]}")
            if len(infos) > MAX_FILES:
                raise _bad(f"the project holds {len(infos)} files, over {MAX_FILES}")
            total = sum(i.file_size for i in infos)
            if total > max_bytes:
                raise _bad(
                    f"the project unpacks to {total} bytes, over {max_bytes} "
                    "(GRIDX_MAX_PROJECT_BYTES); list what it need not carry in .gridxignore"
                )
            names = [i.filename for i in infos]
            if entry not in names:
                raise _bad(f"the project has no {entry} at its top level (--entry names another)")
            for info in infos:
                if info.filename.endswith(".py"):
                    problem = compile_problem(zf.read(info), info.filename)
                    if problem is not None:
                        raise _bad(f"{info.filename} does not compile: {problem}")
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise _bad(f"the project is not a readable zip archive ({exc})") from exc
    return names


def _bad(message: str) -> InvalidInput:
    return InvalidInput(message, field="project")


def check_requirements(path: Path, fleet: dict[str, set[str]]) -> None:
    """`requirements.txt` as every node will read it, against the framework versions the
    fleet's nodes have (`fleet`: name -> versions; a framework no node reports is not judged).

    Raises:
        InvalidInput (field `requirements`): a line no node accepts, or a framework pin no
            node can meet (nodes never download a second torch).
    """
    try:
        lines = requirement_lines(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidInput("requirements.txt is not UTF-8 text", field="requirements") from exc
    except RequirementProblem as exc:
        raise InvalidInput(str(exc), field="requirements") from exc
    for line in lines:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        have = fleet.get(name)
        if name not in FRAMEWORKS or not have or not req.specifier:
            continue
        if not any(req.specifier.contains(v, prereleases=True) for v in have):
            raise InvalidInput(
                f"requirements.txt asks for {line}; the nodes provide {name} "
                f"{', '.join(sorted(have))} and never download another: loosen that line (or "
                "leave it out)",
                field="requirements",
            )
