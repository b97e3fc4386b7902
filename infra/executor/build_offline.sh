#!/usr/bin/env bash
# Build the executor image without a registry: a Debian rootfs from debootstrap, the Python
# packages installed into it by the host's pip (same CPython 3.11 ABI), then `docker import`.
# Where a registry is reachable, `docker build infra/executor` does the same from the Dockerfile.
#
#   infra/executor/build_offline.sh [IMAGE] [RECIPE]   (root; debootstrap and a Docker engine)
# RECIPE is recorded as the image's org.gridx.recipe label (`just executor-image` rebuilds the
# image when the hash of this script and requirements.txt no longer matches it).
set -euo pipefail
image=${1:-gridx-executor:latest}
recipe=${2:-}
mirror=${GRIDX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

echo "executor image: debootstrap (bookworm, minbase) into $rootfs"
debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates bookworm "$rootfs" "$mirror" >/dev/null

site=$rootfs/usr/local/lib/python3.11/dist-packages
echo "executor image: Python packages -> $site"
python3 -m pip install -q --no-compile --no-warn-conflicts --target "$site" -r "$here/requirements.txt"
# Compiled bytecode in the image: tasks run with a read-only root and PYTHONDONTWRITEBYTECODE,
# so without it every task would compile torch again (2.2 s of its import). The host's Python
# has the image's bytecode format (3.11); -s/-p record the paths as the image sees them.
echo "executor image: compiling bytecode"
python3 -m compileall -q -j 0 -s "$rootfs" -p / "$site" >/dev/null || echo "  (some files did not compile; they are not imported)"

# An unprivileged user for training runs, and a work dir it owns.
echo "gridx:x:65534:65534:gridx:/work:/usr/sbin/nologin" >>"$rootfs/etc/passwd"
mkdir -p "$rootfs/work"
rm -rf "$rootfs/var/cache/apt/archives"/*.deb "$rootfs/var/lib/apt/lists"/*

echo "executor image: docker import as $image"
tar -C "$rootfs" -c . | docker import \
    --change 'ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1' \
    --change 'WORKDIR /work' \
    --change "LABEL org.gridx.recipe=$recipe" \
    - "$image" >/dev/null
docker image inspect "$image" --format '{{.Id}} {{.Size}}'
