"""Transfers that resume, through the real API: a download asks for the rest of a file with
`Range`; an upload goes in parts (`Upload-Offset` / `Upload-Length`), the coordinator says how
much it holds, refuses a part that does not continue it, and the finished file is the task's
result like any upload."""

from __future__ import annotations

import hashlib
import os

from tests.api.helpers import CSV, TRAIN, claim, complete, register, submit
from tests.support.api import Api


def _task(api: Api) -> tuple[dict[str, str], dict]:
    data = ("d.csv", (CSV * 50).encode())
    r = submit(
        api, api.alice, {"rounds": 1, "shards": 1}, {"train_py": ("t.py", TRAIN), "data": data}
    )
    assert r.status_code == 201, r.text
    node = register(api, api.alice)
    task = claim(api, node)
    assert task is not None
    return node, task


def test_a_download_resumes_from_a_byte_range(api: Api) -> None:
    _, task = _task(api)
    url, size = task["data"]["url"], task["data"]["size"]
    whole = api.client.get(url)
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    assert len(whole.content) == size
    rest = api.client.get(url, headers={"Range": "bytes=100-"})
    assert rest.status_code == 206, rest.text
    assert rest.headers["content-range"] == f"bytes 100-{size - 1}/{size}"
    assert rest.content == whole.content[100:]
    middle = api.client.get(url, headers={"Range": "bytes=10-19"})
    assert middle.status_code == 206 and middle.content == whole.content[10:20]
    past = api.client.get(url, headers={"Range": f"bytes={size}-"})
    assert past.status_code == 416 and past.json()["code"] == "range_not_satisfiable"
    several = api.client.get(url, headers={"Range": "bytes=0-1,5-6"})  # served whole
    assert several.status_code == 200 and several.content == whole.content


def test_an_upload_in_parts_resumes_where_the_coordinator_says(api: Api) -> None:
    node, task = _task(api)
    url = task["upload_url"]
    payload = os.urandom(300_000)
    total = str(len(payload))
    assert api.client.head(url).headers["upload-offset"] == "0"
    first = api.client.put(
        url, content=payload[:100_000], headers={"Upload-Offset": "0", "Upload-Length": total}
    )
    assert first.status_code == 202, first.text
    assert first.headers["upload-offset"] == "100000"
    assert api.client.head(url).headers["upload-offset"] == "100000"
    # a part that does not continue what the coordinator holds is refused, and changes nothing
    wrong = api.client.put(
        url, content=payload[50_000:], headers={"Upload-Offset": "50000", "Upload-Length": total}
    )
    assert wrong.status_code == 409 and wrong.json()["code"] == "upload_offset", wrong.text
    assert "holds 100000" in wrong.json()["message"]
    too_long = api.client.put(
        url,
        content=payload[100_000:] + b"x",
        headers={"Upload-Offset": "100000", "Upload-Length": total},
    )
    assert too_long.status_code == 400, too_long.text
    held = int(api.client.head(url).headers["upload-offset"])
    assert 100_000 <= held <= len(payload)  # (what came before the extra byte may be kept)
    rest = api.client.put(
        url, content=payload[held:], headers={"Upload-Offset": str(held), "Upload-Length": total}
    )
    assert rest.status_code == 201, rest.text
    sha = hashlib.sha256(payload).hexdigest()
    assert rest.json() == {"sha256": sha, "size": len(payload)}
    # the file is the task's result: completing names it (it is no weight file, so refused)
    done = complete(api, node, task, sha)
    assert done.status_code == 422 and done.json()["code"] == "invalid_weights", done.text
    body = api.client.get(f"/jobs/{task['job_id']}", headers=api.alice).json()
    assert body["tasks"][0]["uploaded_bytes"] == len(payload)


def test_resumable_headers_are_checked(api: Api) -> None:
    _, task = _task(api)
    url = task["upload_url"]
    only_one = api.client.put(url, content=b"x", headers={"Upload-Offset": "0"})
    assert only_one.status_code == 400 and "Upload-Length" in only_one.text
    over = api.client.put(
        url, content=b"x", headers={"Upload-Offset": "0", "Upload-Length": str(1 << 60)}
    )
    assert over.status_code == 413, over.text
    unsigned = api.client.head(url.replace("sig=", "sig=0"))
    assert unsigned.status_code in (401, 403)
