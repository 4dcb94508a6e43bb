"""`edgemine verdicts import`: each real Label Studio 1.23.2 export of tests/fixtures/labelstudio-1.23.2 stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from edgemine.bundle import StateDB
from edgemine.bundle.feedback import list_verdicts
from edgemine.bundle.layout import ModelInfo
from edgemine.cli.main import app
from edgemine.indexer import ModelChoice, read_embeddings_source, run_index
from edgemine.service.labelstudio import ChoiceMap, UnknownExportIds, parse_export
from edgemine.service.labelstudio_import import import_labelstudio

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "labelstudio-1.23.2"
BATCH_EXPORT = FIXTURES / "edgemine-batch-export.json"
EXPORTS = ["export-JSON.json", "export-JSON-with-skip.json", "export-JSON_MIN.json", "export-CSV.csv"]
BYO = ModelChoice(ModelInfo(identity="byo:test", name="test", pretrained="external"), None)


def batch_ids() -> list[str]:
    """The 20 image ids of the batch that was imported into Label Studio."""
    return [task["data"]["image_id"] for task in json.loads(BATCH_EXPORT.read_text())]


def build_bundle(tmp_path: Path, ids: list[str], name: str = "bundle", queue: bool = True) -> Path:
    """A bundle of random vectors under the fixture's image ids (plus a few others), batch ids queued."""
    every = [*ids, "drive_002/frame_0003.jpg", "drive_012/frame_0023.jpg", "drive_030/frame_0001.jpg"]
    vectors = np.random.default_rng(0).standard_normal((len(every), 8)).astype(np.float32)
    source = tmp_path / f"{name}.parquet"
    pq.write_table(pa.table({"image_id": every,
                             "embedding": pa.array(vectors.tolist(), pa.list_(pa.float32()))}), source)
    bundle = tmp_path / name
    assert run_index(read_embeddings_source(source), bundle, BYO, progress=False).published
    if queue:
        StateDB(bundle / "state.sqlite").set_state(ids, "queued", batch_id="b-b529874473ee")
    return bundle


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return build_bundle(tmp_path, batch_ids())


def states(bundle: Path) -> dict[str, str]:
    with StateDB(bundle / "state.sqlite").read() as db:
        return {r[0]: r[1] for r in db.execute("SELECT image_id, state FROM images")}


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("name", EXPORTS)
def test_cli_imports_each_real_export(bundle: Path, name: str) -> None:
    export = FIXTURES / name
    parsed = parse_export(export)[1]
    before = states(bundle)
    result = invoke("verdicts", "import", str(export), "--bundle", str(bundle))
    assert result.exit_code == 0, result.output
    counts = {v: sum(1 for p in parsed if p.verdict == v) for v in ("accept", "reject", "skip")}
    assert (f"imported {len(parsed)} verdicts ({counts['accept']} accept, {counts['reject']} reject, "
            f"{counts['skip']} skip)") in result.stdout

    stored = list_verdicts(StateDB(bundle / "state.sqlite"), latest_only=False)
    assert [(v.image_id, v.verdict) for v in stored] == [(p.image_id, p.verdict) for p in parsed]
    assert {v.source for v in stored} == {"labelstudio"}
    assert {v.reviewer for v in stored} == {"labelstudio:1"}  # the one Label Studio user of the session
    after = states(bundle)
    annotated = {p.image_id for p in parsed if p.verdict != "skip"}
    skipped = {p.image_id for p in parsed if p.verdict == "skip"}
    assert {i for i in annotated if after[i] == "labeled"} == annotated
    assert all(after[i] == "queued" for i in skipped)  # a skip is no annotation: the image stays queued
    assert {i: s for i, s in after.items() if i not in annotated} == {
        i: s for i, s in before.items() if i not in annotated}
    assert f"{len(annotated)} images newly marked labeled" in result.stdout


def test_skip_export_counts_from_its_readme(bundle: Path) -> None:
    report = import_labelstudio(bundle, FIXTURES / "export-JSON-with-skip.json")
    assert report.format == "json"
    assert report.counts == {"reject": 5, "accept": 3, "skip": 1}
    assert (report.recorded, report.images, report.newly_labeled) == (9, 9, 8)
    accepted = {v.image_id for v in list_verdicts(StateDB(bundle / "state.sqlite"), verdict="accept")}
    assert len(accepted) == 3


def test_reimport_keeps_history_and_labels_nothing_new(bundle: Path) -> None:
    export = FIXTURES / "export-JSON.json"
    first = import_labelstudio(bundle, export)
    again = import_labelstudio(bundle, export, reviewer="alice", session_id="s-1")
    assert (first.newly_labeled, again.newly_labeled) == (6, 0)
    db = StateDB(bundle / "state.sqlite")
    assert len(list_verdicts(db, latest_only=False)) == 12
    latest = list_verdicts(db)
    assert len(latest) == 6 and {(v.reviewer, v.session_id) for v in latest} == {("alice", "s-1")}


def test_unknown_ids_are_listed_with_their_task_and_nothing_is_stored(tmp_path: Path) -> None:
    ids = batch_ids()
    missing = ["drive_012/frame_0024.jpg", "drive_002/frame_0001.jpg"]
    bundle = build_bundle(tmp_path, [i for i in ids if i not in missing], "partial")
    before = states(bundle)
    export = FIXTURES / "export-JSON.json"
    result = invoke("verdicts", "import", str(export), "--bundle", str(bundle))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.startswith(f"error: {export}: 2 image ids are not in the bundle, nothing was imported: ")
    assert "'drive_012/frame_0024.jpg' (task 2 (id 2, line 1))" in result.stderr
    assert "'drive_002/frame_0001.jpg' (task 5 (id 5, line 1))" in result.stderr
    assert states(bundle) == before
    assert list_verdicts(StateDB(bundle / "state.sqlite"), latest_only=False) == []

    with pytest.raises(UnknownExportIds) as info:
        import_labelstudio(bundle, FIXTURES / "export-CSV.csv")
    assert info.value.ids == sorted(missing)
    assert "(line 3)" in str(info.value) and "(line 6)" in str(info.value)


