#!/bin/sh
# torch 2.13.0 into a virtualenv: the CPU build unless a GPU answers. On x86-64 and aarch64 the
# public index's plain `torch==2.13.0` is the CUDA build (GBs of CUDA libraries), so a machine
# without a GPU asks the PyTorch CPU index; where that index cannot be reached, the machine's own
# pip settings decide (a local wheel folder or mirror, as on CI).
#
#   infra/install_torch.sh PYTHON        (GRIDX_TORCH_CPU_INDEX overrides the CPU index's URL)
set -eu
python=$1
spec="torch==2.13.0"
cpu_index=${GRIDX_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
if nvidia-smi -L >/dev/null 2>&1; then
    echo "torch: a GPU answers (nvidia-smi), the CUDA build" >&2
    exec "$python" -m pip install -q "$spec"
fi
if "$python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/torch/", timeout=5)' \
        "$cpu_index" 2>/dev/null; then
    echo "torch: no GPU here, the CPU build from $cpu_index" >&2
    exec "$python" -m pip install -q "$spec" --index-url "$cpu_index"
fi
echo "torch: no GPU here and $cpu_index unreachable: this machine's pip settings" >&2
exec "$python" -m pip install -q "$spec"
