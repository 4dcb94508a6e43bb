"""Image roots are declared (the source directory, the manifest's folder or --image-root), never
computed from the rows' paths nor unioned over runs: a row cannot widen what the service serves."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from edgemine.bundle import load_current
from edgemine.bundle.layout import ModelInfo
from edgemine.cli.main import app
from edgemine.indexer import (
    ModelChoice,
    SourceError,
    read_embeddings_source,
    read_manifest_source,
    run_index,
    scan_directory,
)

BYO = ModelChoice(ModelInfo(identity="byo:roots", name="roots", pretrained="external"), None)


def write_byo(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "image_id": [r["image_id"] for r in rows],
        "embedding": pa.array([r["embedding"] for r in rows], pa.list_(pa.float32())),
        "path": pa.array([r.get("path") for r in rows], pa.string()),
    }), path)
    return path


def passwd_rows() -> list[dict[str, Any]]:
    return [{"image_id": "ok", "embedding": [0.0, 1.0]},
            {"image_id": "pw", "embedding": [1.0, 0.0], "path": "/etc/passwd"}]


def write_manifest(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("image_id,path\n" + "".join(f"{i},{p}\n" for i, p in rows))
    return path


def test_byo_row_pointing_at_a_host_file_is_refused_at_index_time(tmp_path: Path) -> None:
    """The /etc/passwd repro: the Parquet's folder is the root, and /etc/passwd is not in it."""
    src = write_byo(tmp_path / "emb" / "e.parquet", passwd_rows())
    with pytest.raises(SourceError) as info:
        read_embeddings_source(src)
    message = str(info.value)
    assert "'pw'" in message and "/etc/passwd" in message and "--image-root" in message


