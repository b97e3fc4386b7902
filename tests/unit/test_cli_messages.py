"""What the CLIs say before any coordinator is involved: versions, a missing key, a URL that
answers but is not a Grid-X coordinator."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
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


def test_a_missing_key_names_the_flag_and_the_variable(tmp_path: Path) -> None:
    env = {"GRIDX_API_KEY": "", "GRIDX_CONFIG": str(tmp_path / "none.toml")}
    out = CliRunner().invoke(cli, ["job", "list"], env=env)
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


def _config(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return {"GRIDX_CONFIG": str(path), "GRIDX_URL": "", "GRIDX_API_KEY": "", "GRIDX_PROFILE": ""}


def test_profiles_give_the_url_and_key_and_variables_win(tmp_path: Path, not_gridx: str) -> None:
    env = _config(
        tmp_path,
        f'default = "here"\n[profiles.here]\nurl = "{not_gridx}"\napi_key = "gxk_a"\n'
        '[profiles.nowhere]\nurl = "http://127.0.0.1:9"\napi_key = "gxk_b"\n',
    )
    used = CliRunner().invoke(cli, ["job", "list"], env=env)  # the default profile
    assert used.exit_code == 1 and f"{not_gridx} answered (HTTP 404)" in used.output, used.output
    chosen = CliRunner().invoke(cli, ["job", "list", "--profile", "nowhere"], env=env)
    assert "127.0.0.1:9" in chosen.output, chosen.output
    wins = CliRunner().invoke(cli, ["job", "list"], env={**env, "GRIDX_URL": "http://127.0.0.1:9"})
    assert "127.0.0.1:9" in wins.output, wins.output  # the variable over the profile
    missing = CliRunner().invoke(cli, ["job", "list", "--profile", "prod"], env=env)
    assert missing.exit_code == 2
    assert "no profile 'prod'" in missing.output and "profiles: here, nowhere" in missing.output


def test_a_broken_config_file_is_named(tmp_path: Path) -> None:
    env = _config(tmp_path, "default = \n")
    out = CliRunner().invoke(cli, ["job", "list"], env=env)
    assert out.exit_code == 2 and "config.toml" in out.output, out.output
    env = _config(tmp_path, '[profiles.x]\nurl = "u"\npassword = "p"\n')
    out = CliRunner().invoke(cli, ["job", "list", "--profile", "x"], env=env)
    assert out.exit_code == 2 and "found password" in out.output, out.output


def test_user_create_without_a_data_dir_refuses_to_invent_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"GRIDX_DATA_DIR": "", "GRIDX_DATABASE_URL": ""}
    out = CliRunner().invoke(cli, ["user", "create", "a@b.org"], env=env)
    assert out.exit_code == 2, out.output
    assert "pass --data-dir" in out.output and "GRIDX_DATA_DIR" in out.output
    assert not (tmp_path / "gridx-data").exists()  # nothing made
    made = CliRunner().invoke(cli, ["user", "create", "a@b.org", "--data-dir", "d"], env=env)
    assert made.exit_code == 0 and "API key" in made.output, made.output


def test_shell_completion_works_as_documented() -> None:
    import subprocess
    import sys

    for prog, var, module in (
        ("gridx", "_GRIDX_COMPLETE", "gridx.coordinator.cli"),
        ("gridx-node", "_GRIDX_NODE_COMPLETE", "gridx.node"),
    ):
        out = subprocess.run(
            [sys.executable, "-c", f"import sys; sys.argv[0] = {prog!r}; import runpy; "
             f"runpy.run_module({module!r}, run_name='__main__')"],
            env={**__import__("os").environ, var: "bash_source"},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        func = prog.replace("-", "_")
        assert f"_{func}_completion()" in out.stdout, (prog, out.stdout[:300], out.stderr[-300:])


def test_submit_defaults_are_the_jobs_own() -> None:
    """`gridx job submit`'s option defaults are JobConfig's (the dashboard's form reads the same
    from GET /jobs/defaults): what a job gets never depends on where it was sent from."""
    from gridx.coordinator.cli.jobs import job_submit
    from gridx.schemas.jobs import JobConfig

    defaults = msgspec.to_builtins(JobConfig())
    compared = 0
    for param in job_submit.params:
        given = param.default  # (a flag without one: click's UNSET, i.e. off)
        plain = isinstance(defaults.get(param.name), int | float | str | bool)
        if param.name in defaults and plain and isinstance(given, int | float | str | bool):
            assert given == defaults[param.name], param.name
            compared += 1
    assert compared >= 8, compared


def test_a_coordinator_on_supabase_without_its_key_does_not_start_and_says_what_is_missing(
    tmp_path: Path,
) -> None:
    env = {"GRIDX_STORAGE_URL": "supabase://models", "SUPABASE_URL": "https://abc.supabase.co"}
    out = CliRunner().invoke(
        cli, ["coordinator", "start", "--data-dir", str(tmp_path / "d")], env=env
    )
    assert out.exit_code == 2, out.output
    assert "needs SUPABASE_SERVICE_ROLE_KEY" in out.output and "API keys" in out.output
    assert not (tmp_path / "d").exists()  # nothing was started or written
