import struct
import zipfile
from pathlib import Path

import pytest
import torch

from gridx.coordinator.aggregation.errors import WeightsError
from gridx.coordinator.aggregation.weights import (
    load_state,
    signature,
    validate_file,
)
from tests.weightfiles import state, write_pickle_bomb, write_pth, write_safetensors

CAP = 10_000_000


def test_both_formats_load_to_the_same_tensors(tmp_path: Path) -> None:
    sd = state(1)
    a = load_state(write_pth(tmp_path / "a.pth", sd), CAP)
    b = load_state(write_safetensors(tmp_path / "b.safetensors", sd), CAP)
    assert a.keys() == b.keys() == sd.keys()
    for k in sd:
        assert torch.equal(a[k], sd[k]) and torch.equal(b[k], sd[k])
    assert signature(a) == signature(b)


def test_pickle_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    bomb = write_pickle_bomb(tmp_path / "evil.pth", marker)
    with pytest.raises(WeightsError, match="weights_only"):
        load_state(bomb, CAP)
    assert not marker.exists()


def test_nan_and_inf_are_refused(tmp_path: Path) -> None:
    sd = state(2)
    sd["fc.bias"][1] = float("nan")
    path = write_pth(tmp_path / "nan.pth", sd)
    with pytest.raises(WeightsError, match=r"fc\.bias.*NaN"):
        validate_file(str(path), CAP, None)
    sd = state(2)
    sd["fc.weight"][0, 0] = float("inf")
    path = write_safetensors(tmp_path / "inf.safetensors", sd)
    with pytest.raises(WeightsError, match="infinite"):
        validate_file(str(path), CAP, None)


def test_zip_declaring_more_than_the_cap_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data/0", b"\0" * 5_000_000)  # compresses to a few KiB
    assert path.stat().st_size < 100_000
    with pytest.raises(WeightsError, match="declares"):
        load_state(path, 1_000_000)


def test_oversized_file_and_bad_safetensors_header(tmp_path: Path) -> None:
    big = write_pth(tmp_path / "big.pth", {"w": torch.zeros(10_000)})
    with pytest.raises(WeightsError, match="over the cap"):
        load_state(big, 1000)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(WeightsError, match="header length"):
        load_state(bad, CAP)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(struct.pack("<Q", 4) + b"nope" + b"\0" * 8)
    with pytest.raises(WeightsError, match="safetensors"):
        load_state(junk, CAP)


def test_non_tensor_values_and_wrong_shapes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "mixed.pth"
    torch.save({"w": torch.zeros(2), "note": "hello"}, path)
    with pytest.raises(WeightsError, match="not a tensor"):
        load_state(path, CAP)
    path = tmp_path / "model.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(WeightsError, match="state_dict"):
        load_state(path, CAP)
    good = write_pth(tmp_path / "good.pth", state(0))
    other = state(0)
    other["fc.weight"] = torch.zeros(4, 4)
    wrong = write_pth(tmp_path / "wrong.pth", other)
    expected = validate_file(str(good), CAP, None)
    with pytest.raises(WeightsError, match="differ"):
        validate_file(str(wrong), CAP, expected)


def test_hostile_files_are_refused_without_a_memory_spike(tmp_path: Path) -> None:
    import json as _json
    import subprocess
    import sys
    import textwrap

    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data/0", b"\0" * 300_000_000)  # 300 MB declared, ~300 KB on disk
    liar = tmp_path / "liar.safetensors"
    header = _json.dumps(
        {"w": {"dtype": "F32", "shape": [100_000_000], "data_offsets": [0, 400_000_000]}}
    )
    liar.write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\0" * 64)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 1 << 50) + b"{}")
    marker = tmp_path / "pwned"
    evil = write_pickle_bomb(tmp_path / "evil.pth", marker)
    probe = textwrap.dedent("""
        import sys
        from pathlib import Path
        from gridx.coordinator.aggregation.errors import WeightsError
        from gridx.coordinator.aggregation.weights import validate_file
        def kib(field):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
        before = kib("VmRSS")
        refused = 0
        for path in sys.argv[1:]:
            try:
                validate_file(path, 100_000_000, None)
            except WeightsError:
                refused += 1
        grew = kib("VmHWM") - before
        print(refused, grew)
    """)
    out = subprocess.run(
        [sys.executable, "-c", probe, str(bomb), str(liar), str(huge), str(evil)],
        capture_output=True,
        text=True,
        check=True,
    )
    refused, grew_kib = map(int, out.stdout.split())
    assert refused == 4
    assert grew_kib < 32 * 1024, f"validation grew RSS by {grew_kib} KiB"
    assert not marker.exists()