def test_byo_row_outside_an_explicit_image_root_is_refused(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    src = write_byo(tmp_path / "emb" / "e.parquet", passwd_rows())
    with pytest.raises(SourceError, match=r"'pw'.*/etc/passwd.*outside.*--image-root") as info:
        read_embeddings_source(src, image_root=images)
    assert str(images.resolve()) in str(info.value)


def test_passwd_repro_through_the_cli_publishes_nothing(tmp_path: Path) -> None:
    src = write_byo(tmp_path / "emb" / "e.parquet", passwd_rows())
    bundle = tmp_path / "bundle"
    for extra in ([], ["--image-root", str(tmp_path / "emb")]):
        result = CliRunner().invoke(app, ["index", "--embeddings", str(src), "--bundle", str(bundle),
                                          "--no-progress", *extra])
        assert result.exit_code == 2, result.output
        assert "'pw'" in result.stderr and "--image-root" in result.stderr
        assert "Traceback" not in result.output
    assert not (bundle / "CURRENT").exists()


def test_byo_roots_are_the_folder_the_given_root_or_none(tmp_path: Path) -> None:
    inside = write_byo(tmp_path / "emb" / "e.parquet", [
        {"image_id": "a", "embedding": [1.0, 0.0], "path": "imgs/a.jpg"},
        {"image_id": "b", "embedding": [0.0, 1.0]}])
    assert read_embeddings_source(inside).image_roots == [str((tmp_path / "emb").resolve())]
    no_paths = write_byo(tmp_path / "e2.parquet", [{"image_id": "a", "embedding": [1.0, 0.0]}])
    assert read_embeddings_source(no_paths).image_roots == []
    (tmp_path / "frames").mkdir()
    outside = write_byo(tmp_path / "emb" / "e3.parquet", [
        {"image_id": "a", "embedding": [1.0, 0.0], "path": "../frames/a.jpg"}])
    with pytest.raises(SourceError, match="--image-root"):
        read_embeddings_source(outside)
    given = read_embeddings_source(outside, image_root=tmp_path / "frames")
    assert given.image_roots == [str((tmp_path / "frames").resolve())]
    assert given.items[0].path == str((tmp_path / "frames" / "a.jpg").resolve())


def test_byo_cli_accepts_image_root(tmp_path: Path) -> None:
    src = write_byo(tmp_path / "emb" / "e.parquet", [
        {"image_id": "a", "embedding": [1.0, 0.0], "path": "../frames/a.jpg"}])
    bundle = tmp_path / "bundle"
    result = CliRunner().invoke(app, ["index", "--embeddings", str(src), "--bundle", str(bundle), "--no-progress",
                                      "--image-root", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["published"]
    assert load_current(bundle).manifest.image_roots == [str(tmp_path.resolve())]


def test_manifest_root_is_its_folder_not_a_common_prefix(tmp_path: Path, make_images: Any) -> None:
    data = tmp_path / "data"
    rels = make_images(data / "images" / "cam", 2)
    source = read_manifest_source(write_manifest(data / "m.csv", [(r, f"images/cam/{r}") for r in rels]))
    assert source.image_roots == [str(data.resolve())]


def test_manifest_paths_outside_its_folder_need_image_root(tmp_path: Path, make_images: Any) -> None:
    rels = make_images(tmp_path / "frames", 2)
    lists = tmp_path / "lists"
    lists.mkdir()
    manifest = write_manifest(lists / "m.csv", [("a", f"../frames/{rels[0]}"), ("b", f"../frames/{rels[1]}")])
    with pytest.raises(SourceError, match=r"'a'.*outside.*--image-root"):
        read_manifest_source(manifest)
    source = read_manifest_source(manifest, image_root=tmp_path / "frames")
    assert source.image_roots == [str((tmp_path / "frames").resolve())]
    with pytest.raises(SourceError, match=r"'b'.*outside.*--image-root"):
        read_manifest_source(write_manifest(lists / "m2.csv", [("a", f"../frames/{rels[0]}"), ("b", "/etc/passwd")]),
                             image_root=tmp_path / "frames")


def test_manifest_symlink_escaping_the_root_is_refused(tmp_path: Path, make_images: Any) -> None:
    outer = make_images(tmp_path / "outside", 1)
    data = tmp_path / "data"
    data.mkdir()
    (data / "link.png").symlink_to(tmp_path / "outside" / outer[0])
    with pytest.raises(SourceError, match=r"'link'.*outside"):
        read_manifest_source(write_manifest(data / "m.csv", [("link", "link.png")]))


def test_roots_are_replaced_by_each_run_and_kept_rows_outside_are_not_served(
        tmp_path: Path, make_images: Any, fake_model: ModelChoice, open_client: Callable[..., TestClient]) -> None:
    """Run 1 declares tmp/ (rows in a/ and b/); run 2 declares a/ only and keeps b's rows (no --prune):
    the new version's roots are [a/] alone, so b's images are refused (403), not silently served.
    A new root alone (no row changed) is a change: it is published."""
    a = make_images(tmp_path / "a", 2, seed=1)
    b = make_images(tmp_path / "b", 2, seed=2, prefix="other")
    bundle = tmp_path / "bundle"
    first = write_manifest(tmp_path / "all.csv", [("a0", f"a/{a[0]}"), ("b0", f"b/{b[0]}")])
    run_index(read_manifest_source(first), bundle, fake_model, workers=0, progress=False)
    assert load_current(bundle).manifest.image_roots == [str(tmp_path.resolve())]
    second = write_manifest(tmp_path / "a" / "only-a.csv", [("a0", a[0])])
    report = run_index(read_manifest_source(second), bundle, fake_model, workers=0, progress=False)
    assert report.published and (report.added, report.unchanged, report.missing_from_source_kept) == (0, 1, 1)
    snap = load_current(bundle)
    assert snap.manifest.image_roots == [str((tmp_path / "a").resolve())]
    client = open_client(bundle)
    assert client.get("/v1/images/a0").status_code == 200
    refused = client.get("/v1/images/b0")
    assert refused.status_code == 403 and "outside" in refused.json()["detail"]


def test_directory_source_root_is_the_directory(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                                fake_model: ModelChoice) -> None:
    root, _ = image_tree
    assert scan_directory(root).image_roots == [str(root.resolve())]
    result = CliRunner().invoke(app, ["index", str(root), "--bundle", str(tmp_path / "b"),
                                      "--image-root", str(tmp_path)])
    assert result.exit_code == 2 and "--image-root" in result.stderr
