"""Store a parsed Label Studio export as verdicts, all or nothing (parsing is in `labelstudio`)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgemine.bundle.errors import BundleError
from edgemine.bundle.feedback import apply_verdicts
from edgemine.bundle.layout import BundlePaths
from edgemine.bundle.state import StateDB, apply_state, open_state
from edgemine.service.labelstudio import (
    SOURCE,
    ChoiceMap,
    ExportFormat,
    ParsedVerdict,
    UnknownExportIds,
    parse_export,
)


@dataclass
class VerdictImport:
    """What an import read and stored."""

    file: str
    format: ExportFormat
    counts: dict[str, int] = field(default_factory=dict)  # verdicts read by kind: accept, reject, skip
    recorded: int = 0
    newly_labeled: int = 0
    images: int = 0  # distinct images with a verdict


def import_labelstudio(bundle: Path, file: Path, choices: ChoiceMap | None = None, *, fmt: str = "auto",
                       reviewer: str | None = None, session_id: str | None = None,
                       state_url: str | None = None) -> VerdictImport:
    """Store the verdicts of a Label Studio export and mark accepted/rejected images labeled; all or nothing."""
    kind, verdicts = parse_export(file, choices, fmt)
    paths = BundlePaths(bundle)
    if not state_url and not paths.state_db.is_file():
        raise BundleError(f"{bundle} is not an edgemine bundle (no {paths.state_db.name})")
    db = open_state(paths, state_url)
    wanted = {v.image_id: v.provenance.where for v in reversed(verdicts)}  # first place each id appears
    known = db.known_ids(wanted)
    unknown = {i: where for i, where in wanted.items() if i not in known}
    if unknown:
        raise UnknownExportIds(file, unknown)
    report = VerdictImport(file=str(file), format=kind, images=len(wanted))
    for v in verdicts:
        report.counts[v.verdict] = report.counts.get(v.verdict, 0) + 1
    report.recorded, report.newly_labeled = store_verdicts(db, verdicts, reviewer, session_id)
    return report


def store_verdicts(db: StateDB, verdicts: Sequence[ParsedVerdict], reviewer: str | None,
                   session_id: str | None) -> tuple[int, int]:
    """Record the verdicts (source `labelstudio`) and mark accepted/rejected images labeled, in one transaction.

    The reviewer is `reviewer` when given, else the Label Studio annotator (`labelstudio:<user id>`).
    Returns (verdicts recorded, images newly labeled).
    """
    recorded = 0
    with db.write() as conn:
        # Consecutive verdicts of one reviewer go in together: file order (later wins) is kept.
        for who, run in itertools.groupby(verdicts, key=lambda v: reviewer or _annotator(v)):
            rows = [(v.image_id, v.verdict, v.provenance.query_id) for v in run]
            recorded += apply_verdicts(conn, rows, who, session_id, SOURCE).recorded
        annotated = list(dict.fromkeys(v.image_id for v in verdicts if v.verdict != "skip"))
        labeled = apply_state(conn, annotated, "labeled", None, only_known=False)
    return recorded, labeled


def _annotator(verdict: ParsedVerdict) -> str | None:
    who = verdict.provenance.annotator
    return f"{SOURCE}:{who}" if who is not None else None
