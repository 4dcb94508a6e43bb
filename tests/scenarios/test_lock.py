"""Scenario locks: resolving members against a bundle, determinism, refresh diffs, staleness, label gaps."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgemine.scenarios.errors import LockError, ScenarioError
from edgemine.scenarios.files import save_scenario
from edgemine.scenarios.lock import (
    label_gap,
    load_locked,
    lock_path,
    lock_scenario,
    lock_state,
    read_lock,
    refresh,
    resolve_members,
)
from edgemine.scenarios.spec import Scenario
from edgemine.service.runtime import Runtime
from edgemine.service.scenario_query import miner_resolver
from tests.support.vec_bundle import VecBundle, clustered

QUERY = {"positive_ids": ["im000"], "min_score": 0.9, "k": 1000, "strategy": "max"}


def scenario(folder: Path, name: str = "near0", **members: Any) -> Path:
    return save_scenario(folder, Scenario.model_validate({"name": name, "members": members or {"query": QUERY}}))


def resolver_for(bundle: VecBundle) -> Callable[[dict[str, Any]], list[str]]:
    runtime = Runtime(bundle.path)
    return miner_resolver(lambda: runtime.current().miner)


def near(bundle: VecBundle, image_id: str = "im000", at: float = 0.9) -> set[str]:
    return {i for i, s in bundle.cosine_to(image_id).items() if s >= at}


def test_members_are_query_results_plus_positives_plus_ids_minus_exclude(
        tmp_path: Path, vec_bundle: Callable[..., VecBundle]) -> None:
    b = vec_bundle(*clustered())
    expected = near(b)
    assert len(expected) == 4  # im000 and its three neighbours, by numpy
    sc = Scenario.model_validate({"name": "s", "members": {"query": QUERY, "ids": ["im030", "im031"],
                                                           "exclude": ["im001", "gone-long-ago"]}})
    ids = resolve_members(sc, b.state.known_ids, resolver_for(b))
    assert ids == sorted((expected | {"im030", "im031"}) - {"im001"})


def test_unknown_ids_are_an_error_listing_them(tmp_path: Path, vec_bundle: Callable[..., VecBundle]) -> None:
    b = vec_bundle(*clustered())
    sc = Scenario.model_validate({"name": "s", "members": {"ids": ["im001", "nope-1", "nope-2"]}})
    with pytest.raises(ScenarioError, match="'nope-1', 'nope-2'"):
        resolve_members(sc, b.state.known_ids, None)
    only_query = Scenario.model_validate({"name": "s", "members": {"query": QUERY}})
    with pytest.raises(ScenarioError, match="needs the bundle's miner"):
        resolve_members(only_query, b.state.known_ids, None)
    emptied = Scenario.model_validate({"name": "s", "members": {"ids": ["im001"], "exclude": ["im001"]}})
    with pytest.raises(ScenarioError, match="resolves to no images"):
        resolve_members(emptied, b.state.known_ids, None)


def test_lock_is_deterministic_and_records_version_and_hashes(
        tmp_path: Path, vec_bundle: Callable[..., VecBundle]) -> None:
    b = vec_bundle(*clustered())
    path = scenario(tmp_path / "s")
    first = lock_scenario(path, b.state, b.version, resolver_for(b))
    text = lock_path(path).read_text()
    data = json.loads(text)
    assert data["ids"] == sorted(near(b)) and data["count"] == 4 and data["bundle_version"] == b.version
    assert set(data) >= {"spec_hash", "content_hash", "created_at", "edgemine_version", "name", "format"}
    # The same scenario locked again (even from a copy elsewhere) gets the same content hash.
    other = scenario(tmp_path / "copy")
    second = lock_scenario(other, b.state, b.version, resolver_for(b))
    assert second.content_hash == first.content_hash and second.spec_hash == first.spec_hash
    assert lock_path(path).read_text() == text  # an unchanged lock is not rewritten
    # A different membership definition gives another spec hash, hence another content hash.
    changed = scenario(tmp_path / "changed", ids=["im000", "im001", "im002", "im003"])
    third = lock_scenario(changed, b.state, b.version, None)
    assert third.ids == first.ids and third.spec_hash != first.spec_hash and third.content_hash != first.content_hash


def test_refresh_reports_images_joining_via_the_query_and_ignores_labeling(
        tmp_path: Path, vec_bundle: Callable[..., VecBundle]) -> None:
    ids, vectors = clustered()
    b = vec_bundle(ids, vectors)
    path = scenario(tmp_path)
    v1 = b.version
    lock_scenario(path, b.state, v1, resolver_for(b))
    # Labeling members changes nothing: a scenario covers labeled images too.
    b.state.set_state(["im001", "im002"], "labeled")
    same = refresh(path, b.state, b.version, resolver_for(b))
    assert (same.joined, same.left, same.unchanged, same.written) == ([], [], 4, False)
    # New images close to im000 join through the query.
    rng = np.random.default_rng(9)
    new = vectors[0] + 0.05 * rng.standard_normal((3, vectors.shape[1]))
    b2 = vec_bundle([*ids, "new0", "new1", "new2"], np.concatenate([vectors, new]))
    assert b2.version != v1
    diff = refresh(path, b2.state, b2.version, resolver_for(b2))
    assert diff.joined == ["new0", "new1", "new2"] == sorted(near(b2) - near(b)) and diff.left == []
    assert diff.written and read_lock(path).ids == tuple(sorted(near(b2)))
    assert read_lock(path).bundle_version == b2.version
    assert lock_state(path, b2.state).status == "fresh"


def test_stale_lock_when_the_yaml_changed_or_images_left(tmp_path: Path, vec_bundle: Callable[..., VecBundle]) -> None:
    ids, vectors = clustered()
    b = vec_bundle(ids, vectors)
    folder = tmp_path / "scen"
    path = scenario(folder)
    lock_scenario(path, b.state, b.version, resolver_for(b))
    assert [s.member_ids for s in load_locked(folder, b.state)] == [tuple(sorted(near(b)))]

    # The members block edited: stale, with the command that fixes it.
    path.write_text(path.read_text().replace("min_score: 0.9", "min_score: 0.8"))
    assert lock_state(path, b.state).status == "stale"
    with pytest.raises(LockError, match=r"near0: stale \(the members block.*edgemine scenario refresh near0"):
        load_locked(folder, b.state)
    refresh(path, b.state, b.version, resolver_for(b))
    assert lock_state(path, b.state).status == "fresh"

    # A gate setting edited: no refresh needed (the spec hash covers members only).
    path.write_text(path.read_text().replace("min_n: 30", "min_n: 5"))
    assert "min_n: 5" in path.read_text()
    assert lock_state(path, b.state).status == "fresh"

    # A locked image pruned from the bundle: stale, naming it; refresh reports it left.
    keep = [i for i in ids if i != "im001"]
    b2 = vec_bundle(keep, vectors[[ids.index(i) for i in keep]], prune=True)
    state = lock_state(path, b2.state)
    assert state.status == "stale" and "left the bundle" in state.reason and "'im001'" in state.reason
    diff = refresh(path, b2.state, b2.version, resolver_for(b2))
    assert "im001" in diff.left and "im001" not in diff.lock.ids


def test_missing_and_hand_edited_locks(tmp_path: Path, vec_bundle: Callable[..., VecBundle]) -> None:
    b = vec_bundle(*clustered())
    folder = tmp_path / "scen"
    path = scenario(folder, "manual", ids=["im005", "im006"])
    assert lock_state(path, b.state).status == "missing"
    with pytest.raises(LockError, match=r"manual: missing .*edgemine scenario refresh manual"):
        load_locked(folder, b.state)
    lock_scenario(path, b.state, b.version, None)
    data = json.loads(lock_path(path).read_text())
    data["ids"].append("im007")
    lock_path(path).write_text(json.dumps(data))
    assert "edited by hand" in lock_state(path, b.state).reason
    lock_path(path).write_text("{not json")
    assert lock_state(path, b.state).status == "stale"
    with pytest.raises(LockError, match="unreadable"):
        read_lock(path)


def test_label_gap_lists_members_without_ground_truth(tmp_path: Path, vec_bundle: Callable[..., VecBundle]) -> None:
    b = vec_bundle(*clustered())
    folder = tmp_path / "scen"
    path = scenario(folder, "gap", ids=["im005", "im006", "im007", "im008"])
    lock_scenario(path, b.state, b.version, None)
    locked = load_locked(folder, b.state, ["gap"])[0]
    with_truth = {"im006", "im008", "im020"}

    def has_truth(ids: Iterable[str]) -> set[str]:
        return set(ids) & with_truth

    assert label_gap(locked, b.state, has_truth) == ["im005", "im007"]
