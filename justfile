# Grid-X recipes. `just --list` shows them all.

venv := ".venv"
py := venv / "bin/python"

# .venv with Grid-X and what it runs (torch 2.13.0: the CPU build unless a GPU answers).
install:
    test -x {{py}} || python3 -m venv {{venv}}
    {{py}} -m pip install -q --upgrade pip
    {{py}} -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null || infra/install_torch.sh {{py}}
    PYTHONWARNINGS=ignore {{py}} -m pip install -q -e ".[coordinator]"  # (setuptools: editable notice)

# `install`, and what the tests, the linters and the benchmarks need.
setup: install
    PYTHONWARNINGS=ignore {{py}} -m pip install -q -e ".[dev]"

# A real 3-round federated job on a local coordinator and two nodes (`--help`: its options).
demo *ARGS: install
    {{venv}}/bin/gridx demo {{ARGS}}

# The whole test suite on real processes; first installs and starts what its suites need
# (bubblewrap, PostgreSQL, a Docker engine and the executor image, Chromium, the dashboard).
[positional-arguments]
test *ARGS:
    infra/test_env.sh {{venv}}/bin/pytest "$@"

# The quick loop: unit and API suites on SQLite, nothing to install or start (under a minute).
[positional-arguments]
test-fast *ARGS:
    {{venv}}/bin/pytest -q -n auto -m "not slow and not pg and not supabase" "$@"

# Lint, format check and type check.
lint: typecheck
    {{venv}}/bin/ruff check .
    {{venv}}/bin/ruff format --check .

# mypy over the gridx.* packages (mapped from the top-level folders through symlinks).
typecheck:
    mkdir -p build/typecheck/gridx
    touch build/typecheck/gridx/__init__.py
    for p in coordinator node schemas; do ln -sfn ../../../$p build/typecheck/gridx/$p; done
    cd build/typecheck && ../../{{venv}}/bin/mypy --config-file ../../pyproject.toml gridx

# Build the dashboard (static export in web/out, served by the coordinator at /).
web:
    cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

# Write web/openapi.json from the coordinator's routes (the dashboard's types come from it).
api-types:
    {{venv}}/bin/gridx coordinator openapi --out web/openapi.json

# A wheel that carries the built dashboard (gridx/coordinator/web_static).
wheel: web
    rm -rf coordinator/web_static && cp -r web/out coordinator/web_static
    {{py}} -m pip wheel -q --no-deps -w dist .
    rm -rf coordinator/web_static

# Build the docker executor's image offline (debootstrap + docker import), unless it exists.
executor-image IMAGE="gridx-executor:latest":
    #!/usr/bin/env bash
    set -euo pipefail
    recipe=$(cat infra/executor/build_offline.sh infra/executor/requirements.txt | sha256sum | cut -c1-16)
    have=$(docker image inspect {{IMAGE}} --format '{{{{ index .Config.Labels "org.gridx.recipe" }}' 2>/dev/null || true)
    [ "$have" = "$recipe" ] || infra/executor/build_offline.sh {{IMAGE}} "$recipe"

# The node bundle for volunteers: dist/gridx-worker.tar.gz.
worker-bundle:
    PYTHON={{py}} infra/bundle/build_bundle.sh

# Install the node's sandbox (bubblewrap) on Debian/Ubuntu; needs root.
sandbox:
    command -v bwrap >/dev/null || (apt-get update -qq && apt-get install -y -qq bubblewrap)

# Run a coordinator in ./gridx-data on 127.0.0.1:8080.
coordinator *ARGS:
    {{venv}}/bin/gridx coordinator start {{ARGS}}

# Aggregation speed and memory against Flower's rules (installs the bench extra: flwr).
bench-aggregate *ARGS:
    {{py}} -m pip install -q -e ".[bench]"
    {{py}} bench/aggregate.py {{ARGS}}

# Storage and memory over 200 small jobs (keep_updates as the keep-everything baseline).
bench-soak *ARGS:
    {{py}} bench/soak.py {{ARGS}}

# Dispatch latency: long-poll vs the seed's 10 s polling.
bench-dispatch *ARGS:
    {{py}} bench/dispatch.py {{ARGS}}
