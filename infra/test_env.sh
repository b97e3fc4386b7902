#!/usr/bin/env bash
# Prepare everything the test suites need on this machine, then run the command given (pytest),
# so that `just test` on a fresh machine skips nothing: bubblewrap (the process sandbox),
# PostgreSQL, debootstrap and a Docker engine with the executor image, Chromium and the built
# dashboard, a Supabase Storage server built from its source, the virtualenv, and arm64
# emulation (qemu) with a Debian arm64 rootfs for the Raspberry Pi test, built in the background
# while the other suites run. What is already there is used as is; a Docker engine this script
# starts (private, no bridge, no iptables: there is no outside network) is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

need=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v g++ >/dev/null || need+=(g++)  # Supabase Storage's one native module
command -v make >/dev/null || need+=(make)
command -v npm >/dev/null || need+=(npm)
lean=()  # (without their recommends: qemu's are a desktop's worth)
command -v qemu-aarch64-static >/dev/null || lean+=(qemu-user-static binfmt-support)
command -v qemu-system-aarch64 >/dev/null || lean+=(qemu-system-arm)
if [ $((${#need[@]} + ${#lean[@]})) -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "the test suites need: ${need[*]} ${lean[*]}; install them (sudo apt-get install ${need[*]} ${lean[*]})" >&2
        exit 1
    fi
    echo "installing ${need[*]} ${lean[*]} ..." >&2
    apt-get update -qq
    [ ${#need[@]} -eq 0 ] || apt-get install -y -qq "${need[@]}" >/dev/null
    [ ${#lean[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null
fi
# arm64 programs run under qemu-user (debootstrap's second stage, the bundle's install)
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && [ "$(id -u)" = 0 ]; then
    mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable qemu-aarch64
fi

.venv/bin/python -c "import pytest, playwright, gridx.coordinator" 2>/dev/null || just setup
# the arm64 rootfs (about 5 minutes under emulation, cached under build/arm64/): started now, the
# Pi test waits for it
mkdir -p build/arm64
.venv/bin/python -m tests.support.arm64_vm prepare >build/arm64/prepare.log 2>&1 &
# the dashboard, built again when a source is newer than the build
if [ ! -f web/out/index.html ] || [ -n "$(find web/app web/components web/lib web/public \
        web/package-lock.json web/next.config.ts web/scripts -newer web/out/index.html 2>/dev/null | head -1)" ]; then
    just web
fi

if ! docker info >/dev/null 2>&1; then
    run_dir=$(mktemp -d /tmp/gridx-test-docker.XXXX)
    export DOCKER_HOST="unix://$run_dir/docker.sock"
    dockerd --bridge=none --iptables=false --ip6tables=false \
        --data-root "$PWD/.ci-docker" --exec-root "$run_dir/exec" --pidfile "$run_dir/docker.pid" \
        -H "$DOCKER_HOST" >"$run_dir/dockerd.log" 2>&1 &
    trap 'kill "$(cat "$run_dir/docker.pid" 2>/dev/null)" 2>/dev/null || true' EXIT
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null || { cat "$run_dir/dockerd.log"; exit 1; }
fi
just executor-image

# Supabase Storage (tests/support/servers.py starts it fresh per session): built once under
# GRIDX_SUPABASE_DIR (about 3 minutes, 1 GB) from the source beside its start script.
export GRIDX_SUPABASE_START=${GRIDX_SUPABASE_START:-$(dirname "$PWD")/shared/supabase-storage/start.sh}
export GRIDX_SUPABASE_DIR=${GRIDX_SUPABASE_DIR:-${TMPDIR:-/tmp}/gridx-supabase-storage}
if [ ! -f "$GRIDX_SUPABASE_DIR/src/dist/start/server.js" ]; then
    echo "building Supabase Storage in $GRIDX_SUPABASE_DIR ..." >&2
    port=$(.venv/bin/python -c 'from gridx.coordinator.cli.cluster import free_port; print(free_port())')
    "$GRIDX_SUPABASE_START" "$GRIDX_SUPABASE_DIR" "$port" >/dev/null
    "$GRIDX_SUPABASE_START" "$GRIDX_SUPABASE_DIR" stop
fi

"$@"
