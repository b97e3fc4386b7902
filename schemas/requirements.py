"""What a job's `requirements.txt` may say, checked the same way by the coordinator at submit
and by every node before it installs: package names with versions, one a line, nothing else.
Options (`--index-url`, `-e`, `-r`) and direct references (`pkg @ URL`, paths) are refused: a
node installs wheels from its own index and never builds a package (a build runs its code)."""

from __future__ import annotations

from packaging.requirements import InvalidRequirement, Requirement

FRAMEWORKS = ("torch", "torchvision", "torchaudio")
"""What a node never downloads a second copy of: a job gets the node's own version, and a
requirement no node's version meets is refused at submit."""


class RequirementProblem(ValueError):
    """A line a node will not accept; `code` is the task's reason code for it."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def requirement_lines(text: str) -> list[str]:
    """The requirement lines of `text`, each a named requirement.

    Raises:
        RequirementProblem: `requirements_rejected` for an option line or a malformed line,
            `requirements_need_build` for a direct reference (a URL or path), which only a
            source build could install.
    """
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise RequirementProblem(
                f"requirements.txt line {number}: options such as {line.split()[0]!r} are not "
                "accepted; list packages by name (with versions), nodes install wheels from "
                "their own package index",
                "requirements_rejected",
            )
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise RequirementProblem(
                f"requirements.txt line {number}: {exc}", "requirements_rejected"
            ) from exc
        if req.url:
            raise RequirementProblem(
                f"requirements.txt line {number}: {req.name} @ {req.url} is a direct reference; "
                "nodes never build or fetch packages from URLs (a build runs the package's own "
                "code): name a package that has a wheel on the index",
                "requirements_need_build",
            )
        lines.append(line)
    return lines
