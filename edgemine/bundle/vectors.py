"""The embeddings of a format-2 version: several memory-mapped segments seen as one matrix of served rows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edgemine.models.vectors import Vectors

Stored = npt.NDArray[np.float32] | npt.NDArray[np.float16]


class SegmentedVectors:
    """Rows of several stored matrices (float32 or float16), minus tombstoned rows, as float32.

    Row r is the r-th *served* row: `live` maps it to its physical row in the concatenated
    segments (None when every stored row is served). Gathers and products convert float16 per
    block, so no full float32 copy of the matrix is ever made.
    """

    def __init__(self, parts: Sequence[Stored], live: npt.NDArray[np.int64] | None = None) -> None:
        if not parts:
            raise ValueError("need at least one segment")
        self.parts = list(parts)
        self.live = live
        self.starts = np.cumsum([0, *(len(p) for p in self.parts)]).astype(np.int64)
        self.dim = int(self.parts[0].shape[1])
        self.physical_rows = int(self.starts[-1])
        self.rows = self.physical_rows if live is None else len(live)

    @property
    def shape(self) -> tuple[int, int]:
        """Return (served rows, dimension)."""
        return self.rows, self.dim

    @property
    def dtype(self) -> np.dtype[np.float32]:
        """Return float32: every read converts to it."""
        return np.dtype(np.float32)

    @property
    def ndim(self) -> int:
        """Return 2."""
        return 2

    def __len__(self) -> int:
        return self.rows

    def _physical(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return rows if self.live is None else self.live[rows]

    def gather(self, physical: npt.NDArray[np.int64]) -> Vectors:
        """Return float32 copies of these physical rows (in the order given)."""
        out = np.empty((len(physical), self.dim), np.float32)
        seg = np.searchsorted(self.starts, physical, side="right") - 1
        for s in np.unique(seg):
            where = np.flatnonzero(seg == s)
            out[where] = self.parts[int(s)][physical[where] - self.starts[s]]
        return out

    def __getitem__(self, key: Any) -> Vectors:
        if isinstance(key, int | np.integer):
            row = int(key) + self.rows if int(key) < 0 else int(key)
            if not 0 <= row < self.rows:
                raise IndexError(f"row {key} out of range for {self.rows} rows")
            one: Vectors = self.gather(self._physical(np.array([row], np.int64)))[0]
            return one
        if isinstance(key, slice):
            rows = np.arange(self.rows, dtype=np.int64)[key]
        else:
            arr = np.asarray(key)
            if arr.dtype == bool:
                if arr.shape != (self.rows,):
                    raise IndexError(f"boolean index of shape {arr.shape} for {self.rows} rows")
                rows = np.flatnonzero(arr)
            else:
                rows = arr.astype(np.int64).reshape(-1)
                rows = np.where(rows < 0, rows + self.rows, rows)
                if len(rows) and (rows.min() < 0 or rows.max() >= self.rows):
                    raise IndexError(f"row index out of range for {self.rows} rows")
        return self.gather(self._physical(rows))

    def blocks(self, rows: int = 65_536) -> Iterator[tuple[int, Stored]]:
        """Yield (first physical row, stored block) over every physical row, in order."""
        for start, part in zip(self.starts[:-1], self.parts, strict=True):
            for first in range(0, len(part), rows):
                yield int(start) + first, part[first:first + rows]

    def select(self, physical_values: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Return the served rows' entries of an array computed over every physical row."""
        return physical_values if self.live is None else physical_values[self.live]

    def __matmul__(self, other: npt.ArrayLike) -> Vectors:
        right = np.asarray(other, np.float32)
        out = np.empty((self.physical_rows, *right.shape[1:]), np.float32)
        for first, block in self.blocks():
            np.matmul(np.asarray(block, np.float32), right, out=out[first:first + len(block)])
        return self.select(out)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Vectors:
        # A full float32 copy: only for small bundles and tests; the hot paths never call it.
        full = self[np.arange(self.rows, dtype=np.int64)]
        return full if dtype is None else full.astype(dtype)


Embeddings = Vectors | SegmentedVectors
