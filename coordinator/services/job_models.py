"""The models a job offers for download: its final model, and its checkpoints (each merged
round's, while the job runs; the last `keep_rounds` ones after it ended, whatever its end)."""

from __future__ import annotations

from pathlib import Path

from gridx.coordinator.db import blobs, jobs, rounds
from gridx.coordinator.db.users import UserRow
from gridx.coordinator.errors import Conflict, InvalidInput, NotFound
from gridx.coordinator.services.job_views import visible_job
from gridx.coordinator.services.runtime import Runtime


async def model_file(
    rt: Runtime, user: UserRow, job_id: str, fmt: str, round_idx: int | None = None
) -> Path:
    """The final model of a succeeded job, as `pth` or `safetensors`; or the model merged in
    round `round_idx` (a checkpoint: `.pth`, while the job runs or, for its last
    `keep_rounds` rounds, after it ended).

    Raises:
        Conflict: the job has no final model (yet), or that round is not merged yet.
        NotFound: no such round, or its model was not kept.
        InvalidInput: unknown format.
    """
    row = await visible_job(rt, user, job_id)
    if fmt not in ("pth", "safetensors"):
        raise InvalidInput("format must be 'pth' or 'safetensors'", field="format")
    sha: str | None
    if round_idx is not None:
        sha = await _checkpoint(rt, row, round_idx, fmt)
    else:
        sha = row.final_pth_sha if fmt == "pth" else row.final_st_sha
    if sha is None:
        merged = await rounds.last_merged(rt.db.reader, job_id)
        hint = (
            ""
            if merged is None
            else f"; its last merged round is {merged + 1}: --round {merged + 1}"
        )
        raise Conflict(
            f"job {job_id} is {row.status}; the final model exists once it has succeeded{hint}"
        )
    blob = await blobs.get(rt.db.reader, sha)
    if blob is None:
        raise NotFound("the model file is missing from storage")
    return await rt.storage.local_path(blob.storage_key)


async def _checkpoint(rt: Runtime, row: jobs.JobRow, idx: int, fmt: str) -> str:
    """The sha of round `idx`'s merged model.

    Raises:
        NotFound, Conflict, InvalidInput: see `model_file`.
    """
    rnd = await rounds.get(rt.db.reader, row.id, idx)
    if rnd is None:
        raise NotFound(f"job {row.id} has no round {idx + 1}")
    if rnd.output_sha is None:
        if rnd.status != "done":
            raise Conflict(f"round {idx + 1} of job {row.id} is {rnd.status}, not merged yet")
        raise NotFound(
            f"round {idx + 1}'s model was not kept: an ended job keeps its last keep_rounds "
            "rounds (submit with --keep-rounds N for more)"
        )
    if fmt == "safetensors":
        if rnd.output_sha != row.final_pth_sha or row.final_st_sha is None:
            raise InvalidInput("a round's checkpoint is a .pth state_dict", field="format")
        return row.final_st_sha
    return rnd.output_sha
