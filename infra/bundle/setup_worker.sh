#!/usr/bin/env bash
# Set up a Grid-X node in this folder: a virtualenv with the node, and worker_config.env.
#
#   ./setup_worker.sh                         asks for what it needs
#   ./setup_worker.sh --coordinator URL --enrolment-key KEY [--owner-email E] [--name N]
set -euo pipefail
cd "$(dirname "$0")"
url="${GRIDX_COORDINATOR_URL:-}" key="${GRIDX_ENROLMENT_KEY:-}" email="" name="$(hostname)"
while [ $# -gt 0 ]; do
    case "$1" in
        --coordinator) url=$2; shift 2 ;;
        --enrolment-key) key=$2; shift 2 ;;
        --owner-email) email=$2; shift 2 ;;
        --name) name=$2; shift 2 ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$url" ]; then read -rp "Coordinator URL (e.g. https://gridx.example.org): " url; fi
if [ -z "$key" ]; then read -rsp "Enrolment key (your API key, gxk_...): " key; echo; fi
[ -n "$url" ] && [ -n "$key" ] || { echo "a coordinator URL and an enrolment key are needed" >&2; exit 2; }

python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check ./gridx-*.whl
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
echo "node set up in $(pwd); start it with ./start_worker.sh"
