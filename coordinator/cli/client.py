"""The CLI's HTTP client: typed calls, and errors turned into one clear line."""

from __future__ import annotations

import io
import json
import os
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

import click
import httpx
import msgspec

from gridx.coordinator.cli.screen import clean
from gridx.schemas.errors import ErrorBody
from gridx.schemas.jobs import JobConfig, JobDetail, JobSummary
from gridx.schemas.nodes import DatasetSummary, NodeInfo
from gridx.schemas.sizes import human

T = TypeVar("T")


SHOW_UPLOAD_BYTES = 8_000_000
"""Uploads from this size on show a progress bar (a smaller one is over in a moment)."""


class Counted:
    """A file being uploaded that tells `seen` how many bytes each read took."""

    def __init__(self, fh: BinaryIO, seen: Callable[[int], None]) -> None:
        self.fh = fh
        self.seen = seen

    def read(self, size: int = -1) -> bytes:
        chunk = self.fh.read(size)
        self.seen(len(chunk))
        return chunk

    def fileno(self) -> int:  # (httpx sizes the part from it)
        return self.fh.fileno()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.fh.seek(offset, whence)

    def tell(self) -> int:
        return self.fh.tell()


class Unreachable(click.ClickException):
    """No answer from the coordinator at all (down, restarting, the wrong address)."""


class ApiClient:
    """Calls the coordinator's user routes with an API key."""

    def __init__(
        self, url: str, api_key: str, timeout: float = 60.0, ca_file: str | None = None
    ) -> None:
        """`ca_file`: a CA bundle to trust for an https coordinator (default: the system's).

        Raises:
            click.ClickException: `url` is not an http(s) URL (a host alone, say).
        """
        self.url = url.rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise click.ClickException(
                f"the coordinator's URL {url!r} has no scheme: use http://{url} or "
                f"https://{url} (--url / GRIDX_URL)"
            )
        self.names: dict[str, str] = {}
        """How the command's user wrote each field (`--timeout` for `task_timeout_s`)."""
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(timeout, connect=10),
            verify=ssl.create_default_context(cafile=ca_file) if ca_file else True,
        )

    def call(self, method: str, path: str, kind: type[T], **kwargs: object) -> T:
        """One request, its answer decoded as `kind`; an error is one clear line."""
        try:
            resp = self.http.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise Unreachable(unreachable(self.url, exc)) from exc
        if resp.status_code >= 400:
            raise click.ClickException(
                describe_error(resp.status_code, resp.content, self.url, self.names)
            )
        if resp.status_code == 204:
            return None  # type: ignore[return-value]
        try:
            return msgspec.json.decode(resp.content, type=kind)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise click.ClickException(not_gridx(self.url, resp.status_code)) from exc

    def submit(
        self,
        config: JobConfig | dict[str, object],
        train: Path,
        requirements: Path | None,
        data: Path | None,
        init_model: Path | None = None,
        evaluation: tuple[Path, Path] | None = None,
        progress: bool = False,
    ) -> JobDetail:
        """Upload a job (files are streamed from disk); the coordinator validates `config`.
        With `progress`, uploads past `SHOW_UPLOAD_BYTES` draw a bar on stderr."""
        # a .zip is a project (a folder packed by `cli/project.py`), else the script itself
        field, name = (
            ("project", "project.zip") if train.suffix == ".zip" else ("train_py", "train.py")
        )
        handles = {field: (name, train.open("rb"))}
        if requirements:
            handles["requirements"] = ("requirements.txt", requirements.open("rb"))
        if data:
            handles["data"] = (data.name, data.open("rb"))
        if init_model:
            handles["init_model"] = (init_model.name, init_model.open("rb"))
        if evaluation:  # (evaluate.py, test data)
            handles["evaluate_py"] = ("evaluate.py", evaluation[0].open("rb"))
            handles["test_data"] = (evaluation[1].name, evaluation[1].open("rb"))
        total = sum(os.fstat(fh.fileno()).st_size for _, fh in handles.values())
        shown = progress and total >= SHOW_UPLOAD_BYTES
        with click.progressbar(
            length=total,
            label=f"uploading {human(total)}",
            file=sys.stderr if shown else io.StringIO(),
            show_eta=True,
        ) as bar:
            files = {k: (n, Counted(fh, bar.update)) for k, (n, fh) in handles.items()}
            try:
                return self.call(
                    "POST",
                    "/jobs/",
                    JobDetail,
                    files=files,
                    data={"config": msgspec.json.encode(config).decode()},
                )
            finally:
                for _, fh in handles.values():
                    fh.close()

    def jobs(self) -> list[JobSummary]:
        """The caller's jobs."""
        return self.call("GET", "/jobs/", list[JobSummary])

    def job(self, job_id: str) -> JobDetail:
        """One job in full."""
        return self.call("GET", f"/jobs/{job_id}", JobDetail)

    def cancel(self, job_id: str) -> JobSummary:
        """Cancel a job."""
        return self.call("POST", f"/jobs/{job_id}/cancel", JobSummary)

    def nodes(self) -> list[NodeInfo]:
        """The caller's nodes."""
        return self.call("GET", "/nodes", list[NodeInfo])

    def datasets(self) -> list[DatasetSummary]:
        """The datasets online nodes hold."""
        return self.call("GET", "/datasets", list[DatasetSummary])

    def download(self, job_id: str, fmt: str, dest: Path, round_idx: int | None = None) -> Path:
        """Save the final model (or round `round_idx`'s, from 0) to `dest`."""
        params: dict[str, str | int] = {"format": fmt}
        if round_idx is not None:
            params["round"] = round_idx
        try:
            with self.http.stream("GET", f"/jobs/{job_id}/model", params=params) as resp:
                if resp.status_code >= 400:
                    raise click.ClickException(describe_error(resp.status_code, resp.read()))
                dest.parent.mkdir(parents=True, exist_ok=True)
                with dest.open("wb") as fh:
                    for chunk in resp.iter_bytes():
                        fh.write(chunk)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"download failed: {exc}") from exc
        return dest


