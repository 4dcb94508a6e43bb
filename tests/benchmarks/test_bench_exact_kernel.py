"""The exact-kernel benchmark runs, checks every kernel against numpy and writes its ratios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_exact_kernel.py"


def test_every_kernel_is_checked_and_timed_against_the_gemv_pass(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(BENCH), "--rows", "3000", "--dim", "64", "--examples", "3",
                    "--rounds", "2", "--out", str(tmp_path)], check=True, capture_output=True, timeout=600)
    result = json.loads((tmp_path / "exact-kernel.json").read_text())
    assert set(result["kernels"]) == {"edgemine", "numpy-blocked", "numpy-gemm", "numba-rows1", "numba-rows8"}
    assert all(row["ratio_to_pass_p50"] > 0 for row in result["kernels"].values())
    assert "| numba-rows8 |" in (tmp_path / "exact-kernel.md").read_text()
