""".npy files written and read a row at a time, by offset: the pixel store
(data/prepared/<split>.npy) and the features train keeps for the audit
(saved_models/features.npy).

NumPy's format, version 1.0, C order, so `np.load` opens them as any other; its header is
written here so it can be sized in advance (the store's is a fixed HEADER_BYTES, rewritten
in place once the final row count is known). Rows are read and written with pread/pwrite, not
through a memory map: a mapped file's pages count in the process's resident memory once
touched, so one pass over 100,000 images would hold all of them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MAGIC = b"\x93NUMPY\x01\x00"
# NumPy aligns the data to this many bytes (np.lib.format.ARRAY_ALIGN).
ALIGN = 64


def header(shape: Sequence[int], dtype: np.dtype | type, size: int | None = None) -> bytes:
    """The header of a C-ordered array: `size` bytes, or the fewest that keep the data
    ALIGN-aligned. ValueError when the description does not fit in `size`."""
    body = repr(
        {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": tuple(int(n) for n in shape),
        }
    ).encode("latin1")
    least = len(MAGIC) + 2 + len(body) + 1
    if size is None:
        size = -(-least // ALIGN) * ALIGN
    if least > size:
        raise ValueError(f"shape {tuple(shape)} does not fit a {size}-byte .npy header")
    pad = size - least
    return MAGIC + struct.pack("<H", size - len(MAGIC) - 2) + body + b" " * pad + b"\n"


class Rows:
    """The rows of a 2-D .npy file, read when sliced (`rows[i:j]`), not memory-mapped."""

    def __init__(self, path: Path) -> None:
        with path.open("rb") as fh:
            major, _ = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0
            if major != 1:
                read = np.lib.format.read_array_header_2_0
            self.shape, fortran_order, self.dtype = read(fh)
            self.offset = fh.tell()
        if fortran_order or len(self.shape) != 2:
            raise ValueError(f"{path} is not a 2-D C-ordered array")
        self.path = path

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        width = self.shape[1]
        with self.path.open("rb") as fh:
            fh.seek(self.offset + start * width * self.dtype.itemsize)
            return np.fromfile(fh, self.dtype, (stop - start) * width).reshape(-1, width)
