"""Credentials, ownership, size limits and validation, through the real app."""

from __future__ import annotations

import io
import zipfile

import msgspec

from gridx.coordinator.cli.client import describe_error
from gridx.schemas.jobs import JobConfig
from tests.api.helpers import CSV, TRAIN, claim, register, submit
from tests.support.api import Api, auth


def test_missing_or_wrong_credentials_are_401_with_a_json_body(api: Api) -> None:
    for headers in ({}, auth("gxk_wrong"), {"Authorization": "Basic abc"}):
        r = api.client.get("/jobs/", headers=headers)
        assert r.status_code == 401
        assert r.json()["code"] == "unauthorized"
    node = register(api, api.alice)
    assert api.client.post("/agent/heartbeat", json={}, headers=api.alice).status_code == 401
    assert api.client.post("/agent/heartbeat", json={}, headers=auth("gxn_nope")).status_code == 401
    assert api.client.post("/agent/heartbeat", json={}, headers=node).status_code == 200
    # a node token is not an API key
    assert api.client.get("/jobs/", headers=node).status_code == 401
    assert api.client.post("/agent/register", json={"name": "x"}).status_code == 401


def test_another_users_job_is_404_everywhere(api: Api) -> None:
    r = submit(api, api.alice)
    assert r.status_code == 201, r.text
    job_id = r.json()["job"]["id"]
    for method, path in (
        ("GET", f"/jobs/{job_id}"),
        ("POST", f"/jobs/{job_id}/cancel"),
        ("GET", f"/jobs/{job_id}/model"),
    ):
        r = api.client.request(method, path, headers=api.bob)
        assert r.status_code == 404, (method, path)
        assert r.json()["code"] == "not_found"
    assert api.client.get("/jobs/", headers=api.bob).json() == []
    assert [j["id"] for j in api.client.get("/jobs/", headers=api.alice).json()] == [job_id]
    detail = api.client.get(f"/jobs/{job_id}", headers=api.alice).json()
    assert detail["job"]["status"] == "queued"


def test_oversized_uploads_are_413_and_leave_nothing_behind(api: Api) -> None:
    big = b"x,y\n" + b"1,2\n" * 60_000  # 240 kB > the 200 kB data cap
    r = submit(api, api.alice, files={"train_py": ("train.py", TRAIN), "data": ("d.csv", big)})
    assert r.status_code == 413
    body = r.json()
    assert body["code"] == "too_large" and body["field"] == "data"
    # in units people read, the setting that sets it, and what to do instead
    assert (
        "'data' is over its limit of 200.0 KB (200000 bytes: the coordinator's "
        in (body["message"])
    ), body
    assert "GRIDX_MAX_UPLOAD_BYTES); or keep the data on the nodes" in body["message"], body
    r = submit(api, api.alice, files={"train_py": ("train.py", b"#" * 20_000)})
    assert r.status_code == 413
    assert api.client.get("/jobs/", headers=api.alice).json() == []
    assert list((api.settings.blob_dir / "tmp").iterdir()) == []
    r = api.client.post(
        "/agent/register",
        content=b'{"name": "' + b"a" * 100_000 + b'"}',
        headers={**api.alice, "content-type": "application/json"},
    )
    assert r.status_code == 413


