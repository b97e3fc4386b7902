"""A torch `.pth` state_dict written tensor by tensor, so a model of any size is written with
memory for one tensor (what `torch.save` cannot do: it wants every tensor in memory at once).

torch itself writes the file's skeleton: the pickle, the other records, and one record per
tensor left empty (`torch.serialization.skip_data` over FakeTensors, which hold no memory). This
module then writes each tensor's bytes into its record (records are stored uncompressed, one per
tensor, in the dict's order) and, when asked, patches each record's CRC-32 into the zip's local
and central headers, so that any zip tool can check the file. `torch.load` reads it as it reads
what `torch.save` writes.
"""

from __future__ import annotations

import ctypes
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from gridx.coordinator.aggregation.tensorfile import Spec

_LOCAL = struct.Struct("<4s5HL2L2H")  # a zip local file header (30 bytes)
_CENTRAL_SIG = b"PK\x01\x02"


class PthWriter:
    """Writes `specs` (key order: sorted) as a torch state_dict file; `write` each tensor in
    that order, then `close`."""

    def __init__(self, path: str | Path, specs: dict[str, Spec], crc32: bool = True) -> None:
        self.path = Path(path)
        self.order = sorted(specs)
        self.specs = specs
        self.crc32 = crc32
        with FakeTensorMode():
            skeleton = {k: torch.empty(specs[k][1], dtype=specs[k][0]) for k in self.order}
        with torch.serialization.skip_data(materialize_fake_tensors=True):
            torch.save(skeleton, self.path)
        self._records = _data_records(self.path, len(self.order))
        self._crcs: list[int] = []
        self._fh = self.path.open("r+b")  # closed by close()

    def write(self, key: str, tensor: torch.Tensor) -> None:
        """The next tensor's bytes, into its record."""
        i = len(self._crcs)
        dtype, shape = self.specs[self.order[i]]
        if key != self.order[i] or tensor.dtype != dtype or tuple(tensor.shape) != shape:
            got = f"{key} {tensor.dtype} {tuple(tensor.shape)}"
            raise ValueError(f"expected {self.order[i]} {dtype} {shape}, got {got}")
        offset, size = self._records[i]
        flat = tensor.detach().contiguous().view(-1)
        if flat.numel() * flat.element_size() != size:
            raise ValueError(f"{key}: {size} bytes in the file, not {flat.numel()}")
        data = (ctypes.c_char * size).from_address(flat.data_ptr()) if size else b""
        self._fh.seek(offset)
        self._fh.write(data)
        self._crcs.append(zlib.crc32(data) if self.crc32 else 0)

    def close(self) -> None:
        """Finish the file.

        Raises:
            ValueError: not every tensor was written.
        """
        if len(self._crcs) != len(self.order):
            self._fh.close()
            raise ValueError(f"only {len(self._crcs)} of {len(self.order)} tensors were written")
        if self.crc32:
            _patch_crcs(self._fh, self.path, self._crcs)
        self._fh.close()


def _data_records(path: Path, count: int) -> list[tuple[int, int]]:
    """(offset of its data, size) of each tensor's record, `<archive>/data/0` on."""
    with zipfile.ZipFile(path) as zf, path.open("rb") as fh:
        infos = {info.filename.split("/", 1)[-1]: info for info in zf.infolist()}
        out = []
        for i in range(count):
            info = infos[f"data/{i}"]
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError("torch wrote a compressed record")
            fh.seek(info.header_offset)
            header = _LOCAL.unpack(fh.read(_LOCAL.size))
            name_len, extra_len = header[-2], header[-1]
            out.append((info.header_offset + _LOCAL.size + name_len + extra_len, info.file_size))
    return out


def _patch_crcs(fh: BinaryIO, path: Path, crcs: list[int]) -> None:
    """Write each data record's CRC-32 into its local header and its central directory entry."""
    with zipfile.ZipFile(path) as zf:
        infos = {info.filename.split("/", 1)[-1]: info for info in zf.infolist()}
        start = zf.start_dir
    by_name = {infos[f"data/{i}"].filename: crc for i, crc in enumerate(crcs)}
    for i, crc in enumerate(crcs):
        fh.seek(infos[f"data/{i}"].header_offset + 14)
        fh.write(struct.pack("<L", crc))
    fh.seek(start)
    while fh.read(4) == _CENTRAL_SIG:
        fixed = fh.read(42)
        name_len, extra_len, comment_len = struct.unpack("<3H", fixed[24:30])
        name = fh.read(name_len).decode()
        after = fh.tell() + extra_len + comment_len
        if name in by_name:
            fh.seek(after - extra_len - comment_len - name_len - 46 + 16)
            fh.write(struct.pack("<L", by_name[name]))
        fh.seek(after)


def warm_up() -> None:
    """Write one tiny file: the first FakeTensor and `skip_data` save of a process loads what
    they need (about a second), which a pool worker pays here, not in a job's first merge."""
    with tempfile.TemporaryDirectory() as folder:
        writer = PthWriter(Path(folder) / "warm.pth", {"w": (torch.float32, (1,))}, crc32=False)
        writer.write("w", torch.zeros(1))
        writer.close()
