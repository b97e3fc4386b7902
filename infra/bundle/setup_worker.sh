#!/usr/bin/env bash
# Set up a Grid-X node in this folder: a virtualenv with the node, and worker_config.env.
#
#   ./setup_worker.sh                         asks for what it needs
#   ./setup_worker.sh --coordinator URL --enrolment-key KEY [--owner-email E] [--name N]
#                     [--torch auto|cpu|cuda|none]
# --torch: the torch that jobs on this node use (a job never downloads another), pinned to the
# release Grid-X's jobs are tested with (GRIDX_TORCH_VERSION to change it). auto (the default):
# the CUDA build where an NVIDIA GPU answers, else the CPU-only build from PyTorch's CPU index
# (GRIDX_TORCH_CPU_INDEX: a mirror of it), x86 and ARM alike (a few hundred MB instead of GBs);
# none: jobs that need torch fail here until you install one.
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$self")"
url="${GRIDX_COORDINATOR_URL:-}" key="${GRIDX_ENROLMENT_KEY:-}" email="" name="$(hostname)"
torch=auto
while [ $# -gt 0 ]; do
    case "$1" in
        --coordinator) url=$2; shift 2 ;;
        --enrolment-key) key=$2; shift 2 ;;
        --owner-email) email=$2; shift 2 ;;
        --name) name=$2; shift 2 ;;
        --torch) torch=$2; shift 2 ;;
        -h|--help) sed -n '2,11p' "$self" | cut -c3-; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$url" ]; then read -rp "Coordinator URL (e.g. https://gridx.example.org): " url; fi
if [ -z "$key" ]; then read -rsp "Enrolment key (your API key, gxk_...): " key; echo; fi
[ -n "$url" ] && [ -n "$key" ] || { echo "a coordinator URL and an enrolment key are needed" >&2; exit 2; }

case "$torch" in auto|cpu|cuda|none) ;; *) echo "--torch is auto, cpu, cuda or none" >&2; exit 2 ;; esac

python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check ./gridx-*.whl
if [ "$torch" != none ]; then
    # pinned, CPU-only unless a GPU answers, never a silent CUDA download (see install_torch.sh)
    ./install_torch.sh .venv/bin/python "$torch" || {
        echo "torch was not installed (reason above); the node is not set up" >&2
        exit 1
    }
fi
umask 077
cat > worker_config.env <<CONF
COORDINATOR_URL=$url
ENROLMENT_KEY=$key
OWNER_EMAIL=$email
NODE_NAME=$name
CONF
if [ "$(id -u)" = 0 ] && ! id gridx-task >/dev/null 2>&1; then
    # tasks of a root node run as this unprivileged account, never as root
    useradd --system --no-create-home --shell /usr/sbin/nologin gridx-task
fi
command -v bwrap >/dev/null ||
    echo "note: install bubblewrap (or Docker); without it the node's sandbox is weak and it refuses work"
# the systemd unit, for this folder and this user (it ships written for /opt/gridx and gridx)
sed -i -e "s|/opt/gridx|$(pwd)|g" -e "s|^User=gridx$|User=$(id -un)|" gridx-node.service
echo "node set up in $(pwd); start it with ./start_worker.sh (pause it: ./gridx-node pause)"
echo "to start it with the machine: sudo cp gridx-node.service /etc/systemd/system/ && sudo systemctl enable --now gridx-node"
