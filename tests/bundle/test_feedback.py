"""Review verdicts in state.sqlite: history, labeling state, sessions and yield (edgemine.bundle.feedback)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edgemine.bundle import StateDB, UnknownImageIds
from edgemine.bundle.feedback import (
    MAX_CURVE_POINTS,
    list_verdicts,
    record_query,
    record_verdicts,
    session_verdicts,
    store_verdicts,
    wilson_interval,
    yield_report,
)

IDS = [f"im{i:02d}" for i in range(60)]


@pytest.fixture
def db(tmp_path: Path) -> StateDB:
    state = StateDB(tmp_path / "state.sqlite")
    with state.write() as conn:
        conn.executemany("INSERT INTO images (image_id, path, vec_id) VALUES (?, ?, ?)",
                         [(i, f"/d/{i}.png", n) for n, i in enumerate(IDS)])
    return state


def states(db: StateDB, *ids: str) -> list[str]:
    with db.read() as conn:
        found = dict(conn.execute("SELECT image_id, state FROM images").fetchall())
    return [found[i] for i in ids]


def test_a_verdict_given_twice_the_later_wins_and_both_stay_in_history(db: StateDB) -> None:
    record_verdicts(db, [("im00", "reject", "q-1")], reviewer="ann", session_id="s1")
    record_verdicts(db, [("im00", "accept", "q-2")], reviewer="bob", session_id="s1")

    history = list_verdicts(db, latest_only=False)
    assert [(v.image_id, v.verdict, v.query_id, v.reviewer) for v in history] == [
        ("im00", "reject", "q-1", "ann"), ("im00", "accept", "q-2", "bob")]
    assert history[0].seq < history[1].seq and all(v.source == "api" and v.at.endswith("Z") for v in history)
    assert [(v.image_id, v.verdict) for v in list_verdicts(db)] == [("im00", "accept")]
    assert session_verdicts(db, "s1") == (["im00"], [])
    assert states(db, "im00") == ["unlabeled"]  # rejected, then accepted: back to unlabeled


def test_reject_moves_an_unlabeled_image_to_rejected_and_accept_or_skip_brings_it_back(db: StateDB) -> None:
    head, _ = db.label_events_since(0)
    done = store_verdicts(db, [("im01", "reject", None), ("im02", "reject", None), ("im03", "accept", None)])
    assert (done.recorded, done.rejected, done.unlabeled) == (3, 2, 0)
    assert states(db, "im01", "im02", "im03") == ["rejected", "rejected", "unlabeled"]
    # Label events carry the change to every worker's row states.
    head, events = db.label_events_since(head)
    assert events == [("im01", "rejected"), ("im02", "rejected")]
    assert db.state_counts()["rejected"] == 2

    done = store_verdicts(db, [("im01", "accept", None), ("im02", "skip", None)])
    assert (done.recorded, done.rejected, done.unlabeled) == (2, 0, 2)
    assert states(db, "im01", "im02") == ["unlabeled", "unlabeled"]
    assert db.label_events_since(head)[1] == [("im01", "unlabeled"), ("im02", "unlabeled")]


def test_the_last_verdict_of_one_call_decides_the_state(db: StateDB) -> None:
    done = store_verdicts(db, [("im04", "reject", None), ("im04", "accept", None),
                               ("im05", "accept", None), ("im05", "reject", None)])
    assert (done.recorded, done.rejected) == (4, 1)
    assert states(db, "im04", "im05") == ["unlabeled", "rejected"]


def test_verdicts_never_change_queued_or_labeled_images(db: StateDB) -> None:
    db.set_state(["im06"], "queued")
    db.set_state(["im07"], "labeled")
    record_verdicts(db, [("im06", "reject", None), ("im07", "reject", None)])
    assert states(db, "im06", "im07") == ["queued", "labeled"]
    record_verdicts(db, [("im06", "accept", None), ("im07", "skip", None)])
    assert states(db, "im06", "im07") == ["queued", "labeled"]
    assert len(list_verdicts(db, latest_only=False)) == 4


def test_unknown_ids_are_refused_by_name_and_nothing_is_stored(db: StateDB) -> None:
    head, _ = db.label_events_since(0)
    with pytest.raises(UnknownImageIds, match="nope") as info:
        record_verdicts(db, [("im08", "reject", None), ("nope", "accept", None), ("gone", "reject", None)])
    assert info.value.ids == ["gone", "nope"]
    assert list_verdicts(db, latest_only=False) == []
    assert states(db, "im08") == ["unlabeled"] and db.label_events_since(head)[1] == []


def test_an_unknown_verdict_is_refused_naming_the_valid_ones(db: StateDB) -> None:
    with pytest.raises(ValueError, match=r"'maybe'.*accept, reject, skip"):
        record_verdicts(db, [("im08", "maybe", None)])
    assert list_verdicts(db, latest_only=False) == []


def test_filters_by_query_session_and_verdict_and_pages(db: StateDB) -> None:
    record_query(db, "q-a", "s1", None, 1, "max", '{"positive_ids": ["im59"]}')
    record_verdicts(db, [("im10", "accept", "q-a"), ("im11", "reject", "q-a")])  # no session given
    record_verdicts(db, [("im12", "reject", "q-b"), ("im10", "reject", "q-b")], session_id="s2")

    assert [v.image_id for v in list_verdicts(db, query_id="q-a")] == ["im10", "im11"]
    # Within q-a im10's latest verdict is still accept: the filter applies after "latest".
    assert [v.image_id for v in list_verdicts(db, query_id="q-a", verdict="accept")] == ["im10"]
    assert [v.image_id for v in list_verdicts(db, verdict="reject")] == ["im11", "im12", "im10"]
    # The verdicts of a session's queries belong to the session even when sent without its id.
    assert session_verdicts(db, "s1") == (["im10"], ["im11"])
    assert session_verdicts(db, "s2") == ([], ["im12", "im10"])
    assert session_verdicts(db, "nobody") == ([], [])
    everything = list_verdicts(db, latest_only=False)
    assert list_verdicts(db, latest_only=False, limit=2, offset=1) == everything[1:3]
    with sqlite3.connect(db.path) as raw:
        assert raw.execute("SELECT query_id, session_id, bundle_version, strategy, query FROM queries").fetchall() == [
            ("q-a", "s1", 1, "max", '{"positive_ids": ["im59"]}')]


def test_wilson_interval_matches_a_hand_computation() -> None:
    # 12 of 50, z = 1.959964 (z^2 = 3.8414588): p = 0.24, 1 + z^2/n = 1.0768292,
    # centre = (0.24 + 3.8414588 / 100) / 1.0768292 = 0.2585504,
    # half = 1.959964 * sqrt(0.24 * 0.76 / 50 + 3.8414588 / 10000) / 1.0768292 = 0.1155765.
    low, high = wilson_interval(12, 50)  # type: ignore[misc]
    assert low == pytest.approx(0.1429739, abs=1e-6) and high == pytest.approx(0.3741268, abs=1e-6)
    # 0 of 4: the interval still has width (unlike the normal approximation's [0, 0]).
    low, high = wilson_interval(0, 4)  # type: ignore[misc]
    assert low == 0.0 and high == pytest.approx(3.8414588 / (4 + 3.8414588), abs=1e-6)
    assert wilson_interval(0, 0) is None


def test_yield_report_per_query_batch_strategy_and_session(db: StateDB) -> None:
    record_query(db, "q-1", "s1", None, 1, "max", "{}")
    record_query(db, "q-2", "s1", "q-1", 1, "mean", "{}")
    record_query(db, "q-3", "s2", None, 1, "max", "{}")
    with db.write() as conn:
        conn.execute("INSERT INTO batches (batch_id, name, created_at, bundle_version, query) "
                     "VALUES ('b-1', 'night', '2026-12-01T00:00:00Z', 1, '{}')")
        conn.executemany("INSERT INTO batch_items (batch_id, image_id, position) VALUES ('b-1', ?, ?)",
                         [(i, n) for n, i in enumerate(IDS[:4])])
    # q-1: 3 accepted, 1 rejected (im03 first accepted, then rejected), 1 skipped.
    record_verdicts(db, [("im00", "accept", "q-1"), ("im01", "accept", "q-1"), ("im02", "accept", "q-1"),
                         ("im03", "accept", "q-1"), ("im04", "skip", "q-1")], session_id="s1")
    record_verdicts(db, [("im03", "reject", "q-1")], session_id="s1")
    # q-2: 1 of 4.
    record_verdicts(db, [("im10", "accept", "q-2"), ("im11", "reject", "q-2"), ("im12", "reject", "q-2"),
                         ("im13", "reject", "q-2")], session_id="s1")
    # q-3 (another session, strategy max): 2 of 2.
    record_verdicts(db, [("im20", "accept", "q-3"), ("im21", "accept", "q-3")], session_id="s2")

    report = yield_report(db)
    by_query = {q.query_id: q for q in report.queries}
    q1 = by_query["q-1"]
    assert (q1.reviewed, q1.accepted, q1.rejected, q1.skipped, q1.strategy, q1.session_id) == (4, 3, 1, 1, "max", "s1")
    assert q1.yield_rate == 0.75 and (q1.ci_low, q1.ci_high) == wilson_interval(3, 4)
    assert (by_query["q-2"].reviewed, by_query["q-2"].accepted) == (4, 1)
    assert by_query["q-2"].yield_rate == 0.25
    strategies = {s.strategy: (s.reviewed, s.accepted) for s in report.strategies}
    assert strategies == {"max": (6, 5), "mean": (4, 1)}
    [batch] = report.batches  # im00..im03: accept, accept, accept, reject
    assert (batch.batch_id, batch.reviewed, batch.accepted, batch.yield_rate) == ("b-1", 4, 3, 0.75)
    overall = report.overall
    assert (overall.reviewed, overall.accepted, overall.skipped) == (10, 6, 1)
    assert (overall.ci_low, overall.ci_high) == wilson_interval(6, 10)

    s1 = next(s for s in report.sessions if s.session_id == "s1")
    assert (s1.reviewed, s1.accepted) == (8, 4)
    # The curve follows verdict order; the 6th verdict turns im03 from accept to reject.
    assert [(p.verdicts, p.reviewed, p.accepted) for p in s1.curve] == [
        (1, 1, 1), (2, 2, 2), (3, 3, 3), (4, 4, 4), (5, 4, 4), (6, 4, 3),
        (7, 5, 4), (8, 6, 4), (9, 7, 4), (10, 8, 4)]
    assert s1.curve[-1].yield_rate == s1.yield_rate == 0.5

    only_s2 = yield_report(db, session_id="s2")
    assert [q.query_id for q in only_s2.queries] == ["q-3"] and only_s2.overall.accepted == 2
    assert only_s2.batches == []


def test_a_long_session_curve_is_thinned_keeping_the_last_point(db: StateDB) -> None:
    verdicts = [(IDS[n % len(IDS)], "accept" if n % 3 else "reject", None) for n in range(1200)]
    record_verdicts(db, verdicts, session_id="long")
    [session] = yield_report(db).sessions
    assert len(session.curve) == MAX_CURVE_POINTS
    assert session.curve[-1].verdicts == 1200 and session.curve[-1].reviewed == session.reviewed == 60
    assert [p.verdicts for p in session.curve] == sorted({p.verdicts for p in session.curve})


def test_an_empty_report_has_no_yield(db: StateDB) -> None:
    report = yield_report(db)
    assert report.overall.reviewed == 0 and report.overall.yield_rate is None and report.overall.ci_low is None
    assert (report.queries, report.batches, report.strategies, report.sessions) == ([], [], [], [])