def test_invalid_config_is_422_naming_the_field(api: Api) -> None:
    cases = [
        ({"rounds": 0, "shards": 2}, "rounds"),
        ({"rounds": 1, "shards": 0}, "shards"),
        ({"rounds": 1, "epochs": "many"}, "epochs"),
        ({"rounds": 1, "strategy": "magic"}, "strategy.name"),
        ({"rounds": 1, "shards": 2, "strategy": {"name": "krum", "f": 1}}, "strategy.f"),
        ({"rounds": 1, "strategy": {"name": "trimmed_mean", "beta": 0.5}}, "strategy.beta"),
        ({"rounds": 1, "strategy": {"name": "fedavg", "lr": 1}}, "strategy.lr"),
        ({"rounds": 1, "shards": 50}, "shards"),  # 20 CSV rows cannot make 50 shards
    ]
    for config, field in cases:
        r = submit(api, api.alice, config)
        assert r.status_code == 422, (config, r.text)
        assert r.json()["field"] == field, (config, r.json())
    r = submit(api, api.alice, files={"data": ("d.csv", CSV.encode())})
    assert r.status_code == 422 and r.json()["field"] == "train_py"
    r = submit(api, api.alice, {"rounds": 0}, files={"data": ("d.csv", CSV.encode())})
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"rounds", "train_py"}
    bad = {"rounds": 0, "shards": -3, "strategy": {"name": "krum", "f": 5}, "bogus": 1}
    r = submit(api, api.alice, bad)
    assert r.status_code == 422 and r.json()["field"] == "rounds"
    # every bad field at once; Krum's f is judged against the shards only once they are valid
    assert [e["field"] for e in r.json()["errors"]] == ["rounds", "shards", "bogus"], r.json()
    r = submit(api, api.alice, {**bad, "shards": 4, "bogus": None})
    assert [e["field"] for e in r.json()["errors"]] == ["rounds", "bogus", "strategy.f"], r.json()
    line = describe_error(r.status_code, r.content)
    assert line.startswith("3 invalid settings: `rounds` must be a whole number >= 1, not 0; ")
    assert "`strategy.f`: Krum" in line, line
    named = describe_error(r.status_code, r.content, names={"rounds": "--rounds"})
    assert named.startswith("3 invalid settings: --rounds must be a whole number >= 1, not 0")
    assert "\n" not in line and line.endswith("[HTTP 422 invalid_config]"), line
    r = submit(api, api.alice, files={"train_py": ("t.py", TRAIN), "evil": ("x", b"1")})
    assert r.status_code == 422 and r.json()["field"] == "evil"
    r = api.client.post("/jobs/", headers=api.alice, json={"rounds": 1})
    assert r.status_code == 422 and "multipart" in r.json()["message"]
    assert api.client.get("/jobs/", headers=api.alice).json() == []


def test_malformed_json_is_400_and_bad_fields_are_422(api: Api) -> None:
    headers = {**api.alice, "content-type": "application/json"}
    r = api.client.post("/agent/register", content=b"{not json", headers=headers)
    assert r.status_code == 400 and r.json()["code"] == "bad_request"
    r = api.client.post("/agent/register", json={"name": ""}, headers=api.alice)
    assert r.status_code == 422 and r.json()["field"] == "name"
    node = register(api, api.alice)
    r = api.client.post("/agent/heartbeat", json={"running": "x", "extra": 1}, headers=node)
    assert r.status_code == 422


def test_signed_links_expire_and_cannot_be_retargeted(api: Api) -> None:
    submit(api, api.alice)
    node = register(api, api.alice)
    task = claim(api, node)
    assert task is not None
    code_url = task["code"]["url"]
    r = api.client.get(code_url)
    assert r.status_code == 200 and r.content == TRAIN
    other = code_url.replace(task["code"]["sha256"], task["data"]["sha256"])
    assert api.client.get(other).status_code == 403
    api.clock.advance(api.settings.signed_url_s + 1)
    r = api.client.get(code_url)
    assert r.status_code == 403 and "expired" in r.json()["message"]


def test_openapi_schema_lists_the_routes(api: Api) -> None:
    r = api.client.get("/schema/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for p in (
        "/agent/register",
        "/agent/heartbeat",
        "/agent/request_task",
        "/agent/complete_task",
        "/agent/fail_task",
        "/jobs",
        "/jobs/{job_id}",
        "/healthz",
    ):
        assert p in paths, p


