#!/usr/bin/env bash
# Set up a Grid-X node in this folder: a virtualenv with the node, and worker_config.env.
#
#   ./setup_worker.sh                         asks for what it needs
#   ./setup_worker.sh --coordinator URL --enrolment-key KEY [--owner-email E] [--name N]
#                     [--torch auto|cpu|cuda|none]
# --torch: the torch that jobs on this node use (a job never downloads another). auto (the
# default): the CUDA build where an NVIDIA GPU answers, else the CPU-only build (about 200 MB
# instead of several GB); none: jobs that need torch fail here until you install one.
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
        -h|--help) sed -n '2,9p' "$self" | cut -c3-; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$url" ]; then read -rp "Coordinator URL (e.g. https://gridx.example.org): " url; fi
if [ -z "$key" ]; then read -rsp "Enrolment key (your API key, gxk_...): " key; echo; fi
[ -n "$url" ] && [ -n "$key" ] || { echo "a coordinator URL and an enrolment key are needed" >&2; exit 2; }

case "$torch" in auto|cpu|cuda|none) ;; *) echo "--torch is auto, cpu, cuda or none" >&2; exit 2 ;; esac
if [ "$torch" = auto ]; then
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then torch=cuda; else torch=cpu; fi
fi

python3 -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
"${pip[@]}" ./gridx-*.whl
torch_failed() {
    echo "could not install torch ($torch build; pip's reason above). Try again with" \
        "--torch cpu, or with --torch none and then .venv/bin/pip install a torch wheel" \
        "that fits this machine ($(uname -m), $(.venv/bin/python -V))" >&2
    exit 1
}
if [ "$torch" = cpu ] && [ "$(uname -m)" = x86_64 ]; then
    # PyPI's x86 torch carries CUDA (GBs); PyTorch's CPU index has the same torch without it
    echo "installing torch (CPU-only build)"
    "${pip[@]}" torch --index-url "${GRIDX_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}" ||
        torch_failed
elif [ "$torch" != none ]; then  # (on ARM, PyPI's torch is the CPU build)
    echo "installing torch ($torch build)"
    "${pip[@]}" torch || torch_failed
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
