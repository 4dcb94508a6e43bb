"""`edgemine scenario create|list|show|refresh|label-gap` on a bundle of precomputed vectors."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from edgemine.bundle.snapshot import load_current
from edgemine.bundle.state import StateDB
from edgemine.cli.main import app
from edgemine.cli.scenarios import make_resolver
from edgemine.indexer import ModelChoice, run_index, scan_directory
from edgemine.scenarios import lock as lock_module
from edgemine.scenarios.files import load_scenario
from edgemine.service.batches import get_batch, list_batches
from tests.support.vec_bundle import VecBundle, build_vec_bundle, clustered

QUERY = {"positive_ids": ["im000"], "min_score": 0.9, "k": 200, "include_states": ["unlabeled"]}
TRUTH = {"im000", "im002"}  # members "with ground truth" in these tests


@pytest.fixture(autouse=True)
def _truth(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ground truth presence without the annotations store (another part of the package owns it)."""

    def has(state: StateDB, ids: Iterable[str]) -> set[str]:
        return set(ids) & TRUTH

    monkeypatch.setattr(lock_module, "truth_ids", has)
    monkeypatch.setattr("edgemine.cli.scenarios.truth_ids", has)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["scenario", *args])
    return result.exit_code, result.output


def setup(tmp_path: Path) -> tuple[VecBundle, list[str], Path, list[str]]:
    ids, vectors = clustered()
    bundle = build_vec_bundle(tmp_path / "bundle", ids, vectors)
    query = tmp_path / "query.json"
    query.write_text(json.dumps(QUERY))
    opts = ["--bundle", str(bundle.path), "--scenarios", str(tmp_path / "scen")]
    return bundle, ids, query, opts


def test_create_writes_yaml_and_lock_then_list_and_show(tmp_path: Path) -> None:
    bundle, _ids, query, opts = setup(tmp_path)
    code, out = run("create", "ped-night", "--from-query", str(query), "--ids", "im030,im031", "--exclude", "im001",
                    "--metric", "recall", "--classes", "pedestrian", "--floor", "0.8", "--min-n", "2", *opts)
    assert code == 0, out
    near = {i for i, s in bundle.cosine_to("im000").items() if s >= 0.9}
    members = sorted((near | {"im030", "im031"}) - {"im001"})
    assert f"{len(members)} members" in out
    path = tmp_path / "scen" / "ped-night.yaml"
    scenario = load_scenario(path)
    assert scenario.members.query == QUERY and scenario.members.ids == ["im030", "im031"]
    assert scenario.metric.name == "recall" and scenario.metric.classes == ["pedestrian"]
    assert scenario.gate.floor == 0.8 and scenario.gate.min_n == 2
    assert yaml.safe_load(path.read_text())["name"] == "ped-night"
    lock = json.loads((tmp_path / "scen" / "ped-night.lock.json").read_text())
    assert lock["ids"] == members and lock["bundle_version"] == bundle.version

    code, out = run("list", *opts)
    assert code == 0, out
    row = next(line.split() for line in out.splitlines() if line.startswith("ped-night"))
    assert row == ["ped-night", str(len(members)), str(len(TRUTH & set(members))), "fresh"]

    code, out = run("show", "ped-night", *opts)
    assert code == 0 and "lock: fresh" in out and all(m in out for m in members)
    code, out = run("show", "ped-night", "--json", *opts)
    shown = json.loads(out)
    assert shown["lock"]["ids"] == members and shown["with_ground_truth"] == len(TRUTH & set(members))


def test_refresh_prints_joined_and_left_after_the_bundle_changed(tmp_path: Path) -> None:
    bundle, ids, query, opts = setup(tmp_path)
    assert run("create", "near0", "--from-query", str(query), *opts)[0] == 0
    before = json.loads((tmp_path / "scen" / "near0.lock.json").read_text())["ids"]
    code, out = run("refresh", *opts)
    assert code == 0 and "near0: 0 joined, 0 left" in out and "lock unchanged" in out
    # Re-index: im002 gone, two new images close to im000.
    vectors = bundle.vectors
    keep = [i for i in ids if i != "im002"]
    new = vectors[0] + 0.05 * np.random.default_rng(1).standard_normal((2, vectors.shape[1]))
    build_vec_bundle(bundle.path, [*keep, "new0", "new1"],
                     np.concatenate([vectors[[ids.index(i) for i in keep]], new]), prune=True)
    code, out = run("list", *opts)
    assert "stale (1 locked images left the bundle" in out
    code, out = run("refresh", "near0", "--dry-run", *opts)
    assert code == 0 and f"near0: 2 joined, 1 left, {len(before) - 1} unchanged" in out
    assert json.loads((tmp_path / "scen" / "near0.lock.json").read_text())["ids"] == before
    code, out = run("refresh", "near0", *opts)
    assert code == 0 and "lock written" in out
    assert "  + new0" in out and "  + new1" in out and "  - im002" in out
    lock = json.loads((tmp_path / "scen" / "near0.lock.json").read_text())
    assert lock["ids"] == sorted((set(before) - {"im002"}) | {"new0", "new1"})
    assert "fresh" in run("list", *opts)[1]