def not_gridx(url: str, status: int) -> str:
    """What to say when a server answers in a way no Grid-X coordinator does."""
    return (
        f"{url} answered (HTTP {status}) but is not a Grid-X coordinator; check --url / GRIDX_URL"
    )


def unreachable(url: str, exc: httpx.HTTPError) -> str:
    """Why no answer came from `url`, and what to try."""
    if "WRONG_VERSION_NUMBER" in str(exc) or "record layer failure" in str(exc):
        plain = "http://" + url.removeprefix("https://")
        return (
            f"{url} does not speak TLS (it looks like a plain-HTTP server): use {plain}, or "
            "start the coordinator with --tls-cert/--tls-key"
        )
    return (
        f"cannot reach the coordinator at {url} ({exc}); is it running? "
        "(`gridx coordinator start`, or set --url / GRIDX_URL)"
    )


def describe_error(
    status: int, payload: bytes, url: str = "the server", names: dict[str, str] | None = None
) -> str:
    """One line from an error answer (control characters it carries shown, never obeyed);
    `names`: how the user wrote each field (`task_timeout_s` is `--timeout`)."""
    return clean(_describe_error(status, payload, url, names or {}))


def _describe_error(status: int, payload: bytes, url: str, names: dict[str, str]) -> str:
    try:
        body = msgspec.json.decode(payload, type=ErrorBody)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return not_gridx(url, status)

    def said(message: str) -> str:
        for field, name in names.items():
            message = message.replace(f"`{field}`", name)
        return message

    tag = f"[HTTP {status} {body.code}]"
    if len(body.errors) > 1:
        each = "; ".join(
            said(m if f"`{e.field}`" in m else f"`{e.field}`: {m}")
            for e in body.errors
            for m in [e.message.removeprefix("invalid job config: ")]
        )
        return f"{len(body.errors)} invalid settings: {each} {tag}"
    where = ""
    if body.field and f"`{body.field}`" not in body.message:
        where = f" ({names[body.field]})" if body.field in names else f" (field `{body.field}`)"
    return f"{said(body.message)}{where} {tag}"


def to_json(value: object) -> str:
    """Pretty JSON for `--json` output."""
    return json.dumps(msgspec.to_builtins(value), indent=2)
