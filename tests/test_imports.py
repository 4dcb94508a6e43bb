"""Nothing imports torch until a model is needed: the CLI, the bundle and the service on BYO bundles stay light."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edgemine.bundle.layout import ModelInfo
from edgemine.indexer import ModelChoice, read_embeddings_source, run_index

HEAVY = ("torch", "torchvision", "open_clip")


def run_python(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter (this one has torch loaded already)."""
    return subprocess.run([sys.executable, *args, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def assert_torch_free(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("heavy: []"), result.stdout[-3000:] + result.stderr[-3000:]


REPORT_HEAVY = f"print('heavy:', sorted(m for m in {HEAVY!r} if m in sys.modules))"


@pytest.fixture
def byo_bundle(tmp_path: Path) -> Path:
    """A bundle of 50 precomputed vectors (no model, no image paths)."""
    vectors = np.random.default_rng(3).standard_normal((50, 8)).astype(np.float32)
    table = pa.table({"image_id": [f"im{i:03d}" for i in range(50)],
                      "embedding": pa.array(vectors.tolist(), pa.list_(pa.float32())),
                      "time_of_day": ["night" if i % 2 else "day" for i in range(50)]})
    pq.write_table(table, tmp_path / "emb.parquet")
    model = ModelChoice(ModelInfo(identity="byo:test", name="test", pretrained="external"), None)
    report = run_index(read_embeddings_source(tmp_path / "emb.parquet"), tmp_path / "bundle", model, progress=False)
    assert report.published
    return tmp_path / "bundle"


def test_importing_the_packages_does_not_import_torch() -> None:
    result = run_python(f"""
        import sys
        import edgemine.bundle, edgemine.models, edgemine.search, edgemine.indexer, edgemine.cli.main
        import edgemine.service.app
        from edgemine.models import DEFAULT_MODEL, DEFAULT_PRETRAINED, resolve_weights, l2_normalize
        {REPORT_HEAVY}
    """)
    assert_torch_free(result)


def test_models_package_still_exports_the_clip_loader_on_demand() -> None:
    result = run_python("""
        import sys
        import edgemine.models as models
        assert "torch" not in sys.modules
        assert models.load_clip.__module__ == "edgemine.models.clip" and "torch" in sys.modules
        assert models.ClipEmbedder.__name__ == "ClipEmbedder"
        print("ok")
    """)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def cli_code(*args: str) -> str:
    return f"""
        import sys
        from edgemine.cli.main import app
        try:
            app({list(args)!r})
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        {REPORT_HEAVY}
    """


@pytest.mark.parametrize("command", [["--help"], ["mine", "--help"], ["index", "--help"], ["serve", "--help"],
                                     ["demo", "--help"], ["labels", "import", "--help"]])
def test_cli_help_does_not_import_torch(command: list[str]) -> None:
    assert_torch_free(run_python(cli_code(*command)))


def test_cli_help_import_time_has_no_torch() -> None:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "edgemine.cli.main", "--help"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Usage" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "edgemine.cli.serve" in imported  # the report is there at all
    assert not {m for m in imported if m.split(".")[0] in HEAVY}


def test_cli_mine_by_ids_on_a_byo_bundle_does_not_import_torch(byo_bundle: Path) -> None:
    result = run_python(cli_code("mine", "--bundle", str(byo_bundle), "-p", "im001", "-k", "3", "--format", "jsonl"))
    assert_torch_free(result)
    assert result.stdout.count('"image_id"') == 3


def test_cli_index_of_precomputed_embeddings_does_not_import_torch(tmp_path: Path, byo_bundle: Path) -> None:
    emb = byo_bundle.parent / "emb.parquet"
    result = run_python(cli_code("index", "--embeddings", str(emb), "--bundle", str(tmp_path / "again"),
                                 "--embedding-model", "test", "--no-progress"))
    assert_torch_free(result)


# The service half: `edgemine.service.miner` and `routes_images` import `decode_image` from
# `edgemine.indexer.pipeline`. Item 12 moves `decode_image` out of the indexer (into the torch-free
# `edgemine.models.images`, done on another branch); this test is written for that final state and
# already holds here because `edgemine.indexer.pipeline` no longer imports torch at module level.
def test_service_over_a_byo_bundle_does_not_import_torch(byo_bundle: Path) -> None:
    result = run_python(f"""
        import sys
        from fastapi.testclient import TestClient
        from edgemine.service.app import create_app
        from edgemine.service.config import Settings

        with TestClient(create_app(Settings(bundle={str(byo_bundle)!r}))) as client:
            assert client.get("/v1/health").status_code == 200
            mined = client.post("/v1/mine", json={{"positive_ids": ["im001"], "k": 5}})
            assert mined.status_code == 200 and len(mined.json()["candidates"]) == 5, mined.text
            assert client.get("/v1/images", params={{"limit": 3}}).status_code == 200
            assert client.get("/docs").status_code == 200
        {REPORT_HEAVY}
    """)
    assert_torch_free(result)


def test_service_does_not_import_the_indexer() -> None:
    result = run_python("""
        import sys
        import edgemine.service.app
        print(sorted(m for m in sys.modules if m.startswith("edgemine.indexer")))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"


def test_the_heavy_module_report_sees_torch_when_it_is_imported() -> None:
    # guard for the checks above: their report does name torch once something imports it
    result = run_python(f"""
        import sys
        import edgemine.models.clip
        {REPORT_HEAVY}
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'torch'" in result.stdout


def test_import_edgemine_loads_no_heavy_or_service_module() -> None:
    result = run_python("""
        import sys
        import edgemine
        assert {"open", "connect", "Client"} <= set(dir(edgemine))  # listed, imported on first use
        print(sorted(m for m in ("torch", "open_clip", "faiss", "fastapi", "httpx", "numpy") if m in sys.modules))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"


def test_python_api_on_a_byo_bundle_does_not_import_torch(byo_bundle: Path) -> None:
    result = run_python(f"""
        import sys
        import edgemine
        em = edgemine.open({str(byo_bundle)!r})
        res = em.mine(positive_ids=["im001"], k=5, filters={{"time_of_day": {{"in": ["night"]}}}})
        assert len(res) == 5 and res.next_page() is not None
        batch = em.queue(res, name="torch-free")
        assert em.label(batch.ids) == 5 and batch.export("csv")
        {REPORT_HEAVY}
    """)
    assert_torch_free(result)
