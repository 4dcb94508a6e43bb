"""docs/notebooks/walkthrough.ipynb runs end to end (nbclient, a real kernel) and shows its grids."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "notebooks" / "walkthrough.ipynb"
# Generous: it takes ~10 s here (60 frames, the tiny model); a slow CI machine gets headroom.
CELL_TIMEOUT_S = 180


def read_notebook() -> Any:
    """The stored notebook (nbformat's reader has no type hints)."""
    return nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]


def html_outputs(nb: Any) -> list[str]:
    return [out["data"]["text/html"] for cell in nb.cells if cell.cell_type == "code"
            for out in cell.outputs if "text/html" in out.get("data", {})]


def test_notebook_is_stored_clean_without_outputs() -> None:
    nb = read_notebook()
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """The notebook, executed in a fresh kernel with an empty temporary working directory."""
    workdir = tmp_path_factory.mktemp("notebook")
    nb = read_notebook()
    # Raises CellExecutionError (with the cell and its traceback) if any cell fails.
    NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()
    return nb, workdir


def test_notebook_runs_end_to_end_and_writes_the_export(executed: tuple[Any, Path]) -> None:
    nb, workdir = executed
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
              if out.output_type == "error"]
    assert not errors
    assert all(cell.execution_count for cell in nb.cells if cell.cell_type == "code")
    assert (workdir / "demo-data" / "bundle" / "CURRENT").is_file()
    assert (workdir / "tasks.json").read_text().lstrip().startswith("[")
    printed = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs)
    assert "unknown: ['no/such/frame.jpg']" in printed


def test_notebook_outputs_contain_the_rendered_grids(executed: tuple[Any, Path]) -> None:
    nb, _ = executed
    pages = [page for page in html_outputs(nb) if page.startswith('<div class="edgemine">')]
    results = [p for p in pages if "<h4>Mining result</h4>" in p]
    batches = [p for p in pages if "<h4>Batch night-crosswalk-1" in p]
    assert len(results) == 3 and len(batches) == 2  # first page, next page, mined again; queued, labeled
    for page in results + batches:
        pictures = re.findall(r'<img src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', page)
        assert len(pictures) >= 6 and all(base64.b64decode(p).startswith(b"\xff\xd8\xff") for p in pictures)
        assert "#1" in page or "#7" in page
        assert re.search(r"score 0\.\d{4}", page)
        assert "no thumbnail" not in page
        assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "ranks 7-12" in results[1]
    health = [p for p in pages if "<h4>edgemine health</h4>" in p]
    assert len(health) == 1 and "<td>counts.unlabeled</td><td class=\"em-num\">48</td>" in health[0]
    assert batches[0].count('"em-state em-state-queued"') == 6
    assert batches[1].count('"em-state em-state-labeled"') == 6


def test_notebook_reviews_candidates_and_shows_verdicts_and_the_yield(executed: tuple[Any, Path]) -> None:
    nb, _ = executed
    pages = [page for page in html_outputs(nb) if page.startswith('<div class="edgemine">')]
    verdicts = [p for p in pages if re.search(r"<h4>\d+ verdicts</h4>", p)]
    assert len(verdicts) == 1 and "<td>accept</td>" in verdicts[0] and "<td>reject</td>" in verdicts[0]
    assert verdicts[0].count("<td>night-review-1</td>") == 6  # the six candidates reviewed in the session
    yields = [p for p in pages if "<h4>Mining yield</h4>" in p]
    assert len(yields) == 1 and "<svg" in yields[0] and "<h4>By session</h4>" in yields[0]
    assert "3 accepted of 6 reviewed" in yields[0]
    assert "<script" not in yields[0] and "http://" not in yields[0] and "https://" not in yields[0]
