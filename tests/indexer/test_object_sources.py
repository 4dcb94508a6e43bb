"""Indexing images on object storage: an s3:// prefix as a directory source, manifests with s3:// paths,
change detection by ETag, per-object failures, and an unreachable endpoint, against a real S3-compatible
server (moto) on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from edgemine.bundle import load_current
from edgemine.cli.index import read_source
from edgemine.cli.main import app
from edgemine.indexer import IndexReport, ModelChoice, SourceError, read_manifest_source, run_index
from edgemine.indexer.sources import Source
from edgemine.models.images import decode_image
from tests.support.live_server import free_port
from tests.support.s3 import Bucket, png_bytes


def put_images(bucket: Bucket, prefix: str, n: int, seed: int = 0) -> list[str]:
    """Write n PNGs under prefix/g<i%2>/; return their ids (keys relative to the prefix)."""
    ids = [f"g{i % 2}/img{i:02d}.png" for i in range(n)]
    for i, image_id in enumerate(ids):
        bucket.put(f"{prefix}/{image_id}", png_bytes(seed + i))
    return ids


def index(source: Source, bundle: Path, model: ModelChoice, **kwargs: Any) -> IndexReport:
    kwargs.setdefault("workers", 0)
    return run_index(source, bundle, model, batch_size=4, progress=False, **kwargs)


def write_manifest(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("image_id,path,camera\n" + "".join(f"{i},{p},front\n" for i, p in rows))
    return path


@pytest.mark.parametrize("workers", [0, 2])
def test_index_an_s3_prefix_as_a_directory_source(tmp_path: Path, bucket: Bucket, fake_model: ModelChoice,
                                                  fake_embedder: Any, workers: int) -> None:
    ids = put_images(bucket, "drive/day1", 5)
    bucket.put("drive/day1/notes.txt", b"not an image")
    bucket.put("drive/day1/.hidden/x.png", png_bytes(99))
    bucket.put("drive/day10/other.png", png_bytes(98))  # same text prefix, another folder
    bucket.put("drive/day1/g0/img00.png.json", json.dumps({"weather": "rain", "labeled": True}).encode())
    source = read_source(bucket.uri("drive/day1"), None, None)
    report = index(source, tmp_path / "b", fake_model, workers=workers)
    assert report.published and report.added == 5 and report.failed == []
    snap = load_current(tmp_path / "b")
    assert sorted(snap.image_ids) == sorted(ids)
    assert snap.manifest.image_roots == [bucket.uri("drive/day1/")]
    record = snap.record(snap.row_by_id["g0/img00.png"])
    assert record["path"] == bucket.uri("drive/day1/g0/img00.png") and record["weather"] == "rain"
    # The vectors are those of the objects' pixels.
    expected = fake_embedder.embed_images([decode_image(png_bytes(3))])[0]
    assert np.allclose(snap.embeddings[snap.row_by_id["g1/img03.png"]], expected, atol=1e-6)


def test_manifest_with_s3_paths_needs_an_s3_image_root(tmp_path: Path, bucket: Bucket,
                                                       fake_model: ModelChoice) -> None:
    put_images(bucket, "frames", 3)
    manifest = write_manifest(tmp_path / "m.csv", [(f"f{i}", bucket.uri(f"frames/g{i % 2}/img{i:02d}.png"))
                                                   for i in range(3)])
    with pytest.raises(SourceError, match="--image-root"):
        read_manifest_source(manifest)
    with pytest.raises(SourceError, match="outside --image-root"):
        read_manifest_source(manifest, bucket.uri("frames/g0"))
    with pytest.raises(SourceError, match="outside --image-root"):
        read_manifest_source(manifest, bucket.uri("fram"))  # a prefix must end at a '/'
    source = read_manifest_source(manifest, bucket.uri("frames"))
    report = index(source, tmp_path / "b", fake_model)
    assert report.added == 3 and report.failed == []
    snap = load_current(tmp_path / "b")
    assert snap.manifest.image_roots == [bucket.uri("frames/")]
    assert snap.record(snap.row_by_id["f1"])["camera"] == "front"


def test_reindex_after_overwriting_one_object_reembeds_only_it(tmp_path: Path, bucket: Bucket,
                                                               fake_model: ModelChoice, fake_embedder: Any) -> None:
    put_images(bucket, "frames", 4)
    rows = [(f"f{i}", bucket.uri(f"frames/g{i % 2}/img{i:02d}.png")) for i in range(4)]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    index(read_manifest_source(manifest, bucket.uri("frames")), tmp_path / "b", fake_model)
    before = load_current(tmp_path / "b").record(0)["fingerprint"]
    # Same size (24x16 random PNG), new content, likely within the same second: only the ETag differs.
    bucket.put("frames/g0/img02.png", png_bytes(1000))
    report = index(read_manifest_source(manifest, bucket.uri("frames")), tmp_path / "b", fake_model)
    assert (report.updated, report.unchanged, report.embedded_now) == (1, 3, 1)
    snap = load_current(tmp_path / "b")
    assert snap.record(snap.row_by_id["f2"])["fingerprint"].endswith(bucket.etag("frames/g0/img02.png"))
    assert str(before).split(":")[1] == "etag"
    expected = fake_embedder.embed_images([decode_image(png_bytes(1000))])[0]
    assert np.allclose(snap.embeddings[snap.row_by_id["f2"]], expected, atol=1e-6)
    # Nothing changed: nothing embedded, nothing published.
    report = index(read_manifest_source(manifest, bucket.uri("frames")), tmp_path / "b", fake_model)
    assert (report.published, report.embedded_now, report.unchanged) == (False, 0, 4)


def test_reindex_a_prefix_after_replacing_one_object(tmp_path: Path, bucket: Bucket, fake_model: ModelChoice) -> None:
    put_images(bucket, "drive", 4)
    index(read_source(bucket.uri("drive"), None, None), tmp_path / "b", fake_model)
    bucket.put("drive/g1/img01.png", png_bytes(7, size=(40, 30)))  # another size: listings carry no ETag
    report = index(read_source(bucket.uri("drive"), None, None), tmp_path / "b", fake_model)
    assert (report.updated, report.unchanged, report.embedded_now) == (1, 3, 1)


def test_missing_and_corrupt_objects_are_per_file_failures_with_their_reason(
        tmp_path: Path, bucket: Bucket, fake_model: ModelChoice) -> None:
    put_images(bucket, "frames", 3)
    bucket.put("frames/bad.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    rows = [(f"f{i}", bucket.uri(f"frames/g{i % 2}/img{i:02d}.png")) for i in range(3)]
    rows += [("gone", bucket.uri("frames/never-written.png")), ("bad", bucket.uri("frames/bad.png"))]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    source = read_manifest_source(manifest, bucket.uri("frames"))
    bucket.delete("frames/g1/img01.png")  # deleted between the scan and the decode
    report = index(source, tmp_path / "b", fake_model)
    reasons = {f["image_id"]: f["reason"] for f in report.failed}
    assert report.published and report.added == 2
    assert set(reasons) == {"gone", "bad", "f1"}
    assert reasons["gone"] == f"object not found: {bucket.uri('frames/never-written.png')}"
    assert reasons["f1"] == f"object not found: {bucket.uri('frames/g1/img01.png')}"
    assert "corrupt" in str(reasons["bad"]) or "not a valid" in str(reasons["bad"])
    saved = [json.loads(line) for line in (tmp_path / "b" / "reports" / "failures.jsonl").read_text().splitlines()]
    assert {f["image_id"] for f in saved} == {"gone", "bad", "f1"}


def test_file_uri_rows_are_local_files(tmp_path: Path, fake_model: ModelChoice) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(png_bytes(1))
    manifest = write_manifest(tmp_path / "m.csv", [("a", f"file://{tmp_path}/imgs/a.png")])
    source = read_manifest_source(manifest)
    assert source.items[0].path == str((tmp_path / "imgs" / "a.png").resolve())
    assert index(source, tmp_path / "b", fake_model).added == 1


def test_bad_sidecar_object_fails_its_image_alone(tmp_path: Path, bucket: Bucket, fake_model: ModelChoice) -> None:
    put_images(bucket, "drive", 2)
    bucket.put("drive/g1/img01.png.json", b"[1, 2]")
    report = index(read_source(bucket.uri("drive"), None, None), tmp_path / "b", fake_model)
    assert report.added == 1
    assert report.failed == [{"image_id": "g1/img01.png", "path": bucket.uri("drive/g1/img01.png"),
                              "reason": "sidecar img01.png.json is not a JSON object (got a list)"}]


def test_unreachable_endpoint_fails_the_index_naming_it_and_publishes_nothing(
        tmp_path: Path, s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", dead)
    bundle = tmp_path / "b"
    result = CliRunner().invoke(app, ["index", "s3://frames/day1", "--bundle", str(bundle), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert f"object store unreachable at {dead}" in result.stderr
    assert "Traceback" not in result.output
    manifest = write_manifest(tmp_path / "m.csv", [("a", "s3://frames/day1/a.png")])
    result = CliRunner().invoke(app, ["index", str(manifest), "--image-root", "s3://frames/day1",
                                      "--bundle", str(bundle), "--no-progress"])
    assert result.exit_code == 2 and dead in result.stderr, result.output
    assert not (bundle / "CURRENT").exists()


def test_cli_indexes_an_s3_prefix(tmp_path: Path, bucket: Bucket) -> None:
    ids = put_images(bucket, "drive", 3)
    result = CliRunner().invoke(app, ["index", bucket.uri("drive"), "--bundle", str(tmp_path / "b"),
                                      "--model", "edgemine-tiny", "--pretrained", "none", "--workers", "0",
                                      "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["added"] == 3 and report["failed"] == []
    assert sorted(load_current(tmp_path / "b").image_ids) == sorted(ids)
