"""Index choice from size, dimension and memory budget, and memory-size parsing."""

from __future__ import annotations

import math
import re

import pytest

from edgemine.search.plan import (
    DEFAULT_MEMORY_BUDGET,
    FLAT_MAX,
    GRAPH_QUANTIZER_MIN,
    choose_index,
    kind_of,
    parse_memory,
)

GiB = 1024**3


@pytest.mark.parametrize("n", [0, 1, 5_000, FLAT_MAX - 1])
def test_below_flat_max_is_exact(n: int) -> None:
    plan = choose_index(n, 512)
    assert plan.kind == "flat" and plan.exact and plan.factory == "Flat" and plan.nlist is None
    assert str(FLAT_MAX) in plan.reason


@pytest.mark.parametrize("n", [FLAT_MAX, 500_000, 1_000_000, 3_000_000, GRAPH_QUANTIZER_MIN - 1,
                               GRAPH_QUANTIZER_MIN, 20_000_000, 10**9])
def test_ivf_lists_are_a_power_of_two_near_four_sqrt_n(n: int) -> None:
    plan = choose_index(n, 64, memory_budget=10**15)
    assert plan.kind == "ivf" and not plan.exact
    nlist = plan.nlist
    assert nlist is not None and nlist & (nlist - 1) == 0
    target = 4 * math.sqrt(n)
    if 256 <= target <= 65536:
        assert target / math.sqrt(2) <= nlist <= target * math.sqrt(2)
    else:  # clamped
        assert target > 65536 and nlist == 65536
    graph = n >= GRAPH_QUANTIZER_MIN
    coarse = f"IVF{nlist}_HNSW32" if graph else f"IVF{nlist}"
    assert plan.factory == f"{coarse},SQ8"
    assert kind_of(plan.factory) == "ivf"


def test_known_list_counts() -> None:
    assert choose_index(max(FLAT_MAX, 200_000), 512).nlist == 2048  # 4*sqrt(2e5) = 1789 -> 2^11
    assert choose_index(1_000_000, 512).nlist == 4096  # 4000 -> 2^12
    assert choose_index(GRAPH_QUANTIZER_MIN, 512, memory_budget=64 * GiB).factory == "IVF8192_HNSW32,SQ8"
    assert choose_index(GRAPH_QUANTIZER_MIN - 1, 512, memory_budget=64 * GiB).factory == "IVF8192,SQ8"


def test_sq8_exactly_when_embeddings_and_codes_fit_the_budget() -> None:
    n, d = 1_000_000, 512
    need = n * d * 4 + n * (d + 8)
    assert choose_index(n, d, memory_budget=need).factory == "IVF4096,SQ8"
    assert need <= DEFAULT_MEMORY_BUDGET and choose_index(n, d).factory == "IVF4096,SQ8"
    small = choose_index(n, d, memory_budget=need - 1)
    assert small.factory == "IVF4096,PQ64x4fs" and small.kind == "ivf" and small.nlist == 4096
    assert "4-bit PQ" in small.reason
    big = choose_index(GRAPH_QUANTIZER_MIN, d, memory_budget=GiB)
    assert big.factory == "IVF8192_HNSW32,PQ64x4fs"


@pytest.mark.parametrize("d", [16, 20, 32, 50, 64, 384, 512, 768, 1024])
def test_pq_codes_split_the_dimension_and_are_valid_faiss(d: int) -> None:
    import faiss

    plan = choose_index(1_000_000, d, memory_budget=1)
    match = re.fullmatch(r"IVF4096,PQ(\d+)x4fs", plan.factory)
    assert match, plan.factory
    m = int(match.group(1))
    assert d % m == 0 and m <= max(8, d // 8)
    # The factory string must be one FAISS builds (it is used as is at build time).
    faiss.index_factory(d, plan.factory.replace("IVF4096", "IVF4"), faiss.METRIC_INNER_PRODUCT)


@pytest.mark.parametrize("forced", ["flat", "Flat", "FLAT"])
def test_forced_flat(forced: str) -> None:
    plan = choose_index(10**8, 64, forced=forced)
    assert plan.kind == "flat" and plan.exact and plan.factory == "Flat" and plan.reason == "forced"


@pytest.mark.parametrize(("factory", "kind", "nlist"), [
    ("IVF16,SQ8", "ivf", 16),
    ("IVF16,Flat", "ivf", 16),
    ("ivf64,pq8x4fs", "ivf", 64),
    ("IVF1024_HNSW32,PQ32x4fs", "ivf", 1024),
    ("PCA32,IVF64,SQ8", "ivf", 64),
    ("HNSW16,Flat", "hnsw", None),
    ("HNSW32,SQ8", "hnsw", None),
    ("LSH", "other", None),
    ("IDMap2,Flat", "flat", None),
])
def test_any_factory_string_is_used_as_is(factory: str, kind: str, nlist: int | None) -> None:
    for n in (10, 10**7):  # size does not matter when forced
        plan = choose_index(n, 64, forced=factory)
        assert plan.factory == factory and plan.kind == kind and plan.nlist == nlist
        assert plan.reason == "forced" and plan.exact == (kind == "flat")


@pytest.mark.parametrize(("text", "expected"), [
    ("4G", 4 * GiB),
    ("4g", 4 * GiB),
    ("512M", 512 * 1024**2),
    ("1.5GiB", int(1.5 * GiB)),
    ("2.5 GB", int(2.5 * GiB)),
    (" 8k ", 8 * 1024),
    ("1T", 1024**4),
    ("123456789", 123456789),
    ("4096b", 4096),
    (".5G", GiB // 2),
])
def test_parse_memory(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "4X", "-1G", "G", "1e9", "4 G B", "1.2.3G", ".", "..G", "4GG"])
def test_parse_memory_garbage_names_the_input(text: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_memory(text)
    assert repr(text) in str(err.value)
