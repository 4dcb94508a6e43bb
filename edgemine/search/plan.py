"""Choose a FAISS index from the collection size, dimension and a memory budget.

The rules (see README "Index choice"):
- fewer than FLAT_MAX vectors: exact search (numpy GEMM over the stored embeddings);
- otherwise an inverted-file index with K ~ 4*sqrt(N) lists (a power of two), whose codes are
  8-bit scalar-quantized (d bytes a vector) when they fit the budget next to the stored
  embeddings, else 4-bit product-quantized fast-scan codes (d/16 bytes a vector);
- from GRAPH_QUANTIZER_MIN vectors the coarse quantizer is an HNSW graph (K is large then).
Candidates from a quantized index are always re-scored exactly with the stored float32
embeddings, so quantization costs recall (tuned back at build time), never score accuracy.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

FLAT_MAX = 50_000
GRAPH_QUANTIZER_MIN = 4_000_000
DEFAULT_MEMORY_BUDGET = 4 * 1024**3
IndexKind = Literal["flat", "ivf", "hnsw", "other"]


@dataclass(frozen=True)
class IndexPlan:
    """Which index to build and why."""

    factory: str
    kind: IndexKind
    nlist: int | None
    reason: str

    @property
    def exact(self) -> bool:
        """Return whether search is exact (no tuning, no candidates to re-score)."""
        return self.kind == "flat"


def parse_memory(text: str) -> int:
    """Parse a size like '4G', '512M', '1.5GiB' or a byte count."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not match:
        raise ValueError(f"cannot parse memory size {text!r}; use e.g. 4G, 512M or 2.5GiB")
    scale = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[match.group(2)]
    return int(float(match.group(1)) * scale)


def kind_of(factory: str) -> IndexKind:
    """Classify a FAISS factory string."""
    text = factory.replace(" ", "").upper()
    if text in ("FLAT", "IDMAP2,FLAT", "IDMAP,FLAT"):
        return "flat"
    if text.startswith("IVF") or ",IVF" in text:
        return "ivf"
    if "HNSW" in text:
        return "hnsw"
    return "other"


def _nlist_for(n: int) -> int:
    return int(min(65536, max(256, 2 ** round(math.log2(4 * math.sqrt(n))))))


def choose_index(n: int, d: int, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                 forced: str = "auto") -> IndexPlan:
    """Return the index plan for n vectors of dimension d.

    Args:
        n: number of vectors.
        d: dimension.
        memory_budget: bytes the index plus the memory-mapped embeddings should fit in.
        forced: "auto", "flat", or any FAISS factory string to use as is.
    """
    if forced.lower() == "flat":
        return IndexPlan("Flat", "flat", None, "forced")
    if forced.lower() != "auto":
        kind = kind_of(forced)
        nlist = None
        match = re.search(r"IVF(\d+)", forced.upper())
        if match:
            nlist = int(match.group(1))
        return IndexPlan(forced, kind, nlist, "forced")
    flat_bytes = n * d * 4
    if n < FLAT_MAX:
        return IndexPlan("Flat", "flat", None, f"{n} < {FLAT_MAX} vectors: exact search is fast enough")
    nlist = _nlist_for(n)
    coarse = f"IVF{nlist}_HNSW32" if n >= GRAPH_QUANTIZER_MIN else f"IVF{nlist}"
    sq8_bytes = n * (d + 8)
    if flat_bytes + sq8_bytes <= memory_budget:
        return IndexPlan(f"{coarse},SQ8", "ivf", nlist,
                         f"{n} vectors; SQ8 codes ({sq8_bytes / 2**20:.0f} MiB) + embeddings fit "
                         f"{memory_budget / 2**30:.1f} GiB")
    m = max(8, d // 8)
    while d % m:
        m -= 1
    return IndexPlan(f"{coarse},PQ{m}x4fs", "ivf", nlist,
                     f"{n} vectors; SQ8 + embeddings exceed {memory_budget / 2**30:.1f} GiB: "
                     f"4-bit PQ fast-scan codes ({n * (m // 2 + 8) / 2**20:.0f} MiB)")
