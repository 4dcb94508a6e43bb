"""What the API hands back: a mining result and an annotation batch, with the client that made them.

Both wrap the service's own pydantic models (`.result`, `.model`) and render as a thumbnail grid
in Jupyter (`_repr_html_`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgemine.client.errors import QueryError
from edgemine.service.batches import Batch as BatchModel
from edgemine.service.batches import BatchItem, ExportFormat
from edgemine.service.query import Candidate, MineQuery, MineResult
from edgemine.service.uploads import Upload

if TYPE_CHECKING:
    import pandas

    from edgemine.client.client import Client

_CORE = ("rank", "image_id", "score", "nearest_example_id", "nearest_example_similarity", "state", "image_url")


class MiningResult:
    """One page of mined candidates, the query that produced it, and the way to the next page.

    Iterating yields the service's `Candidate` models, best first; `len()` is the page size.
    """

    def __init__(self, client: Client, query: MineQuery, result: MineResult,
                 uploads: Sequence[Upload] = ()) -> None:
        self.client = client
        self.query = query
        self.result = result
        self._uploads = tuple(uploads)

    @property
    def candidates(self) -> list[Candidate]:
        """The candidates of this page, best first."""
        return self.result.candidates

    @property
    def query_id(self) -> str:
        """The id the service gave this query (every page has its own); verdicts point back to it."""
        return self.result.query_id

    def review(self, accept: Iterable[str | Candidate] = (), reject: Iterable[str | Candidate] = (),
               skip: Iterable[str | Candidate] = (), *, reviewer: str | None = None) -> int:
        """Store verdicts on candidates of this page, under its query_id and session; return how many.

        Ids (or candidates) that are not on this page are a QueryError (nothing stored).
        """
        groups = {"accept": _as_ids(accept), "reject": _as_ids(reject), "skip": _as_ids(skip)}
        ours = set(self.ids)
        stray = [i for ids in groups.values() for i in ids if i not in ours]
        if stray:
            raise QueryError(f"not candidates of this result (query {self.query_id}): {', '.join(stray[:10])}")
        return self.client.review(**groups, query_id=self.query_id, session_id=self.query.session_id,
                                  reviewer=reviewer)

    def accept(self, ids: Iterable[str | Candidate], *, reviewer: str | None = None) -> int:
        """Accept candidates of this page (see `review`)."""
        return self.review(accept=ids, reviewer=reviewer)

    def reject(self, ids: Iterable[str | Candidate], *, reviewer: str | None = None) -> int:
        """Reject candidates of this page: they are left out of later mining (see `review`)."""
        return self.review(reject=ids, reviewer=reviewer)

    @property
    def ids(self) -> list[str]:
        """The image ids of this page, best first."""
        return [c.image_id for c in self.result.candidates]

    @property
    def next_cursor(self) -> str | None:
        """The cursor of the next page (None when this page is the last)."""
        return self.result.next_cursor

    def next_page(self, k: int | None = None) -> MiningResult | None:
        """Return the page after this one (same query, `k` per page unless given); None at the end."""
        if self.result.next_cursor is None:
            return None
        update: dict[str, Any] = {"cursor": self.result.next_cursor, "offset": 0}
        if k is not None:
            update["k"] = k
        # Validated again: a k given here obeys the same limits as the first page's.
        query = MineQuery.model_validate({**self.query.model_dump(by_alias=True), **update})
        return self.client._mine_query(query, self._uploads)

    def to_records(self) -> list[dict[str, Any]]:
        """Return one flat dict per candidate: rank, id, score, nearest example, state, then metadata."""
        records = []
        for c in self.result.candidates:
            row: dict[str, Any] = {name: getattr(c, name) for name in _CORE}
            for key, value in c.metadata.items():
                # A metadata column named like a core field keeps both, the column prefixed.
                row[f"metadata.{key}" if key in row else key] = value
            records.append(row)
        return records

    def to_pandas(self) -> pandas.DataFrame:
        """Return the candidates as a pandas DataFrame (needs `pip install 'edgemine[notebook]'`)."""
        try:
            import pandas
        except ImportError as exc:
            raise ImportError("MiningResult.to_pandas needs pandas: pip install 'edgemine[notebook]'") from exc
        return pandas.DataFrame.from_records(self.to_records(), columns=_columns(self.to_records()))

    def __len__(self) -> int:
        return len(self.result.candidates)

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self.result.candidates)

    def __repr__(self) -> str:
        more = ", more" if self.result.next_cursor else ""
        return (f"<MiningResult {len(self)} candidates (ranks {self.result.offset + 1}-"
                f"{self.result.offset + len(self)} of {self.result.eligible} eligible{more}), "
                f"bundle v{self.result.bundle_version}>")

    def _repr_html_(self) -> str:
        from edgemine.client.render import render_result

        return render_result(self)


class Batch:
    """An annotation batch: queued images with the provenance of the query that found them."""

    def __init__(self, client: Client, model: BatchModel) -> None:
        self.client = client
        self.model = model

    @property
    def batch_id(self) -> str:
        """The batch's id (b-...)."""
        return self.model.batch_id

    @property
    def name(self) -> str:
        """The batch's name."""
        return self.model.name

    @property
    def size(self) -> int:
        """How many images the batch holds."""
        return self.model.size

    @property
    def skipped(self) -> list[str]:
        """Ids left out when the batch was created (already queued or labeled)."""
        return self.model.skipped

    @property
    def items(self) -> list[BatchItem]:
        """The batch's images in order, with their current state (fetched when the batch came from a list)."""
        if self.model.items is None:
            self.refresh()
        return self.model.items or []

    @property
    def ids(self) -> list[str]:
        """The image ids of the batch, in order."""
        return [item.image_id for item in self.items]

    def refresh(self) -> Batch:
        """Fetch the batch again (items and their states as they are now); return self."""
        skipped = self.model.skipped
        self.model = self.client._backend.get_batch(self.batch_id).model_copy(update={"skipped": skipped})
        return self

    def export(self, fmt: ExportFormat = "jsonl", path: str | os.PathLike[str] | None = None) -> str:
        """Return the batch as JSONL, CSV or Label Studio JSON; also write it to `path` (atomically) if given."""
        text = self.client._backend.export_batch(self.batch_id, fmt)
        if path is not None:
            _write_atomic(Path(path), text)
        return text

    def delete(self) -> int:
        """Delete the batch; return how many of its queued images went back to unlabeled."""
        return self.client.delete_batch(self.batch_id)

    def __len__(self) -> int:
        return self.model.size

    def __repr__(self) -> str:
        return f"<Batch {self.batch_id} {self.name!r}: {self.size} images>"

    def _repr_html_(self) -> str:
        from edgemine.client.render import render_batch

        return render_batch(self)


def _as_ids(items: Iterable[str | Candidate]) -> list[str]:
    if isinstance(items, str):  # one id, not its characters
        return [items]
    out = []
    for item in items:
        if not isinstance(item, str | Candidate):  # an int or a rank is a mistake, not an id
            raise TypeError(f"image ids are strings (or candidates); got {type(item).__name__} {item!r}")
        out.append(item.image_id if isinstance(item, Candidate) else item)
    return out


def _columns(records: list[dict[str, Any]]) -> list[str]:
    names = list(_CORE)
    for row in records:
        names += [k for k in row if k not in names]
    return names


def _write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 mode would stick to the export; "x" gives the usual umask mode.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("x", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = ["Batch", "MiningResult"]
