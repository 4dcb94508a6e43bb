"""Label Studio exports (JSON, JSON_MIN, CSV) read back as verdicts.

Label Studio (checked with 1.23.2) exports a project in several shapes; the three read here are:

- JSON: a list of full tasks. `data` is what we exported (`image`, `image_id`, metadata),
  `meta` our provenance (batch, query), `annotations[]` one per annotator, each with
  `was_cancelled` (a skipped task) and `result[]` items `{"from_name", "type": "choices",
  "value": {"choices": [...]}}`.
- JSON_MIN: a flat list, one object per annotation: the `data` fields plus one key per control
  (`label` for the Choices named `label`: a string, or `{"choices": [...]}` for a multiple
  choice) and `id`, `annotator`, `annotation_id`, `created_at`, ... Skipped tasks are absent.
- CSV: the same columns as JSON_MIN, one row per annotation (a multiple choice as JSON text).

Parsing is pure (file in, verdicts out); `labelstudio_import.import_labelstudio` then stores them
all or nothing.
Every error names the file, the task (or CSV line) and the field.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Verdict = Literal["accept", "reject", "skip"]
ExportFormat = Literal["json", "json-min", "csv"]
FORMATS: tuple[str, ...] = ("auto", "json", "json-min", "csv")
DEFAULT_ACCEPT = ("edge_case",)
DEFAULT_REJECT = ("not_edge_case",)
DEFAULT_CHOICE_NAME = "label"  # the Choices `name` in docs/labelstudio/labeling-config.xml
SOURCE = "labelstudio"
_SHOWN = 20  # unknown ids named in an error


class ExportError(ValueError):
    """A Label Studio export that cannot be imported; the message names file, task or line, and field."""

    def __init__(self, file: Path | str, where: str, problem: str) -> None:
        self.file = str(file)
        self.where = where
        super().__init__(f"{file}: {where}: {problem}" if where else f"{file}: {problem}")


class UnknownExportIds(ExportError):
    """Image ids of an export that are not in the bundle (nothing was stored)."""

    def __init__(self, file: Path | str, unknown: dict[str, str]) -> None:
        self.ids = sorted(unknown)
        shown = ", ".join(f"{i!r} ({unknown[i]})" for i in self.ids[:_SHOWN])
        more = f"; {len(self.ids) - _SHOWN} more not shown" if len(self.ids) > _SHOWN else ""
        super().__init__(file, "", f"{len(self.ids)} image ids are not in the bundle, nothing was "
                                   f"imported: {shown}{more}")


@dataclass(frozen=True)
class Provenance:
    """Where a verdict came from: the task and annotation, and our batch/query when the export kept `meta`."""

    where: str  # "task 3 (id 7)" or "line 4"
    task_id: str | None = None
    annotation_id: str | None = None
    annotator: str | None = None
    annotated_at: str | None = None
    batch_id: str | None = None
    query_id: str | None = None


@dataclass(frozen=True)
class ParsedVerdict:
    """One annotation of one image, mapped to a verdict."""

    image_id: str
    verdict: Verdict
    provenance: Provenance


@dataclass(frozen=True)
class ChoiceMap:
    """Which Label Studio choices mean accept and which mean reject."""

    accept: tuple[str, ...] = DEFAULT_ACCEPT
    reject: tuple[str, ...] = DEFAULT_REJECT
    name: str = DEFAULT_CHOICE_NAME  # the Choices control's `name` (JSON `from_name`, JSON_MIN/CSV column)

    def __post_init__(self) -> None:
        both = sorted(set(self.accept) & set(self.reject))
        if both:
            raise ValueError(f"choice {', '.join(map(repr, both))} is given both as an accept and a reject choice")
        if not self.accept and not self.reject:
            raise ValueError("give at least one accept or reject choice")

    def options(self) -> str:
        """The mapping as one line for error messages."""
        return (f"accept choices: {', '.join(self.accept) or '(none)'}; reject choices: "
                f"{', '.join(self.reject) or '(none)'} (map others with --accept-choice / --reject-choice)")

    def verdict(self, choices: Sequence[str], file: Path | str, where: str, field_name: str) -> Verdict:
        """Map the selected choices of one annotation to accept or reject; unmapped or mixed is an error."""
        if not choices:
            raise ExportError(file, where, f"{field_name}: no choice selected (the annotation was submitted "
                                           "empty); choose one in Label Studio, or skip the task there")
        verdicts: set[Verdict] = set()
        for choice in choices:
            if not isinstance(choice, str):
                raise ExportError(file, where, f"{field_name}: choice {choice!r} is not text")
            if choice in self.accept:
                verdicts.add("accept")
            elif choice in self.reject:
                verdicts.add("reject")
            else:
                raise ExportError(file, where, f"{field_name}: choice {choice!r} is not mapped to a verdict; "
                                               f"{self.options()}")
        if len(verdicts) > 1:
            raise ExportError(file, where, f"{field_name}: choices {list(choices)!r} mean both accept and reject")
        return verdicts.pop()


# -- reading -----------------------------------------------------------------------------------


def detect_format(file: Path, text: str) -> ExportFormat:
    """Tell JSON, JSON_MIN and CSV exports apart by content (the suffix decides only for .csv)."""
    head = text.lstrip("\ufeff \t\r\n")
    if file.suffix.lower() in (".csv", ".tsv") or not head.startswith(("[", "{")):
        if file.suffix.lower() == ".json":
            return "json"  # let the JSON parser say where it is malformed
        return "csv"
    data = _load_json(file, text)
    if isinstance(data, dict):
        return "json"  # not a list at all: the JSON reader says so
    if isinstance(data, list):
        for item in data:
            if isinstance(item, dict) and ("annotations" in item or isinstance(item.get("data"), dict)):
                return "json"
    return "json-min"


def parse_export(file: Path, choices: ChoiceMap | None = None,
                 fmt: str = "auto") -> tuple[ExportFormat, list[ParsedVerdict]]:
    """Read a Label Studio export file into verdicts, in file order (a later one for an image wins)."""
    choices = choices or ChoiceMap()
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if not file.is_file():
        raise ExportError(file, "", "no such file")
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ExportError(file, f"byte {exc.start}", "not UTF-8 text; is this a Label Studio JSON, JSON_MIN "
                                                     "or CSV export?") from exc
    kind: ExportFormat = detect_format(file, text) if fmt == "auto" else fmt  # type: ignore[assignment]
    if kind == "csv":
        return kind, parse_csv(file, text, choices)
    return kind, (parse_json(file, text, choices) if kind == "json" else parse_json_min(file, text, choices))


def _load_json(file: Path | str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportError(file, f"line {exc.lineno} column {exc.colno}", f"malformed JSON: {exc.msg}") from exc


def _json_tasks(file: Path | str, text: str, what: str) -> list[tuple[int, Any]]:
    """The items of a top-level JSON list, each with the line it starts on."""
    data = _load_json(file, text)
    if not isinstance(data, list):
        raise ExportError(file, "line 1", f"expected a JSON list of {what}, got a JSON {type(data).__name__}; "
                                          "export from Label Studio as JSON, JSON_MIN or CSV")
    if not data:
        raise ExportError(file, "", "the export holds no tasks: annotate in Label Studio, then export again")
    newlines = [i for i, ch in enumerate(text) if ch == "\n"]
    decoder = json.JSONDecoder()
    out: list[tuple[int, Any]] = []
    pos = text.index("[") + 1
    for _ in data:  # the text is valid JSON: walk it again to find where each item starts
        while text[pos] in " \t\r\n,":
            pos += 1
        item, end = decoder.raw_decode(text, pos)
        out.append((bisect.bisect_left(newlines, pos) + 1, item))
        pos = end
    return out


def _text(value: Any) -> str | None:
    """An id-like value as text (Label Studio ids are integers), None when absent."""
    if value is None or value == "":
        return None
    return str(value)


def _image_id(file: Path | str, where: str, field_name: str, value: Any) -> str:
    if value is None or value == "":
        raise ExportError(file, where, f"{field_name}: missing: every task needs the image id (our Label Studio "
                                       "export puts it in data.image_id; keep that field when importing tasks)")
    if not isinstance(value, str):
        raise ExportError(file, where, f"{field_name}: {value!r} is not text (image ids are strings)")
    return value


def _meta_provenance(meta: Any) -> dict[str, str | None]:
    if not isinstance(meta, dict):
        return {}
    query = meta.get("query")
    query_id = meta.get("query_id") or (query.get("query_id") if isinstance(query, dict) else None)
    return {"batch_id": _text(meta.get("batch_id")), "query_id": _text(query_id)}


def parse_json(file: Path | str, text: str, choices: ChoiceMap) -> list[ParsedVerdict]:
    """Read a JSON export: one verdict per annotation; cancelled (skipped) annotations are `skip`."""
    out: list[ParsedVerdict] = []
    for number, (line, task) in enumerate(_json_tasks(file, text, "tasks"), start=1):
        where = f"task {number} (line {line})"
        if not isinstance(task, dict):
            raise ExportError(file, where, f"expected a task object, got {type(task).__name__}")
        task_id = _text(task.get("id"))
        if task_id is not None:
            where = f"task {number} (id {task_id}, line {line})"
        data = task.get("data")
        if not isinstance(data, dict):
            raise ExportError(file, where, "data: missing or not an object; is this a Label Studio JSON export?")
        annotations = task.get("annotations", [])
        if not isinstance(annotations, list):
            raise ExportError(file, where, "annotations: not a list")
        if not annotations:
            continue  # exported with unannotated tasks: nothing to say about this image yet
        image_id = _image_id(file, where, "data.image_id", data.get("image_id"))
        meta = _meta_provenance(task.get("meta"))
        for a_index, annotation in enumerate(annotations):
            a_field = f"annotations[{a_index}]"
            if not isinstance(annotation, dict):
                raise ExportError(file, where, f"{a_field}: not an object")
            verdict = _annotation_verdict(file, where, a_field, annotation, choices)
            out.append(ParsedVerdict(image_id, verdict, Provenance(
                where=where, task_id=task_id, annotation_id=_text(annotation.get("id")),
                annotator=_text(annotation.get("completed_by")),
                annotated_at=_text(annotation.get("updated_at") or annotation.get("created_at")), **meta)))
    return out


def _annotation_verdict(file: Path | str, where: str, a_field: str, annotation: dict[str, Any],
                        choices: ChoiceMap) -> Verdict:
    if annotation.get("was_cancelled") is True:
        return "skip"
    result = annotation.get("result", [])
    if not isinstance(result, list):
        raise ExportError(file, where, f"{a_field}.result: not a list")
    selected: list[str] = []
    others: list[str] = []
    for r_index, item in enumerate(result):
        if not isinstance(item, dict) or item.get("type") != "choices":
            continue  # other controls (a comment, a rating) carry no verdict
        value = item.get("value")
        picked = value.get("choices") if isinstance(value, dict) else None
        if not isinstance(picked, list):
            raise ExportError(file, where, f"{a_field}.result[{r_index}].value.choices: missing or not a list")
        if item.get("from_name") == choices.name:
            selected.extend(picked)
        else:
            others.append(str(item.get("from_name")))
    field_name = f"{a_field}.result (choices {choices.name!r})"
    if not selected and others:
        raise ExportError(file, where, f"{field_name}: no choice from a control named {choices.name!r}, only from "
                                       f"{sorted(set(others))}; name the control with --choice-name")
    return choices.verdict(selected, file, where, field_name)


def _flat_choices(value: Any) -> list[str] | None:
    """A JSON_MIN/CSV choice cell: "a", ["a", "b"] or {"choices": [...]} (JSON text in CSV)."""
    if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return [value]
    if isinstance(value, dict):
        value = value.get("choices")
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _flat_verdict(file: Path | str, where: str, row: dict[str, Any], choices: ChoiceMap,
                  columns: Iterable[str]) -> ParsedVerdict | None:
    if row.get(choices.name) in (None, "") and _text(row.get("annotation_id")) is None:
        return None  # a task exported without an annotation: nothing to say about it yet
    image_id = _image_id(file, where, "image_id", row.get("image_id"))
    if choices.name not in row:
        raise ExportError(file, where, f"{choices.name}: no such field (fields: {', '.join(sorted(columns))}); "
                                       "name the Choices control with --choice-name")
    picked = _flat_choices(row[choices.name])
    if picked is None:
        raise ExportError(file, where, f"{choices.name}: {row[choices.name]!r} is not a choice")
    verdict = choices.verdict(picked, file, where, choices.name)
    return ParsedVerdict(image_id, verdict, Provenance(
        where=where, task_id=_text(row.get("id")), annotation_id=_text(row.get("annotation_id")),
        annotator=_text(row.get("annotator")), annotated_at=_text(row.get("updated_at") or row.get("created_at"))))


def parse_json_min(file: Path | str, text: str, choices: ChoiceMap) -> list[ParsedVerdict]:
    """Read a JSON_MIN export: one flat object per annotation (skipped tasks are not in it)."""
    out: list[ParsedVerdict] = []
    for number, (line, row) in enumerate(_json_tasks(file, text, "annotated tasks"), start=1):
        where = f"task {number} (line {line})"
        if not isinstance(row, dict):
            raise ExportError(file, where, f"expected an object, got {type(row).__name__}")
        if _text(row.get("id")) is not None:
            where = f"task {number} (id {row['id']}, line {line})"
        parsed = _flat_verdict(file, where, row, choices, row.keys())
        out.extend([parsed] if parsed else [])
    return out


def parse_csv(file: Path | str, text: str, choices: ChoiceMap) -> list[ParsedVerdict]:
    """Read a CSV export: a header, then one row per annotation (skipped tasks are not in it)."""
    delimiter = "\t" if str(file).lower().endswith(".tsv") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if not header:
            raise ExportError(file, "line 1", "empty file: expected a CSV header")
        if "image_id" not in header:
            raise ExportError(file, "line 1", f"image_id: no such column (columns: {', '.join(header)}); keep "
                                              "data.image_id when importing tasks into Label Studio")
        out: list[ParsedVerdict] = []
        start = reader.line_num + 1
        for cells in reader:
            where = f"line {start}"
            start = reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                raise ExportError(file, where, f"{len(cells)} cells, the header has {len(header)}")
            parsed = _flat_verdict(file, where, dict(zip(header, cells, strict=True)), choices, header)
            out.extend([parsed] if parsed else [])
    except csv.Error as exc:
        raise ExportError(file, f"line {reader.line_num}", f"malformed CSV: {exc}") from exc
    if not out:
        raise ExportError(file, "", "the export holds no annotated tasks: annotate in Label Studio, then export again")
    return out


# -- storing -----------------------------------------------------------------------------------
