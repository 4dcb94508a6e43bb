"""`edgemine labels import` and import_labels: all-or-nothing unless --ignore-unknown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from edgemine.bundle import BundleError, StateDB, UnknownImageIds
from edgemine.cli.main import app
from edgemine.indexer import ModelChoice, SourceError, import_labels, run_index, scan_directory


@pytest.fixture
def bundle(tmp_path: Path, image_tree: tuple[Path, list[str]], fake_model: ModelChoice) -> Path:
    root, _ = image_tree
    out = tmp_path / "bundle"
    run_index(scan_directory(root), out, fake_model, workers=0, progress=False)
    return out


def write_ids(path: Path, ids: list[str]) -> Path:
    if path.suffix == ".csv":
        path.write_text("image_id,note\n" + "".join(f"{i},x\n" for i in ids))
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({"image_id": i}) + "\n" for i in ids))
    else:
        pq.write_table(pa.table({"image_id": ids}), path)
    return path


def states(bundle: Path) -> dict[str, int]:
    return StateDB(bundle / "state.sqlite").state_counts()


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_cli_marks_images_labeled(tmp_path: Path, bundle: Path, image_tree: tuple[Path, list[str]],
                                  suffix: str) -> None:
    _, ids = image_tree
    labels = write_ids(tmp_path / f"labels{suffix}", ids[:3])
    result = invoke("labels", "import", str(labels), "--bundle", str(bundle))
    assert result.exit_code == 0, result.output
    assert "3 of 3 images newly marked labeled" in result.stdout
    assert states(bundle) == {"unlabeled": 9, "queued": 0, "labeled": 3, "rejected": 0}
    # idempotent
    again = invoke("labels", "import", str(labels), "--bundle", str(bundle))
    assert again.exit_code == 0 and "0 of 3" in again.stdout


def test_unknown_ids_abort_and_change_nothing(tmp_path: Path, bundle: Path,
                                              image_tree: tuple[Path, list[str]]) -> None:
    _, ids = image_tree
    labels = write_ids(tmp_path / "labels.csv", [ids[0], "nope/a.png", ids[1], "nope/b.png"])
    result = invoke("labels", "import", str(labels), "--bundle", str(bundle))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "'nope/a.png'" in result.stderr and "'nope/b.png'" in result.stderr
    assert "Traceback" not in result.output
    assert states(bundle)["labeled"] == 0

    with pytest.raises(UnknownImageIds) as info:
        import_labels(bundle, labels)
    assert info.value.ids == ["nope/a.png", "nope/b.png"]
    assert states(bundle)["labeled"] == 0


def test_ignore_unknown_skips_them(tmp_path: Path, bundle: Path, image_tree: tuple[Path, list[str]]) -> None:
    _, ids = image_tree
    labels = write_ids(tmp_path / "labels.csv", [ids[0], "nope/a.png", ids[1]])
    result = invoke("labels", "import", str(labels), "--bundle", str(bundle), "--ignore-unknown")
    assert result.exit_code == 0, result.output
    assert "2 of 3 images newly marked labeled; 1 unknown ids skipped" in result.stdout
    assert states(bundle)["labeled"] == 2

    outcome = import_labels(bundle, labels, ignore_unknown=True)
    assert (outcome.requested, outcome.changed, outcome.unknown) == (3, 0, ["nope/a.png"])


def test_queued_state_and_labeled_is_final(tmp_path: Path, bundle: Path, image_tree: tuple[Path, list[str]],
                                           fake_model: ModelChoice) -> None:
    root, ids = image_tree
    queued = write_ids(tmp_path / "q.csv", ids[:4])
    result = invoke("labels", "import", str(queued), "--bundle", str(bundle), "--state", "queued")
    assert result.exit_code == 0, result.output
    assert states(bundle)["queued"] == 4
    assert import_labels(bundle, write_ids(tmp_path / "l.csv", ids[:2])).changed == 2
    # queueing labeled images does not demote them
    assert import_labels(bundle, queued, "queued").changed == 0
    assert states(bundle) == {"unlabeled": 8, "queued": 2, "labeled": 2, "rejected": 0}
    # labels survive re-indexing
    (root / ids[0]).touch()
    run_index(scan_directory(root), bundle, fake_model, workers=0, progress=False)
    assert states(bundle) == {"unlabeled": 8, "queued": 2, "labeled": 2, "rejected": 0}

    bad = invoke("labels", "import", str(queued), "--bundle", str(bundle), "--state", "done")
    assert bad.exit_code == 2 and "--state must be" in bad.stderr


def test_import_errors(tmp_path: Path, bundle: Path) -> None:
    labels = write_ids(tmp_path / "l.csv", ["x"])
    with pytest.raises(BundleError, match="not an edgemine bundle"):
        import_labels(tmp_path / "elsewhere", labels)
    with pytest.raises(SourceError, match="does not exist"):
        import_labels(bundle, tmp_path / "missing.csv")
    no_col = tmp_path / "no_col.csv"
    no_col.write_text("id\nx\n")
    with pytest.raises(SourceError, match="no 'image_id' column"):
        import_labels(bundle, no_col)
    result = invoke("labels", "import", str(labels), "--bundle", str(tmp_path / "elsewhere"))
    assert result.exit_code == 2 and result.stderr.startswith("error: ")
