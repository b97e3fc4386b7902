#!/usr/bin/env bash
# Build dist/gridx-worker.tar.gz: the node wheel, setup/start scripts, systemd unit, guide.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-python3}
out=${1:-$repo/dist}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/gridx-worker" "$out"
"$python" -m pip wheel -q --no-deps --disable-pip-version-check -w "$stage/gridx-worker" "$repo"
cp "$repo/infra/bundle/setup_worker.sh" "$repo/infra/bundle/start_worker.sh" "$repo/infra/bundle/gridx-node" \
   "$repo/infra/bundle/WORKER_SETUP.md" "$repo/infra/gridx-node.service" "$repo/infra/install_torch.sh" \
   "$stage/gridx-worker/"
chmod +x "$stage/gridx-worker/"*.sh "$stage/gridx-worker/gridx-node"
tar -C "$stage" -czf "$out/gridx-worker.tar.gz" gridx-worker
echo "$out/gridx-worker.tar.gz"
