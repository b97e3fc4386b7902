#!/usr/bin/env bash
# Start the Grid-X node set up by setup_worker.sh (extra flags go to `gridx-node start`).
set -euo pipefail
cd "$(dirname "$0")"
exec .venv/bin/gridx-node start --config worker_config.env --state-dir ./state "$@"
