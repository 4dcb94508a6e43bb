"""The feedback benchmark runs end to end in a small form (2 targets, 1 seed, 2 rounds)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_feedback


def test_bench_feedback_small_form_writes_table_json_and_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    res = bench_feedback.main(["--targets", "3,8", "--seeds", "1", "--rounds", "2", "--per-round", "10",
                               "--out", str(tmp_path)])

    saved = json.loads((tmp_path / "feedback.json").read_text())
    assert saved["summary"] == res["summary"] and saved["config"]["rows"] == 1797
    assert (tmp_path / "feedback.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "feedback.md").read_text()
    for method in bench_feedback.METHODS:
        assert f"| {method} |" in table
    sessions = res["sessions"]
    assert len(sessions) == 2 * len(bench_feedback.METHODS)
    for s in sessions:
        # Each session reviewed distinct images, 10 a round; the yield is what the reviewer accepted.
        assert s["reviewed"] == 20 and len(s["cumulative_yield"]) == 2
        assert s["cumulative_yield"][-1] == pytest.approx(s["accepted"] / s["reviewed"])
    for per_round in res["summary"]["per_method"].values():
        means = [c["mean"] for c in per_round]
        assert all(0.0 <= m <= 1.0 for m in means)


def test_a_session_is_the_same_for_the_same_target_and_seed(tmp_path: Path) -> None:
    vectors, labels = bench_feedback.load_digits()
    miner, ids = bench_feedback.build_miner(vectors, tmp_path)
    plain = bench_feedback.run_session(miner, ids, labels, 8, 0, "max", 5, 2, 10)
    probe = bench_feedback.run_session(miner, ids, labels, 8, 0, "probe+feedback", 5, 2, 10)
    again = bench_feedback.run_session(miner, ids, labels, 8, 0, "probe+feedback", 5, 2, 10)
    # The same target and seed give the same starting examples and the same session.
    assert probe == {**again, "mine_ms_median": probe["mine_ms_median"]}
    assert plain["members"] == probe["members"] == int((labels == 8).sum())
