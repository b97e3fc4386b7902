"""The dashboard in a real Chromium against a real coordinator and two real nodes.

Needs the static build (`just web`) and Debian's Chromium; CI provides both, so there these
tests fail rather than skip when something is missing.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from gridx.coordinator.cli.cluster import LocalCluster, free_port, make_user
from tests.integration.conftest import FAST, REPO

WEB_OUT = REPO / "web" / "out"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
READY = (WEB_OUT / "index.html").exists() and Path(CHROMIUM).exists()
if not READY and os.environ.get("CI"):
    raise RuntimeError("CI must build the dashboard (just web) and install chromium (see .ci/run)")
pytestmark = pytest.mark.skipif(not READY, reason="dashboard not built or no chromium here")
DIGITS = REPO / "examples" / "digits"


@pytest.fixture(scope="module")
def static_origin() -> Iterator[tuple[str, Path]]:
    """The same static build on a second origin, as a CDN would serve it."""
    port = free_port()
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"gridx-cdn-{port}"
    shutil.copytree(WEB_OUT, root)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}", root
    server.shutdown()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory, static_origin) -> Iterator[LocalCluster]:
    """A coordinator whose CORS allow-list names the second origin, and two nodes."""
    cluster = LocalCluster(
        tmp_path_factory.mktemp("e2e") / "cluster",
        coordinator_env={
            **FAST,
            "GRIDX_CORS_ORIGINS": static_origin[0],
            "GRIDX_HISTORY_SAMPLE_S": "1",
        },
    )
    cluster.start()
    cluster.add_node("node-1")
    cluster.add_node("node-2")
    try:
        yield cluster
    finally:
        cluster.stop()


class Browser:
    """Chromium for the tests. Its pages skip the dashboard's Content-Security-Policy, which
    forbids evaluating strings, as Playwright's own polling (`wait_for_function`) does, unless
    `strict`: the page that checks for console errors keeps it, so a violation fails there."""

    def __init__(self, chromium: Any) -> None:
        self.chromium = chromium

    def new_page(self, strict: bool = False, **kwargs: Any) -> Any:
        return self.chromium.new_page(bypass_csp=not strict, **kwargs)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield Browser(b)
        b.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page, base: str, key: str) -> None:
    page.goto(f"{base}/")
    page.wait_for_url("**/signin/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("[data-testid=nodes-online]")


def test_submit_watch_and_download_a_federated_job(
    site: LocalCluster, browser, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    sign_in(page, site.url, site.api_key)
    page.wait_for_function(
        "document.querySelector('[data-testid=nodes-online] .n').textContent === '2'"
    )
    shot(page, "overview")

    # a bad submission: no train.py and zero rounds -> both fields say what is wrong
    page.goto(f"{site.url}/submit/")
    page.get_by_label("Rounds").fill("0")
    page.get_by_role("button", name="Submit job").click()
    page.wait_for_selector("#rounds-error")
    assert ">= 1" in page.locator("#rounds-error").inner_text()
    assert "train_py is required" in page.locator("#train_py-error").inner_text()
    shot(page, "submit-errors")

    # the digits example through the form, 3 rounds
    page.get_by_label("train.py (required)").set_input_files(str(DIGITS / "train.py"))
    page.get_by_label("requirements.txt").set_input_files(str(DIGITS / "requirements.txt"))
    page.get_by_label(
        "Data (a table or JSON Lines is split into shards by rows, an archive by file)"
    ).set_input_files(str(DIGITS / "data" / "train.csv"))
    page.get_by_label("Evaluation script (evaluate.py, run on each round's model)").set_input_files(
        str(DIGITS / "evaluate.py")
    )
    page.get_by_label("Test data (for the evaluation, never sharded)").set_input_files(
        str(DIGITS / "data" / "test.csv")
    )
    page.get_by_label("Name").fill("digits-e2e")
    page.get_by_label("Rounds").fill("3")
    page.get_by_label("Local epochs").fill("2")
    page.get_by_role("button", name="Submit job").click()
    page.wait_for_url("**/job/?id=*")
    loads = []
    page.on("load", lambda _: loads.append(1))
    points = page.locator("[data-series='training accuracy'] circle")
    held_out = "[data-series='held-out accuracy'] circle"
    page.wait_for_selector("[data-round=init][data-status=done]", timeout=180_000)
    for r in (1, 2, 3):  # the timeline and the curves move by themselves, one round at a time
        page.wait_for_selector(f"[data-round='{r}'][data-status=done]", timeout=180_000)
        page.wait_for_function(
            f"document.querySelectorAll(\"[data-series='training accuracy'] circle\").length >= {r}"
        )
        assert points.count() >= r  # (a fast job may be rounds ahead by now)
        # the round's model on the test data, from the job's own evaluate.py
        page.wait_for_function(
            f'document.querySelectorAll("{held_out}").length >= {r}', timeout=120_000
        )
        shot(page, f"job-round-{r}")
    ticks = [
        float(t) for t in page.locator(".chart").first.locator("[data-tick]").all_text_contents()
    ]
    assert len(ticks) >= 3 and max(ticks) <= 1.0, ticks  # an accuracy axis ends at 1 at most
    legend = page.locator(".chart").first.locator(".legend li").all_inner_texts()
    assert [t.strip(" \u25cf") for t in legend] == ["training accuracy", "held-out accuracy"]
    page.wait_for_selector("h1 .badge.succeeded", timeout=60_000)
    assert loads == []  # no reload happened
    with page.expect_download() as info:
        page.get_by_role("button", name="Download final_model.pth").click()
    saved = tmp_path / "final_model.pth"
    info.value.save_as(saved)
    state = torch.load(saved, weights_only=True)
    assert set(state) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    # what the nodes sent: whole models, each round's share and the job's total
    assert "(whole models)" in page.locator("[data-traffic]").inner_text()
    assert "sent " in page.locator("[data-round='3'] [data-round-sent]").inner_text()
    shot(page, "job-done")

    for path, name in (
        ("/job-list/", "jobs"),
        ("/fleet/", "nodes"),
        ("/contributors/", "contributors"),
    ):
        page.goto(f"{site.url}{path}")
        page.wait_for_selector("table")
        shot(page, name)
    page.goto(f"{site.url}/job-list/")
    page.wait_for_selector("[data-job]")
    assert "digits-e2e" in page.locator("table").inner_text()
    job_id = page.locator("[data-job]").first.get_attribute("data-job")

    # another user sees none of it
    bob = make_user(site.data_dir, "bob@example.org")
    other = browser.new_page()
    sign_in(other, site.url, bob)
    other.goto(f"{site.url}/job-list/")
    other.wait_for_selector(".empty")
    assert "No jobs yet" in other.locator(".empty").inner_text()
    other.goto(f"{site.url}/job/?id={job_id}")
    other.wait_for_selector(".error")
    assert "no job" in other.locator(".error").inner_text()
    shot(other, "other-user")
    # sign-out forgets the key
    other.get_by_role("button", name="Sign out").click()
    other.wait_for_url("**/signin/")
    assert other.evaluate("localStorage.getItem('gridx.apiKey')") is None


CURVE = b"""
import json, os, torch
r = int(os.environ["GRIDX_ROUND"])
torch.save({"w": torch.zeros(2)}, os.environ["GRIDX_OUTPUT"])
json.dump({"accuracy": 0.5 + %s * r, "loss": 1.0 / (r + 1)}, open(os.environ["GRIDX_METRICS"], "w"))
"""


def _submit(site: LocalCluster, name: str, step: float) -> str:
    import httpx

    r = httpx.post(
        f"{site.url}/jobs/",
        headers={"Authorization": f"Bearer {site.api_key}"},
        files={"train_py": ("train.py", CURVE % str(step).encode())},
        data={"config": f'{{"name": "{name}", "rounds": 3, "shards": 1}}'},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["job"]["id"])


def _wait_succeeded(site: LocalCluster, job_id: str) -> None:
    import time

    import httpx

    deadline = time.monotonic() + 180
    while True:
        r = httpx.get(
            f"{site.url}/jobs/{job_id}",
            headers={"Authorization": f"Bearer {site.api_key}"},
            timeout=30,
        )
        if r.json()["job"]["status"] == "succeeded":
            return
        assert time.monotonic() < deadline, r.json()["job"]
        time.sleep(0.5)


def test_live_contributors_overview_charts_and_compared_curves(site, browser) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    sign_in(page, site.url, site.api_key)
    page.goto(f"{site.url}/contributors/")
    page.wait_for_selector("h1")
    loads: list[int] = []
    page.on("load", lambda _: loads.append(1))
    cells = "Array.from(document.querySelectorAll('tbody tr td:nth-child(3)'))"
    before = page.evaluate(f"{cells}.reduce((n, td) => n + Number(td.textContent), 0)")
    jobs = [_submit(site, "slow-learner", 0.05), _submit(site, "fast-learner", 0.12)]
    page.wait_for_function(  # the table follows the tasks as they complete, with no reload
        f"{cells}.reduce((n, td) => n + Number(td.textContent), 0) >= {before} + 6",
        timeout=180_000,
    )
    assert loads == []
    shot(page, "contributors-live")

    page.goto(f"{site.url}/")
    page.wait_for_selector("[data-testid=history] [data-series='nodes online'] polyline")
    page.wait_for_selector("[data-testid=recent-jobs]")
    recent = page.locator("[data-testid=recent-jobs]").inner_text()
    assert "slow-learner" in recent and "fast-learner" in recent
    shot(page, "overview-charts")

    for job_id in jobs:
        _wait_succeeded(site, job_id)
    page.goto(f"{site.url}/job-list/")
    for name in ("slow-learner", "fast-learner"):
        page.get_by_label(f"compare {name}").first.check()
    page.get_by_test_id("compare").click()
    page.wait_for_url("**/compare/?ids=*")
    lines = page.locator(".chart").first.locator("[data-series]")
    page.wait_for_function(
        "(document.querySelector('.chart')?.querySelectorAll('[data-series] circle').length"
        " ?? 0) >= 6",
        timeout=60_000,
    )
    names = sorted(lines.evaluate_all("els => els.map(e => e.dataset.series)"))
    assert names == ["fast-learner (training)", "slow-learner (training)"], names
    assert set(page.url.split("ids=")[1].split(",")) == set(jobs)
    shot(page, "compare")


def test_static_build_on_another_origin_needs_cors(
    site: LocalCluster, browser, static_origin, tmp_path_factory
) -> None:
    origin, root = static_origin
    (root / "config.json").write_text(f'{{"apiBase": "{site.url}"}}')
    page = browser.new_page()
    sign_in(page, origin, site.api_key)  # allowed: the coordinator lists this origin
    assert page.url.startswith(origin)
    # the same files on an origin the coordinator does not list: the browser refuses the API
    port = free_port()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        refused = browser.new_page()
        refused.goto(f"http://127.0.0.1:{port}/")
        refused.wait_for_url("**/signin/")
        refused.get_by_label("API key").fill(site.api_key)
        refused.get_by_role("button", name="Sign in").click()
        refused.wait_for_selector(".error")
        assert "cannot reach the coordinator" in refused.locator(".error").inner_text()
        shot(refused, "cors-refused")
    finally:
        server.shutdown()


def test_a_missing_or_unknown_job_is_said_once_and_not_asked_again(site, browser) -> None:
    page = browser.new_page()
    sign_in(page, site.url, site.api_key)
    page.goto(f"{site.url}/job/")
    page.get_by_role("alert").filter(has_text="No job chosen").wait_for()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/jobs/j-nope" in r.url else None)
    page.goto(f"{site.url}/job/?id=j-nope")
    page.get_by_role("alert").filter(has_text="no job 'j-nope'").wait_for()
    page.wait_for_timeout(3000)  # the old page re-polled every 2 s, forever
    assert [u.split(site.url)[1] for u in asked] == ["/jobs/j-nope"], asked
    shot(page, "unknown-job")
    page.close()


def test_a_job_on_a_dataset_the_nodes_hold_with_differential_privacy(site, browser) -> None:
    """The form's second way to bring data: a dataset a node holds; the job page shows it, the
    nodes each round merged and the privacy spent; the nodes page lists what nodes hold."""
    declared = subprocess.run(
        [sys.executable, "-m", "gridx.node", "dataset", "add", "digits",
         str(DIGITS / "data" / "train.csv"), "--state-dir", str(site.root / "holder")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert declared.returncode == 0, declared.stderr
    site.add_node("holder")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    sign_in(page, site.url, site.api_key)
    page.goto(f"{site.url}/fleet/")  # the nodes page lists what each node holds
    held = page.locator("[data-node=holder] [data-datasets]")
    held.wait_for(timeout=120_000)
    page.wait_for_function(
        "document.querySelector('[data-node=holder] [data-datasets]').textContent"
        ".includes('digits (csv, 1437 rows)')",
        timeout=60_000,
    )
    shot(page, "nodes-datasets")
    page.goto(f"{site.url}/submit/")
    page.get_by_label("A dataset on the nodes").check()
    page.wait_for_selector("select[name=dataset] option[value=digits]", state="attached")
    page.get_by_label("train.py (required)").set_input_files(str(DIGITS / "train.py"))
    page.get_by_label("Rounds").fill("2")
    page.get_by_label("Local epochs").fill("1")
    page.get_by_label("DP noise multiplier (empty: no differential privacy)").fill("1.5")
    shot(page, "submit-local-data")
    page.get_by_role("button", name="Submit job").click()
    page.wait_for_url("**/job/?id=*")
    page.wait_for_selector("h1 .badge.succeeded", timeout=180_000)
    assert "dataset digits" in page.locator("[data-dataset]").inner_text()
    assert "epsilon" in page.locator("[data-privacy]").inner_text()
    assert "epsilon" in page.locator("[data-round='2']").inner_text()
    assert "holder" in page.locator("[data-round='2'] [data-round-nodes]").inner_text()
    shot(page, "job-local-data")


def test_the_api_docs_render_with_the_network_cut(site, browser) -> None:
    """Swagger UI comes from the coordinator itself: nothing leaves 127.0.0.1."""
    from urllib.parse import urlparse

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    outside: list[str] = []

    def only_loopback(route) -> None:
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    page.goto(f"{site.url}/schema/swagger")
    page.wait_for_selector(".swagger-ui .info .title", timeout=60_000)
    assert "Grid-X coordinator" in page.locator(".swagger-ui .info .title").inner_text()
    page.wait_for_selector("button.authorize")  # the Bearer scheme gives an Authorize button
    page.wait_for_selector("text=/jobs", timeout=30_000)
    shot(page, "api-docs-offline")
    assert outside == []


@pytest.mark.parametrize("width", [1280, 390])
def test_pages_load_without_console_errors_or_failed_requests(site, browser, width) -> None:
    page = browser.new_page(strict=True, viewport={"width": width, "height": 900})  # with CSP
    sign_in(page, site.url, site.api_key)
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None
    )
    page.on(
        "response",
        lambda r: (
            problems.append(f"{r.request.method} {r.url} {r.status}") if r.status >= 400 else None
        ),
    )
    page.on(  # a feed or a prefetch the next navigation closes is aborted, not failed
        "requestfailed",
        lambda r: (
            None
            if "ERR_ABORTED" in (r.failure or "")
            else problems.append(f"failed: {r.method} {r.url} {r.failure}")
        ),
    )
    for path, ready in (
        ("/", "[data-testid=nodes-online]"),
        ("/job-list/", "h1"),
        ("/fleet/", "table"),
        ("/contributors/", "h1"),
        ("/submit/", "form"),
    ):
        page.goto(f"{site.url}{path}")
        page.wait_for_selector(ready)
        page.wait_for_timeout(1000)  # the page's first refreshes (its feeds stay open)
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= width, f"{path} is {wide} px wide at {width} px"
        shot(page, f"page-{path.strip('/') or 'overview'}-{width}")
    assert problems == [], "\n".join(problems)
    page.goto(f"{site.url}/fleet/")
    page.wait_for_selector("table")
    for what in (page.locator("th", has_text="Status"), page.get_by_role("button").last):
        box = what.bounding_box()
        assert box is not None and box["x"] + box["width"] <= width, (what, box)


PROJECT_TRAIN = b"""
import os
import torch
from mypkg.model import make
print("training with", make().__class__.__name__, flush=True)
torch.save(make().state_dict(), os.environ["GRIDX_OUTPUT"])
"""


def test_a_project_zip_submitted_from_the_form_trains_and_its_log_opens(
    site, browser, tmp_path: Path
) -> None:
    import zipfile

    project = tmp_path / "project.zip"
    with zipfile.ZipFile(project, "w") as zf:
        zf.writestr("train.py", PROJECT_TRAIN)
        zf.writestr("mypkg/__init__.py", b"")
        zf.writestr(
            "mypkg/model.py", b"import torch\ndef make():\n    return torch.nn.Linear(2, 1)\n"
        )
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, site.url, site.api_key)
    page.goto(f"{site.url}/submit/")
    page.get_by_label("train.py (required)").set_input_files(str(project))
    page.get_by_label("Rounds").fill("1")
    page.get_by_role("button", name="Submit job").click()
    page.wait_for_url("**/job/?id=*")
    page.wait_for_selector("h1 .badge.succeeded", timeout=180_000)
    log = page.locator("[data-task-log]").first
    log.locator("summary").click()
    assert "training with Linear" in log.locator("pre").inner_text()
    assert "entry\ttrain.py" in page.locator("[data-config]").inner_text()
    shot(page, "job-project-log")


BROKEN = b"raise ValueError('the data has 3 columns, the model wants 8')\n"


def _post(site: LocalCluster, train: bytes, config: dict[str, Any]) -> str:
    import json

    import httpx

    r = httpx.post(
        f"{site.url}/jobs/",
        headers={"Authorization": f"Bearer {site.api_key}"},
        files={"train_py": ("train.py", train)},
        data={"config": json.dumps(config)},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["job"]["id"])


def _wait_status(site: LocalCluster, job_id: str, status: str) -> None:
    import time

    import httpx

    deadline = time.monotonic() + 180
    while True:
        job = httpx.get(
            f"{site.url}/jobs/{job_id}", headers={"Authorization": f"Bearer {site.api_key}"}
        ).json()["job"]
        if job["status"] == status:
            return
        assert time.monotonic() < deadline, job
        time.sleep(0.3)


@pytest.mark.parametrize("width", [1280, 390])
def test_a_job_page_and_the_overview_say_what_happened_in_words(site, browser, width) -> None:
    import httpx

    once = {"rounds": 1, "shards": 1, "init_step": False, "max_attempts": 1}
    broken = _post(site, BROKEN, {**once, "name": f"broken-{width}"})
    stopped = _post(site, b"import time\ntime.sleep(600)\n", {**once, "name": f"stopped-{width}"})
    perfect = CURVE.replace(b"0.5 + %s * r", b"1.0")  # accuracy 1.0 in every round
    curve = _post(site, perfect, {"rounds": 2, "shards": 1, "name": f"perfect-{width}"})
    r = httpx.post(
        f"{site.url}/jobs/{stopped}/cancel", headers={"Authorization": f"Bearer {site.api_key}"}
    )
    assert r.status_code == 200, r.text
    _wait_status(site, broken, "failed")
    _wait_succeeded(site, curve)
    page = browser.new_page(viewport={"width": width, "height": 900})
    sign_in(page, site.url, site.api_key)

    # a failed job's headline carries what its code raised, not only "exited with status 1"
    page.goto(f"{site.url}/job/?id={broken}")
    cause = page.locator("[data-cause]")
    cause.wait_for()
    assert cause.inner_text() == "ValueError: the data has 3 columns, the model wants 8"
    assert page.locator("[data-job-time]").inner_text().startswith("ran ")
    assert page.locator("[data-task-time]").first.inner_text().endswith(" s")
    config = page.locator("[data-config]").inner_text()
    assert "rounds\t1" in config and "max_attempts\t1" in config, config  # a table, not cut JSON
    node = page.locator("td.nowrap").first
    assert node.evaluate("e => getComputedStyle(e).whiteSpace") == "nowrap"
    page.goto(f"{site.url}/fleet/")
    ids = page.locator("[data-node-id]")
    ids.first.wait_for()
    # a node id stays on one line (it used to break in two on a phone)
    assert ids.first.evaluate("e => e.getClientRects().length") == 1
    page.goto(f"{site.url}/job/?id={broken}")
    page.locator("[data-cause]").wait_for()
    shot(page, f"job-failed-{width}")

    # run again with changes: the form starts from that job's settings
    page.locator("[data-run-again]").click()
    page.wait_for_url(f"**/submit/?from={broken}")
    page.wait_for_selector("[data-from]")
    assert page.locator("h1").inner_text() == "Run again with changes"
    assert page.locator("input[name=name]").input_value() == f"broken-{width}"
    assert page.locator("input[name=max_attempts]").input_value() == "1"
    shot(page, f"run-again-{width}")
    # a fresh form starts from the coordinator's defaults: the CLI's, with the settings it has
    page.goto(f"{site.url}/submit/")
    page.wait_for_selector("form")
    fresh = {k: page.locator(f"input[name={k}]").input_value() for k in (
        "rounds", "shards", "epochs", "task_timeout_s", "max_attempts", "seed")}  # fmt: skip
    assert fresh == {"rounds": "1", "shards": "2", "epochs": "1", "task_timeout_s": "600",
                     "max_attempts": "3", "seed": "0"}, fresh  # fmt: skip
    assert page.locator("select[name=partition]").input_value() == "iid"
    assert page.locator("input[name=init_model]").count() == 1

    # an accuracy axis ends at 1, never at 1.10
    page.goto(f"{site.url}/job/?id={curve}")
    page.wait_for_selector(".chart [data-tick]")
    accuracy = page.locator("figure.chart", has_text="Accuracy").locator("[data-tick]")
    ticks = [float(t) for t in accuracy.all_text_contents()]  # (SVG text has no innerText)
    assert max(ticks) <= 1.0, ticks
    shot(page, f"job-curve-{width}")

    # cancelled is not painted as failed
    page.goto(f"{site.url}/job-list/")
    page.wait_for_selector(".badge.cancelled")
    colour = "s => getComputedStyle(document.querySelector(s)).backgroundColor"
    assert page.evaluate(colour, ".badge.cancelled") != page.evaluate(colour, ".badge.failed")

    # the admin's tiles say whose nodes they count; a count of nodes has whole-number ticks
    page.goto(f"{site.url}/")
    page.wait_for_selector("[data-testid=history] [data-series='nodes online'] polyline")
    label = page.locator("[data-testid=nodes-online] .l").inner_text()
    assert label == "all nodes online", label
    nodes = page.locator("figure.chart", has_text="Nodes online").locator("[data-tick]")
    assert all("." not in t for t in nodes.all_text_contents()), nodes.all_text_contents()
    throughput = page.locator("figure.chart", has_text="Throughput").locator("[data-y-label]")
    assert throughput.text_content() == "tasks / 10 s"
    shot(page, f"overview-{width}")


STEPS = b"""
import json, os, torch
r = max(int(os.environ["GRIDX_ROUND"]), 0)  # -1 in the initialisation step
torch.save({"w": torch.zeros(2)}, os.environ["GRIDX_OUTPUT"])
metrics = {"accuracy": 0.5 + 0.1 * r, "loss": 1.0 / (r + 1)}
json.dump(metrics, open(os.environ["GRIDX_METRICS"], "w"))
"""


def test_an_async_job_page_shows_steps_staleness_and_throughput(site, browser) -> None:
    job = _post(
        site,
        STEPS,
        {"name": "async", "mode": "async", "rounds": 4, "shards": 2, "buffer": 1},
    )
    _wait_succeeded(site, job)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    sign_in(page, site.url, site.api_key)
    page.goto(f"{site.url}/job/?id={job}")
    summary = page.locator("[data-async]")
    summary.wait_for()
    text = summary.inner_text()
    assert "a server step every 1 updates" in text and "4 updates merged" in text, text
    assert "updates/s" in text and "staleness mean" in text, text
    assert page.locator("h2", has_text="Server steps").count() == 1
    step = page.locator("[data-round='4']")
    assert step.inner_text().startswith("Step 4: done"), step.inner_text()
    assert "1 updates, staleness" in step.locator("[data-step-staleness]").inner_text()
    chart = page.locator("figure.chart", has_text="Staleness")
    assert chart.locator("[data-series='mean staleness'] polyline").count() == 1
    shot(page, "job-async")
    page.goto(f"{site.url}/job-list/")
    page.wait_for_selector("text=step 4/4")
    # the form offers the mode, its buffer and adaptive replication
    page.goto(f"{site.url}/submit/")
    page.wait_for_selector("form")
    assert page.locator("select[name=mode] option[value=async]").count() == 1
    assert page.locator("input[name=buffer]").count() == 1
    assert page.locator("select[name=replicas] option[value=adaptive]").count() == 1