def test_openapi_declares_the_bearer_scheme_the_bodies_and_each_routes_errors(api: Api) -> None:
    doc = api.client.get("/schema/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert doc["security"] == [{"bearer": []}]
    paths = doc["paths"]
    submit = paths["/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert submit["schema"]["required"] == ["train_py"]
    assert submit["schema"]["properties"]["data"] == {"type": "string", "format": "binary"}
    assert submit["schema"]["properties"]["config"] == {"$ref": "#/components/schemas/JobConfig"}
    assert submit["encoding"]["config"]["contentType"] == "application/json"
    upload = paths["/agent/results/{task_id}"]["put"]
    assert "application/octet-stream" in upload["requestBody"]["content"]
    assert upload["security"] == [{}]  # the signed link is the credential
    feed = paths["/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]
    assert list(feed) == ["text/event-stream"]
    assert sorted(paths["/healthz"]["get"]["responses"]) == ["200", "500"]
    assert "507" not in paths["/jobs/{job_id}"]["get"]["responses"]
    assert {"401", "404", "409"} <= set(paths["/jobs/{job_id}/cancel"]["post"]["responses"])
    assert "429" in paths["/agent/register"]["post"]["responses"]


def test_the_docs_page_loads_swagger_ui_from_the_coordinator(api: Api) -> None:
    page = api.client.get("/schema/swagger").text
    assert "/api-docs/swagger-ui-bundle.js" in page and "/api-docs/swagger-ui.css" in page
    assert "cdn" not in page.lower() and "https://" not in page


def test_deeply_nested_json_is_400_not_a_crash(api: Api) -> None:
    deep = b"[" * 30_000 + b"]" * 30_000  # 60 KB: under the size cap, past any decoder's depth
    headers = {**api.alice, "content-type": "application/json"}
    r = api.client.post("/agent/register", content=deep, headers=headers)
    assert r.status_code == 400 and r.json()["code"] == "bad_request", r.text
    node = register(api, api.alice)
    r = api.client.post("/agent/heartbeat", content=deep, headers={**node, **headers})
    assert r.status_code == 400 and r.json()["code"] == "bad_request", r.text
    r = api.client.post(
        "/jobs/",
        headers=api.alice,
        files={"train_py": ("train.py", io.BytesIO(TRAIN))},
        data={"config": deep.decode()},
    )
    assert r.status_code == 400 and r.json()["field"] == "config", r.text
    assert api.client.get("/jobs/", headers=api.alice).json() == []


def test_an_empty_data_file_is_422_naming_the_field(api: Api) -> None:
    r = submit(api, api.alice, files={"train_py": ("train.py", TRAIN), "data": ("d.csv", b"")})
    assert r.status_code == 422 and r.json()["field"] == "data", r.text
    assert "empty" in r.json()["message"]
    r = submit(api, api.alice, files={"train_py": ("train.py", TRAIN), "data": ("d.csv", b"x\n")})
    assert r.status_code == 422 and r.json()["field"] == "data", r.text  # a header, no rows
    assert api.client.get("/jobs/", headers=api.alice).json() == []


def test_partitioners_shape_the_shards_and_bad_ones_are_422(api: Api) -> None:
    table = "x,site\n" + "".join(f"{i},h{i % 3}\n" for i in range(30))
    files = {"train_py": ("train.py", TRAIN), "data": ("d.csv", table.encode())}
    config = {"rounds": 1, "shards": 3, "partition": {"name": "by_column", "column": "site"}}
    r = submit(api, api.alice, config, files=files)
    assert r.status_code == 201, r.text
    assert [t["rows"] for t in r.json()["tasks"]] == [10, 10, 10]
    for bad, field in (
        ({"name": "by_column", "column": "hospital"}, "partition.column"),
        ({"name": "dirichlet", "column": "site", "alpha": 0}, "partition.alpha"),
        ({"name": "by_row"}, "partition.name"),
    ):
        r = submit(api, api.alice, {**config, "partition": bad}, files=files)
        assert r.status_code == 422 and r.json()["field"] == field, (bad, r.text)
    files["data"] = ("d.bin", b"\x00\x01")  # not a table: nothing to split by a column
    r = submit(api, api.alice, config, files=files)
    assert r.status_code == 422 and r.json()["field"] == "partition", r.text
    assert len(api.client.get("/jobs/", headers=api.alice).json()) == 1


def test_an_archive_is_sharded_by_member_and_a_node_gets_its_shard(api: Api) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(7):
            zf.writestr(f"{'cats' if i % 2 else 'dogs'}/{i}.png", f"img{i}".encode())
    files = {"train_py": ("train.py", TRAIN), "data": ("images.zip", buf.getvalue())}
    r = submit(api, api.alice, {"rounds": 1, "shards": 2}, files=files)
    assert r.status_code == 201, r.text
    assert [t["rows"] for t in r.json()["tasks"]] == [4, 3]  # files per shard: the weights
    node = register(api, api.alice)
    got: set[str] = set()
    for _ in range(2):
        task = claim(api, node)
        assert task is not None and task["data"]["name"] == "images.zip"
        shard = api.client.get(task["data"]["url"])
        assert shard.status_code == 200
        names = set(zipfile.ZipFile(io.BytesIO(shard.content)).namelist())
        assert names and not names & got
        got |= names
    assert got == {f"{'cats' if i % 2 else 'dogs'}/{i}.png" for i in range(7)}
    r = submit(
        api, api.alice, {"rounds": 1, "shards": 2}, files={**files, "data": ("x.zip", b"no")}
    )
    assert r.status_code == 422 and r.json()["field"] == "data", r.text


def test_file_names_are_stored_as_base_names_and_dot_dot_is_refused(api: Api) -> None:
    r = submit(
        api,
        api.alice,
        files={"train_py": ("train.py", TRAIN), "data": ("../../../../etc/passwd.csv", b"x\n1\n")},
    )
    assert r.status_code == 422 and r.json()["field"] == "data", r.text
    assert api.client.get("/jobs/", headers=api.alice).json() == []
    r = submit(
        api,
        api.alice,
        files={
            "train_py": ("train.py", TRAIN),
            "data": ("C:\\Users\\me/data.csv", CSV.encode()),
        },
    )
    assert r.status_code == 201, r.text
    node = register(api, api.alice)
    task = claim(api, node)
    assert task is not None and task["data"]["name"] == "data.csv"


def test_path_traversal_in_file_names_and_blob_keys_reaches_nothing(api: Api) -> None:
    hostile = "/etc/passwd.csv"
    r = submit(
        api,
        api.alice,
        files={"train_py": ("../../train.py", TRAIN), "data": (hostile, CSV.encode())},
    )
    assert r.status_code == 201
    store = api.settings.blob_dir.resolve()
    for path in api.settings.data_dir.rglob("*"):
        assert path.resolve().is_relative_to(api.settings.data_dir.resolve())
    assert not (store.parent / "etc").exists()
    for key in ("../../gridx.db", "..%2F..%2Fgridx.db", "%2e%2e/signing.key"):
        r = api.client.get(f"/blobs/{key}?exp=99999999999999&sig=00&task=t&lease=l")
        assert r.status_code in (403, 404), key
        assert b"SQLite" not in r.content


def test_hostile_characters_in_signed_links_are_refused_not_crashing(api: Api) -> None:
    # found by schemathesis: non-ASCII signatures used to raise inside compare_digest (500)
    r = api.client.get("/blobs/%F3%9F%84%91%C2%B1?sig=%F1%B3%8E%B5%C3%9C&exp=137&task=t&lease=l")
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = api.client.put(
        "/agent/results/%F2%8B%BF%94N?exp=-5&lease=%40%2B&sig=%C3%9E%F2%89%8C%84", content=b"x"
    )
    assert r.status_code == 403


def test_the_defaults_a_job_gets_are_one_route_away(api: Api) -> None:
    r = api.client.get("/jobs/defaults", headers=api.alice)
    assert r.status_code == 200, r.text
    assert r.json() == msgspec.to_builtins(JobConfig())
    assert api.client.get("/jobs/defaults").status_code == 401
