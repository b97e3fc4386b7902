#!/bin/sh
# torch into a virtualenv, pinned to the release Grid-X's jobs are tested with: the CUDA build
# only where an NVIDIA GPU answers, else the CPU-only build. On x86-64 and aarch64 PyPI's plain
# `torch==X` is the CUDA build (GBs of nvidia-* packages), so a machine without a GPU asks the
# PyTorch CPU index; where that index cannot be reached, this machine's own pip settings may
# serve a CPU build (a local wheel folder or mirror, as on CI), and a CUDA build is refused
# before any of it is downloaded (pip reads only the wheel's metadata to tell).
#
#   install_torch.sh PYTHON [auto|cpu|cuda]
#   GRIDX_TORCH_VERSION   the release (default below)
#   GRIDX_TORCH_CPU_INDEX the CPU index's URL (a mirror of https://download.pytorch.org/whl/cpu)
set -eu
python=$1
want=${2:-auto}
version=${GRIDX_TORCH_VERSION:-2.13.0}
spec="torch==$version"
cpu_index=${GRIDX_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
gpu=no
if nvidia-smi -L >/dev/null 2>&1; then gpu=yes; fi
case "$want" in
    auto) if [ $gpu = yes ]; then want=cuda; else want=cpu; fi ;;
    cuda) [ $gpu = yes ] || {
        echo "torch: --torch cuda, but no NVIDIA GPU answers nvidia-smi here; use --torch cpu" >&2
        exit 2
    } ;;
    cpu) ;;
    *) echo "torch: the build is auto, cpu or cuda (not $want)" >&2; exit 2 ;;
esac
if [ "$want" = cuda ]; then
    echo "installing torch $version (CUDA build: a GPU answers nvidia-smi)"
    exec "$python" -m pip install -q --disable-pip-version-check "$spec"
fi

if "$python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/torch/", timeout=5)' \
        "$cpu_index" 2>/dev/null; then
    set -- --index-url "$cpu_index"
    where=$cpu_index
else
    set --
    where="this machine's pip settings ($cpu_index unreachable)"
fi
# which build would come: torch's own requirements, judged for this machine, before the download
report=$(mktemp)
trap 'rm -f "$report" "$report.err"' EXIT
"$python" -m pip install -q --disable-pip-version-check --dry-run --ignore-installed --no-deps \
    --use-feature=fast-deps --report "$report" "$spec" "$@" 2>"$report.err" || {
    cat "$report.err" >&2
    exit 1
}
"$python" -c '
import json, sys
from pip._vendor.packaging.requirements import Requirement

report, version, index = sys.argv[1:]
with open(report) as f:
    wheel = json.load(f)["install"][0]["metadata"]
cuda = [r.name for r in map(Requirement, wheel.get("requires_dist", []))
        if (r.marker is None or r.marker.evaluate({"extra": ""}))
        and (r.name.startswith("nvidia-") or r.name == "triton")]
if cuda:
    sys.exit(f"torch: no GPU answers here, the PyTorch CPU index ({index}) cannot be reached, "
             f"and this machine'"'"'s pip would install the CUDA build of torch {version} "
             f"({len(cuda)} nvidia packages, GBs): set GRIDX_TORCH_CPU_INDEX to a mirror of "
             f"that index, or use --torch none and install a CPU build yourself")
' "$report" "$version" "$cpu_index" || exit 3
echo "installing torch $version (CPU-only build, from $where)"
"$python" -m pip install -q --disable-pip-version-check "$spec" "$@"
