"""What the CLIs say before any coordinator is involved: versions, a missing key, a URL that
answers but is not a Grid-X coordinator."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from gridx.coordinator.cli.main import cli
from gridx.node.cli import cli as node_cli


class _Elsewhere(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404)  # an HTML error page, as most web servers send

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_gridx() -> Iterator[str]:
    """Some other web server on 127.0.0.1 (it answers 404 with an HTML page)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Elsewhere)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_both_clis_print_their_version() -> None:
    for command, name in ((cli, "gridx"), (node_cli, "gridx-node")):
        out = CliRunner().invoke(command, ["--version"])
        assert out.exit_code == 0 and out.output.startswith(f"{name}, version "), out.output


def test_a_missing_key_names_the_flag_and_the_variable() -> None:
    out = CliRunner().invoke(cli, ["job", "list"], env={"GRIDX_API_KEY": ""})
    assert out.exit_code == 2
    assert "pass --api-key or set GRIDX_API_KEY" in out.output and "gridx user create" in out.output


def test_a_server_that_is_not_a_coordinator_is_named_as_such(not_gridx: str) -> None:
    out = CliRunner().invoke(cli, ["job", "list", "--url", not_gridx, "--api-key", "gxk_x"])
    assert out.exit_code == 1
    assert f"{not_gridx} answered (HTTP 404) but is not a Grid-X coordinator" in out.output
    assert "check --url / GRIDX_URL" in out.output and len(out.output.strip().splitlines()) == 1


def test_dp_is_spelled_as_key_value_pairs() -> None:
    from gridx.coordinator.cli.job_specs import privacy_spec

    assert privacy_spec("noise_multiplier=1.1, clip_norm=1,max_epsilon=8,client_clip=yes") == {
        "noise_multiplier": 1.1,
        "clip_norm": 1,
        "max_epsilon": 8,
        "client_clip": True,
    }
    with pytest.raises(Exception, match="KEY=VALUE"):
        privacy_spec("noise_multiplier")
    with pytest.raises(Exception, match="must be a number"):
        privacy_spec("clip_norm=big")
    bad = CliRunner().invoke(
        cli, ["job", "submit", __file__, "--dp", "clip_norm", "--api-key", "k"]
    )
    assert bad.exit_code == 2 and "--dp" in bad.output and "KEY=VALUE" in bad.output
