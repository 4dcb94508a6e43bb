"""One bad file never hangs or stops a run: it is a per-file failure with a reason.

Also: manifest IDs are strings exactly as written, empty IDs are refused, and a sidecar's
`labeled` sets the labeling state.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edgemine.bundle import load_current
from edgemine.indexer import IndexReport, ModelChoice, SourceError, read_manifest_source, run_index, scan_directory


@pytest.fixture(autouse=True)
def _no_hang() -> Iterator[None]:
    """Fail (rather than hang the suite) if a run blocks, e.g. on opening a named pipe."""
    def boom(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError("the indexer hung")

    previous = signal.signal(signal.SIGALRM, boom)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def index(root: Path, bundle: Path, model: ModelChoice, **kwargs: Any) -> IndexReport:
    kwargs.setdefault("workers", 0)
    return run_index(scan_directory(root), bundle, model, progress=False, **kwargs)


def reasons(report: IndexReport) -> dict[str, str]:
    return {str(f["image_id"]): str(f["reason"]) for f in report.failed}


def db_rows(bundle: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(bundle / "state.sqlite") as db:
        return db.execute(sql).fetchall()


def assert_reported_everywhere(bundle: Path, report: IndexReport) -> None:
    """The report, reports/failures.jsonl and the failures table all name the same files."""
    lines = (bundle / "reports" / "failures.jsonl").read_text().splitlines()
    assert {json.loads(line)["image_id"]: json.loads(line)["reason"] for line in lines} == reasons(report)
    assert {r[0] for r in db_rows(bundle, "SELECT image_id FROM failures")} == set(reasons(report))


@pytest.mark.parametrize("workers", [0, 2])
def test_named_pipe_is_a_failure_not_a_hang(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                            fake_model: ModelChoice, workers: int) -> None:
    root, ids = image_tree
    os.mkfifo(root / "f.jpg")
    bundle = tmp_path / "bundle"
    report = index(root, bundle, fake_model, workers=workers)
    assert report.published and report.added == len(ids)
    assert reasons(report) == {"f.jpg": "not a regular file (named pipe)"}
    assert_reported_everywhere(bundle, report)


def test_dangling_symlink_and_symlink_loop_are_failures(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                                        fake_model: ModelChoice) -> None:
    root, ids = image_tree
    os.symlink(root / "gone.png", root / "dangling.jpg")
    os.symlink(root / "loop-b.jpg", root / "loop-a.jpg")
    os.symlink(root / "loop-a.jpg", root / "loop-b.jpg")
    bundle = tmp_path / "bundle"
    report = index(root, bundle, fake_model)
    assert report.published and report.added == len(ids)
    got = reasons(report)
    assert set(got) == {"dangling.jpg", "loop-a.jpg", "loop-b.jpg"}
    assert "broken symlink" in got["dangling.jpg"]
    assert "symlink loop" in got["loop-a.jpg"] and "symlink loop" in got["loop-b.jpg"]
    assert_reported_everywhere(bundle, report)


def test_a_pipe_in_a_manifest_is_never_opened(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                              fake_model: ModelChoice) -> None:
    root, ids = image_tree
    os.mkfifo(root / "f.jpg")
    manifest = root / "m.csv"
    manifest.write_text("image_id,path\n" + "".join(f"{i},{i}\n" for i in ids) + "pipe,f.jpg\n")
    report = run_index(read_manifest_source(manifest), tmp_path / "b", fake_model, workers=0, progress=False)
    assert report.added == len(ids) and reasons(report) == {"pipe": "not a regular file (named pipe)"}


@pytest.mark.parametrize(("text", "fragment"), [
    ("[1, 2]", "not a JSON object (got a list)"),
    ("null", "not a JSON object (got null)"),
    ("5", "not a JSON object (got a number)"),
    ("{not json", "not valid JSON"),
    ('{"odometer": 18446744073709551616}', "'odometer'"),
    ('{"nested": {"v": [1, -99999999999999999999]}}', "'nested'"),
    ('{"labeled": "maybe"}', "'labeled' must be a boolean"),
])
def test_bad_sidecar_is_a_failure_of_its_image(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                               fake_model: ModelChoice, text: str, fragment: str) -> None:
    root, ids = image_tree
    (root / (ids[2] + ".json")).write_text(text)
    (root / (ids[3] + ".json")).write_text('{"weather": "rain"}')
    bundle = tmp_path / "bundle"
    report = index(root, bundle, fake_model)
    assert report.published and report.added == len(ids) - 1
    got = reasons(report)
    assert list(got) == [ids[2]]
    assert "sidecar" in got[ids[2]] and fragment in got[ids[2]], got
    assert_reported_everywhere(bundle, report)
    snap = load_current(bundle)
    assert ids[2] not in snap.row_by_id
    assert snap.record(snap.row_by_id[ids[3]])["weather"] == "rain"


def test_sidecar_that_breaks_later_keeps_the_indexed_image_as_it_was(
        tmp_path: Path, image_tree: tuple[Path, list[str]], fake_model: ModelChoice) -> None:
    root, ids = image_tree
    sidecar = root / (ids[2] + ".json")
    sidecar.write_text('{"weather": "fog"}')
    bundle = tmp_path / "bundle"
    index(root, bundle, fake_model)
    sidecar.write_text("[1, 2]")
    report = index(root, bundle, fake_model)
    assert list(reasons(report)) == [ids[2]]
    assert (report.published, report.removed) == (False, 0)
    snap = load_current(bundle)
    assert snap.record(snap.row_by_id[ids[2]])["weather"] == "fog"


def test_non_utf8_file_name_is_a_failure_naming_the_file(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                                         fake_model: ModelChoice) -> None:
    root, ids = image_tree
    raw = os.fsencode(root / ids[0]).replace(b"img000", b"caf\xe9")
    try:
        os.link(os.fsencode(root / ids[0]), raw)
    except OSError as exc:  # some file systems refuse such names outright
        pytest.skip(f"cannot create a non-UTF-8 file name here: {exc}")
    bundle = tmp_path / "bundle"
    report = index(root, bundle, fake_model)
    assert report.published and report.added == len(ids)
    got = reasons(report)
    bad_id = ids[0].replace("img000", "caf\\xe9")
    assert got == {bad_id: "file name is not valid UTF-8; rename the file"}
    assert report.failed[0]["path"] == str(root.resolve() / bad_id)
    assert_reported_everywhere(bundle, report)


def write_ids(path: Path, ids: list[str]) -> Path:
    if path.suffix == ".csv":
        path.write_text("image_id,path\n" + "".join(f"{i},img.png\n" for i in ids))
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({"image_id": i, "path": "img.png"}) + "\n" for i in ids))
    else:
        pq.write_table(pa.table({"image_id": ids, "path": ["img.png"] * len(ids)}), path)
    return path


@pytest.mark.parametrize("ids", [["007", "1", "01"], ["2024-05-01", "2024-05-02"], ["1e3", "1000"], ["true"],
                                 ["007", "1", "01", "2024-05-01", "1e3", "true", "x"]])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_manifest_ids_stay_strings(tmp_path: Path, suffix: str, ids: list[str]) -> None:
    source = read_manifest_source(write_ids(tmp_path / f"m{suffix}", ids))
    assert [item.image_id for item in source.items] == ids


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_empty_image_id_is_refused(tmp_path: Path, suffix: str) -> None:
    with pytest.raises(SourceError, match=r"empty image_id.*row 2"):
        read_manifest_source(write_ids(tmp_path / f"m{suffix}", ["a", "", "c"]))


def test_numeric_parquet_ids_are_text_and_float_ids_are_refused(tmp_path: Path) -> None:
    ints = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"image_id": [7, 8], "path": ["a.png", "b.png"]}), ints)
    assert [item.image_id for item in read_manifest_source(ints).items] == ["7", "8"]
    floats = tmp_path / "floats.parquet"
    pq.write_table(pa.table({"image_id": [7.0, 8.5], "path": ["a.png", "b.png"]}), floats)
    with pytest.raises(SourceError, match="image_id must be text"):
        read_manifest_source(floats)


def test_sidecar_labeled_sets_the_state(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                        fake_model: ModelChoice) -> None:
    root, ids = image_tree
    (root / (ids[1] + ".json")).write_text(json.dumps({"labeled": True, "weather": "sun"}))
    (root / (ids[2] + ".json")).write_text(json.dumps({"labeled": False}))
    bundle = tmp_path / "bundle"
    index(root, bundle, fake_model)
    states = dict(db_rows(bundle, "SELECT image_id, state FROM images"))
    assert states[ids[1]] == "labeled"
    assert {i for i, s in states.items() if s == "labeled"} == {ids[1]}
    snap = load_current(bundle)
    assert "labeled" not in snap.manifest.metadata_columns
    assert snap.record(snap.row_by_id[ids[1]])["weather"] == "sun"


def test_file_replaced_by_a_pipe_after_the_scan_is_not_opened(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                                              fake_embedder: Any) -> None:
    """The decode workers check again: a scanned image that became a named pipe fails, never blocks."""
    from edgemine.indexer.pipeline import embed_items

    root, _ = image_tree
    items = scan_directory(root).items[:3]
    Path(items[1].path or "").unlink()
    os.mkfifo(items[1].path or "")
    failed: list[tuple[str, str]] = []
    stats = embed_items(items, fake_embedder, batch_size=2, workers=0, on_batch=lambda batch, vecs: None,
                        on_failures=lambda bad: failed.extend((i.image_id, r) for i, r in bad), progress=False)
    assert stats.embedded == 2 and failed == [(items[1].image_id, "not a regular file (named pipe)")]


def test_unlistable_directory_is_a_failure_naming_it(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                                     fake_model: ModelChoice, monkeypatch: pytest.MonkeyPatch) -> None:
    root, ids = image_tree
    real = os.scandir

    def scandir(path: Any) -> Any:  # chmod 000 does not stop root, which the tests may run as
        if os.fspath(path).endswith("g1"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = index(root, tmp_path / "bundle", fake_model)
    assert report.added == len([i for i in ids if not i.startswith("g1/")])
    assert reasons(report) == {"g1/": "directory cannot be listed: Permission denied"}