def test_label_gap_queues_members_without_ground_truth_as_a_batch(tmp_path: Path) -> None:
    bundle, _ids, _query, opts = setup(tmp_path)
    assert run("create", "gap", "--ids", "im000,im002,im005,im006,im007", *opts)[0] == 0
    StateDB(bundle.path / "state.sqlite").set_state(["im007"], "labeled")  # labeled, yet no ground truth
    code, out = run("label-gap", "gap", *opts)
    assert code == 0, out
    batches = list_batches(bundle.state)
    assert len(batches) == 1 and batches[0].name == "label-gap gap"
    batch = get_batch(bundle.state, load_current(bundle.path), batches[0].batch_id)
    assert [item.image_id for item in batch.items or []] == ["im005", "im006"]
    assert all(item.state == "queued" for item in batch.items or [])
    assert batch.query["scenario"] == "gap"
    assert "1 skipped" in out and "im007" in out
    code, out = run("label-gap", "gap", *opts)  # nothing left to queue: a clear error, no empty batch
    assert code == 2 and "already queued or labeled" in out and len(list_batches(bundle.state)) == 1


def test_label_gap_refuses_a_stale_lock(tmp_path: Path) -> None:
    bundle, _ids, _query, opts = setup(tmp_path)
    assert run("create", "gap", "--ids", "im005,im006", *opts)[0] == 0
    path = tmp_path / "scen" / "gap.yaml"
    path.write_text(path.read_text().replace("- im006", "- im008"))
    code, out = run("label-gap", "gap", *opts)
    assert code == 2 and "stale" in out and "edgemine scenario refresh gap" in out
    assert list_batches(bundle.state) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--ids", "im001,nope"], "'nope'"),
    (["--ids", "im001", "--metric", "recal"], "metric.name"),
    ([], "give --from-query FILE, --ids ID, or both"),
])
def test_create_errors_are_clear_and_write_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    _, _, _, opts = setup(tmp_path)
    code, out = run("create", "bad", *args, *opts)
    assert code == 2 and message in out.replace("\n", " ")
    assert not (tmp_path / "scen" / "bad.yaml").exists() and not (tmp_path / "scen" / "bad.lock.json").exists()


def test_create_refuses_bad_queries_and_existing_names(tmp_path: Path) -> None:
    _, _, _query, opts = setup(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"positive_ids": ["im000"], "stratgy": "max"}))
    code, out = run("create", "s", "--from-query", str(bad), *opts)
    assert code == 2 and "members.query.stratgy" in out
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps({"texts": ["a pedestrian at night"]}))
    code, out = run("create", "s", "--from-query", str(texts), *opts)
    assert code == 2 and "needs the bundle's model" in out  # precomputed vectors: no text encoder
    assert run("create", "s", "--ids", "im001", *opts)[0] == 0
    code, out = run("create", "s", "--ids", "im002", *opts)
    assert code == 2 and "already exists" in out
    assert run("create", "s", "--ids", "im002", "--force", *opts)[0] == 0
    assert load_scenario(tmp_path / "scen" / "s.yaml").members.ids == ["im002"]


def test_list_shows_a_broken_file_as_invalid_beside_the_others(tmp_path: Path) -> None:
    _, _, _, opts = setup(tmp_path)
    assert run("create", "good", "--ids", "im001", *opts)[0] == 0
    (tmp_path / "scen" / "broken.yaml").write_text("name: broken\nmembers: {ids: [a]}\nmetrc: {}\n")
    code, out = run("list", *opts)
    assert code == 0, out
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "fresh" in rows["good"] and "invalid" in rows["broken"] and "line 3" in rows["broken"]


def test_text_prompts_resolve_with_the_bundles_model(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                                     fake_model: ModelChoice, fake_embedder: Any) -> None:
    root, _ = image_tree
    bundle = tmp_path / "bundle"
    run_index(scan_directory(root), bundle, fake_model, workers=0, progress=False)
    resolver = make_resolver(bundle, loader=lambda name, pretrained: fake_embedder)
    text = "a pedestrian at night"
    got = resolver({"texts": [text], "k": 5})
    # Independent ranking: cosine of the stored vectors to the fake model's text vector.
    snap = load_current(bundle)
    vectors = np.asarray(snap.embeddings, np.float64)
    catalog = snap.image_ids
    sims = vectors @ fake_embedder.embed_texts([text])[0].astype(np.float64)
    assert got == [catalog[i] for i in np.argsort(-sims)[:5]]