def test_unmapped_choice_stores_nothing_and_mapping_it_imports(tmp_path: Path, bundle: Path) -> None:
    renamed = tmp_path / "renamed.json"
    renamed.write_text((FIXTURES / "export-JSON.json").read_text()
                       .replace('"not_edge_case"', '"boring"').replace('["edge_case"]', '["keep"]'))
    before = states(bundle)
    result = invoke("verdicts", "import", str(renamed), "--bundle", str(bundle))
    assert result.exit_code == 2
    assert f"error: {renamed}: task 1 (id 1, line 1): annotations[0].result" in result.stderr
    assert "choice 'boring' is not mapped" in result.stderr and "accept choices: edge_case" in result.stderr
    assert states(bundle) == before
    assert list_verdicts(StateDB(bundle / "state.sqlite"), latest_only=False) == []

    ok = invoke("verdicts", "import", str(renamed), "--bundle", str(bundle),
                "--accept-choice", "keep", "--reject-choice", "boring", "--reject-choice", "meh",
                "--reviewer", "bob", "--session", "s-9", "--format", "json")
    assert ok.exit_code == 0, ok.output
    assert "imported 6 verdicts (2 accept, 4 reject, 0 skip) on 6 images" in ok.stdout
    stored = list_verdicts(StateDB(bundle / "state.sqlite"))
    assert {(v.reviewer, v.session_id) for v in stored} == {("bob", "s-9")}


def test_a_rejected_unlabeled_image_ends_labeled_not_rejected(tmp_path: Path) -> None:
    # Imported tasks need not have been queued: annotated in Label Studio is annotated.
    bundle = build_bundle(tmp_path, batch_ids(), "fresh", queue=False)
    report = import_labelstudio(bundle, FIXTURES / "export-CSV.csv")
    assert report.newly_labeled == 6
    parsed = {p.image_id for p in parse_export(FIXTURES / "export-CSV.csv")[1]}
    assert {i for i, s in states(bundle).items() if s == "labeled"} == parsed
    assert set(states(bundle).values()) == {"labeled", "unlabeled"}


def test_cli_errors_are_one_line(tmp_path: Path, bundle: Path) -> None:
    export = FIXTURES / "export-JSON.json"
    not_bundle = invoke("verdicts", "import", str(export), "--bundle", str(tmp_path / "nowhere"))
    assert not_bundle.exit_code == 2 and "is not an edgemine bundle" in not_bundle.stderr
    both = invoke("verdicts", "import", str(export), "--bundle", str(bundle),
                  "--accept-choice", "edge_case", "--reject-choice", "edge_case")
    assert both.exit_code == 2 and "given both as an accept and a reject choice" in both.stderr
    fmt = invoke("verdicts", "import", str(export), "--bundle", str(bundle), "--format", "xml")
    assert fmt.exit_code == 2 and "format must be one of auto, json, json-min, csv" in fmt.stderr
    missing = invoke("verdicts", "import", str(tmp_path / "nope.json"), "--bundle", str(bundle))
    assert missing.exit_code == 2 and "nope.json: no such file" in missing.stderr
    assert list_verdicts(StateDB(bundle / "state.sqlite"), latest_only=False) == []
    assert ChoiceMap().name == "label"


def test_query_id_in_meta_is_stored_with_the_verdicts(tmp_path: Path, bundle: Path) -> None:
    data = json.loads((FIXTURES / "export-JSON.json").read_text())
    data[0]["meta"]["query"]["query_id"] = "q-0123456789ab"  # the review page queues the query with its id
    data[1]["meta"]["query_id"] = "q-ba9876543210"
    export = tmp_path / "with-query.json"
    export.write_text(json.dumps(data))
    import_labelstudio(bundle, export)
    db = StateDB(bundle / "state.sqlite")
    assert [v.image_id for v in list_verdicts(db, query_id="q-0123456789ab")] == [data[0]["data"]["image_id"]]
    assert [v.image_id for v in list_verdicts(db, query_id="q-ba9876543210")] == [data[1]["data"]["image_id"]]
    assert sum(v.query_id is None for v in list_verdicts(db)) == 4


def test_two_annotators_on_one_task_are_two_verdicts_the_later_wins(tmp_path: Path, bundle: Path) -> None:
    data = json.loads((FIXTURES / "export-JSON.json").read_text())
    first = data[0]["annotations"][0]
    second = json.loads(json.dumps(first)) | {"id": 99, "completed_by": 2}
    second["result"][0]["value"]["choices"] = ["edge_case"]
    data[0]["annotations"].append(second)
    export = tmp_path / "two.json"
    export.write_text(json.dumps(data))
    report = import_labelstudio(bundle, export)
    assert (report.recorded, report.images) == (7, 6)
    db = StateDB(bundle / "state.sqlite")
    image = data[0]["data"]["image_id"]
    history = [(v.verdict, v.reviewer) for v in list_verdicts(db, latest_only=False) if v.image_id == image]
    assert history == [("reject", "labelstudio:1"), ("accept", "labelstudio:2")]
    assert [v.verdict for v in list_verdicts(db) if v.image_id == image] == ["accept"]
