"""Parsing real Label Studio 1.23.2 exports (tests/fixtures/labelstudio-1.23.2) into verdicts, and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from edgemine.service.labelstudio import ChoiceMap, ExportError, parse_export

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "labelstudio-1.23.2"
JSON_EXPORT = FIXTURES / "export-JSON.json"
JSON_SKIP = FIXTURES / "export-JSON-with-skip.json"
JSON_MIN = FIXTURES / "export-JSON_MIN.json"
CSV_EXPORT = FIXTURES / "export-CSV.csv"
VERDICT_OF = {"edge_case": "accept", "not_edge_case": "reject"}


def tasks(path: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(path.read_text())
    return data


def expected_from_json(path: Path) -> list[tuple[str, str]]:
    """(image_id, verdict) read from the raw JSON export the plain way, independent of the parser."""
    out = []
    for task in tasks(path):
        for annotation in task["annotations"]:
            if annotation["was_cancelled"]:
                out.append((task["data"]["image_id"], "skip"))
            else:
                (choice,) = annotation["result"][0]["value"]["choices"]
                out.append((task["data"]["image_id"], VERDICT_OF[choice]))
    return out


def pairs(path: Path, **kwargs: Any) -> list[tuple[str, str]]:
    return [(v.image_id, v.verdict) for v in parse_export(path, **kwargs)[1]]


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2))
    return path


def test_fixtures_are_in_the_repository() -> None:
    for name in ("export-JSON.json", "export-JSON-with-skip.json", "export-JSON_MIN.json", "export-CSV.csv",
                 "edgemine-batch-export.json", "labeling-config.xml"):
        assert (FIXTURES / name).is_file(), name
    config = Path(__file__).resolve().parents[2] / "docs" / "labelstudio" / "labeling-config.xml"
    assert config.read_text() == (FIXTURES / "labeling-config.xml").read_text()


def test_json_export_gives_one_verdict_per_annotation_with_provenance_from_meta() -> None:
    kind, verdicts = parse_export(JSON_EXPORT)
    assert kind == "json"
    assert [(v.image_id, v.verdict) for v in verdicts] == expected_from_json(JSON_EXPORT)
    assert len(verdicts) == 6
    raw = tasks(JSON_EXPORT)
    for v, task in zip(verdicts, raw, strict=True):
        assert v.provenance.batch_id == task["meta"]["batch_id"] == "b-b529874473ee"
        assert v.provenance.task_id == str(task["id"])
        assert v.provenance.annotation_id == str(task["annotations"][0]["id"])
        assert v.provenance.annotator == str(task["annotations"][0]["completed_by"])
        assert v.provenance.annotated_at == task["annotations"][0]["updated_at"]
        assert v.provenance.query_id is None  # this export predates query ids in meta


def test_json_export_skipped_task_is_a_skip_verdict() -> None:
    verdicts = pairs(JSON_SKIP)
    assert verdicts == expected_from_json(JSON_SKIP)
    kinds = [v for _, v in verdicts]
    # the fixture's README: 3 edge_case, 5 not_edge_case, 1 skipped
    assert (kinds.count("accept"), kinds.count("reject"), kinds.count("skip")) == (3, 5, 1)
    skipped = [t["data"]["image_id"] for t in tasks(JSON_SKIP) if t["annotations"][0]["was_cancelled"]]
    assert [i for i, v in verdicts if v == "skip"] == skipped


def test_json_min_and_csv_exports_give_the_same_verdicts_as_json() -> None:
    expected = expected_from_json(JSON_EXPORT)
    kind, min_verdicts = parse_export(JSON_MIN)
    assert kind == "json-min"
    assert [(v.image_id, v.verdict) for v in min_verdicts] == expected
    kind, csv_verdicts = parse_export(CSV_EXPORT)
    assert kind == "csv"
    assert [(v.image_id, v.verdict) for v in csv_verdicts] == expected
    # these exports carry no meta; the task and annotation ids still come through
    assert [v.provenance.task_id for v in csv_verdicts] == [str(t["id"]) for t in tasks(JSON_EXPORT)]
    assert [v.provenance.where for v in csv_verdicts] == [f"line {n}" for n in range(2, 8)]
    assert all(v.provenance.batch_id is None for v in min_verdicts + csv_verdicts)


def test_format_is_detected_from_content_whatever_the_suffix(tmp_path: Path) -> None:
    for source, kind in ((JSON_EXPORT, "json"), (JSON_MIN, "json-min"), (CSV_EXPORT, "csv")):
        renamed = tmp_path / f"download-{kind}.txt"
        renamed.write_bytes(source.read_bytes())
        assert parse_export(renamed)[0] == kind
        assert pairs(renamed) == pairs(source)
        assert parse_export(renamed, fmt=kind)[0] == kind


def test_other_choice_names_map_with_explicit_accept_and_reject(tmp_path: Path) -> None:
    raw = JSON_EXPORT.read_text().replace('"not_edge_case"', '"boring"').replace('"edge_case"', '"keep"')
    # (data.edge_case holds text, not a choice: only the annotation choices were renamed)
    renamed = tmp_path / "renamed.json"
    renamed.write_text(raw)
    mapped = pairs(renamed, choices=ChoiceMap(accept=("keep",), reject=("boring",)))
    assert mapped == expected_from_json(JSON_EXPORT)
    swapped = pairs(renamed, choices=ChoiceMap(accept=("boring",), reject=("keep",)))
    flip = {"accept": "reject", "reject": "accept"}
    assert swapped == [(i, flip[v]) for i, v in mapped]


def test_unmapped_choice_names_file_task_field_and_options(tmp_path: Path) -> None:
    data = tasks(JSON_EXPORT)
    data[2]["annotations"][0]["result"][0]["value"]["choices"] = ["maybe"]
    bad = write(tmp_path / "bad.json", data)
    with pytest.raises(ExportError) as info:
        parse_export(bad)
    message = str(info.value)
    assert message.startswith(f"{bad}: task 3 (id {data[2]['id']}, line ")
    assert "annotations[0].result" in message and "'maybe' is not mapped" in message
    assert "accept choices: edge_case" in message and "reject choices: not_edge_case" in message
    assert "--accept-choice" in message


def test_unmapped_choice_in_csv_and_json_min_names_the_line(tmp_path: Path) -> None:
    rows = list(csv.reader(CSV_EXPORT.read_text().splitlines()))
    column = rows[0].index("label")
    rows[4][column] = "unsure"
    bad = tmp_path / "bad.csv"
    with bad.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(ExportError, match=r"bad\.csv: line 5: label: choice 'unsure' is not mapped"):
        parse_export(bad)

    flat = tasks(JSON_MIN)
    flat[1]["label"] = "unsure"
    bad_min = write(tmp_path / "bad-min.json", flat)
    with pytest.raises(ExportError, match=r"bad-min\.json: task 2 \(id 2, line \d+\): label: choice 'unsure'"):
        parse_export(bad_min)


def test_task_without_image_id_is_named(tmp_path: Path) -> None:
    data = tasks(JSON_EXPORT)
    del data[1]["data"]["image_id"]
    bad = write(tmp_path / "no-id.json", data)
    # json.dumps(indent=2) opens each task with a line "  {": the second one is task 2
    line = [n for n, text in enumerate(bad.read_text().splitlines(), start=1) if text == "  {"][1]
    with pytest.raises(ExportError, match=rf"no-id\.json: task 2 \(id 2, line {line}\): data\.image_id: missing"):
        parse_export(bad)

    no_column = tmp_path / "no-id.csv"
    no_column.write_text(CSV_EXPORT.read_text().replace('"image_id"', '"picture"', 1))
    with pytest.raises(ExportError, match=r"no-id\.csv: line 1: image_id: no such column"):
        parse_export(no_column)

    flat = tasks(JSON_MIN)
    flat[0]["image_id"] = 17
    bad_min = write(tmp_path / "int-id.json", flat)
    with pytest.raises(ExportError, match=r"task 1 \(id 1, line 2\): image_id: 17 is not text"):
        parse_export(bad_min)


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    text = JSON_EXPORT.read_text()
    cut = tmp_path / "cut.json"
    cut.write_text(text[: len(text) // 2])
    with pytest.raises(ExportError, match=r"cut\.json: line \d+ column \d+: malformed JSON"):
        parse_export(cut)
    comma = tmp_path / "comma.json"
    comma.write_text('[\n {"data": {"image_id": "a"}, "annotations": []},\n]\n')
    with pytest.raises(ExportError, match=r"comma\.json: line 3 column 1: malformed JSON"):
        parse_export(comma)


@pytest.mark.parametrize(("content", "match"), [
    ("[]", "holds no tasks"),
    ('{"data": {}}', "expected a JSON list of tasks, got a JSON dict"),
    ('[{"data": {"image_id": "a"}, "annotations": "yes"}]', r"task 1 \(line 1\): annotations: not a list"),
    ('[{"id": 4, "data": {"image_id": "a"}, "annotations": [{"result": [], "was_cancelled": false}]}]',
     r"task 1 \(id 4, line 1\): annotations\[0\]\.result \(choices 'label'\): no choice selected"),
    ('[{"data": {"image_id": "a"}, "annotations": [{"result": [{"type": "choices", "from_name": "label", '
     '"value": {"choices": ["edge_case", "not_edge_case"]}}]}]}]', "mean both accept and reject"),
    ('[{"data": {"image_id": "a"}, "annotations": [{"result": [{"type": "choices", "from_name": "verdict", '
     '"value": {"choices": ["edge_case"]}}]}]}]', r"only from \['verdict'\]; name the control with --choice-name"),
])
def test_bad_json_exports_are_refused_with_the_place(tmp_path: Path, content: str, match: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(ExportError, match=match):
        parse_export(bad)


def test_choice_control_with_another_name(tmp_path: Path) -> None:
    renamed = tmp_path / "verdict.json"
    renamed.write_text(JSON_EXPORT.read_text().replace('"from_name":"label"', '"from_name":"verdict"'))
    assert pairs(renamed, choices=ChoiceMap(name="verdict")) == expected_from_json(JSON_EXPORT)
    with pytest.raises(ExportError, match=r"line 2\): verdict: no such field \(fields: .*label.*\); name the Choices"):
        parse_export(JSON_MIN, choices=ChoiceMap(name="verdict"))


def test_multiple_choice_cells_in_json_min_and_csv(tmp_path: Path) -> None:
    flat = tasks(JSON_MIN)
    flat[0]["label"] = {"choices": ["edge_case"]}
    flat[1]["label"] = {"choices": ["not_edge_case", "edge_case"]}
    bad = write(tmp_path / "multi.json", flat)
    with pytest.raises(ExportError, match=r"task 2 .*: label: choices \['not_edge_case', 'edge_case'\] mean both"):
        parse_export(bad)
    flat[1]["label"] = {"choices": ["edge_case"]}
    assert [v for _, v in pairs(write(tmp_path / "multi.json", flat))][:2] == ["accept", "accept"]
    csv_multi = tmp_path / "multi.csv"
    csv_multi.write_text('image_id,label\na,"{""choices"": [""edge_case""]}"\nb,not_edge_case\n')
    assert pairs(csv_multi) == [("a", "accept"), ("b", "reject")]


def test_choice_map_refuses_a_choice_on_both_sides() -> None:
    with pytest.raises(ValueError, match="'edge_case' is given both as an accept and a reject choice"):
        ChoiceMap(accept=("edge_case",), reject=("edge_case", "other"))


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no such file"):
        parse_export(tmp_path / "missing.json")
    binary = tmp_path / "export.json"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ExportError, match="not UTF-8"):
        parse_export(binary)
    with pytest.raises(ValueError, match="format must be one of"):
        parse_export(JSON_EXPORT, fmt="xml")


def test_tasks_exported_without_annotation_are_left_out(tmp_path: Path) -> None:
    flat = tasks(JSON_MIN)
    unannotated = {k: v for k, v in flat[0].items() if k not in ("label", "annotator", "annotation_id")}
    mixed = write(tmp_path / "mixed.json", [unannotated, *flat])
    assert pairs(mixed) == pairs(JSON_MIN)
    lines = CSV_EXPORT.read_text().splitlines()
    header = next(csv.reader([lines[0]]))
    blank = {"label": "", "annotation_id": "", "annotator": "", "image_id": "drive_099/frame_0001.jpg"}
    empty_row = ",".join(blank.get(name, "x") for name in header)
    mixed_csv = tmp_path / "mixed.csv"
    mixed_csv.write_text("\n".join([lines[0], empty_row, *lines[1:]]))
    assert pairs(mixed_csv) == pairs(CSV_EXPORT)
    # an annotation (it has an id) without a choice is still an error
    no_choice = dict(flat[0], label="")
    with pytest.raises(ExportError, match=r"task 1 \(id 1, line 2\): label: no choice selected"):
        parse_export(write(tmp_path / "no-choice.json", [no_choice]))
