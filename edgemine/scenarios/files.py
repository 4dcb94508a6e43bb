"""Scenario YAML files: load (every error names the file, line and field), list and save them.

One file per scenario, `NAME.yaml` (or `.yml`) in the team's scenarios folder, its lock file
`NAME.lock.json` beside it (see lock.py). Unknown keys and duplicate keys are errors: a typo
such as `max_dorp` must not silently leave a gate at its default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from edgemine.bundle.layout import write_atomic
from edgemine.scenarios.errors import InputFileError, ScenarioError, UnknownScenario
from edgemine.scenarios.spec import GateSpec, Members, MetricSpec, Scenario

SUFFIXES = (".yaml", ".yml")
# The model behind each mapping of the file, for naming the valid keys next to an unknown one.
_MODELS: dict[tuple[str, ...], type[BaseModel]] = {
    (): Scenario, ("members",): Members, ("metric",): MetricSpec, ("gate",): GateSpec}


def _parse(path: Path, text: str) -> tuple[Any, yaml.Node | None]:
    """Return the YAML document and its node tree (for line numbers); InputFileError on bad YAML."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _refuse_duplicates(path, node)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputFileError(path, f"not valid YAML: {problem}", line=line) from exc
    finally:
        loader.dispose()
    return data, node


def _refuse_duplicates(path: Path, node: yaml.Node, at: tuple[str, ...] = ()) -> None:
    """PyYAML keeps the last of two equal keys: refuse them instead (the first would be ignored)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            if name in seen:
                raise InputFileError(path, f"duplicate key {name!r}", line=key.start_mark.line + 1,
                                     field=".".join((*at, name)))
            seen.add(name)
            _refuse_duplicates(path, value, (*at, name))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicates(path, item, (*at, str(i)))


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """Return the 1-based line of the key (or item) at `loc`, else of its nearest enclosing node."""
    if node is None:
        return None
    line: int = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if str(k.value) == str(part)]
            if not match:
                return line  # a missing key: the mapping that lacks it
            line, node = int(match[0][0].start_mark.line) + 1, match[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = int(node.start_mark.line) + 1
        else:
            return line
    return line


def _message(error: Any) -> str:
    """Return one pydantic error as a sentence a YAML author can act on."""
    loc = tuple(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        model = _MODELS.get(loc[:-1])
        valid = f" (valid keys: {', '.join(model.model_fields)})" if model is not None else ""
        return f"unknown key {loc[-1]!r}{valid}"
    if error["type"] == "missing":
        return "required key is missing"
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "string_type" and isinstance(error.get("input"), int | float | bool):
        msg += " (YAML reads 007, 1e3 or yes as a number or a boolean: quote it)"
    return msg


def load_scenario(path: Path) -> Scenario:
    """Load and validate one scenario file; raises InputFileError naming the file, line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputFileError(path, "no such scenario file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"cannot read: {exc}") from exc
    data, node = _parse(path, text)
    if not isinstance(data, dict):
        raise InputFileError(path, "a scenario file is a YAML mapping (name:, members:, metric:, gate:)",
                             line=1 if node is None else node.start_mark.line + 1)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        more = f" (and {len(errors) - 1} more: " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])} line {_line_of(node, tuple(e['loc']))}: {_message(e)}"
            for e in errors[1:4]) + ")" if len(errors) > 1 else ""
        raise InputFileError(path, _message(first) + more, line=_line_of(node, tuple(first["loc"])),
                             field=field) from exc
    if scenario.name != path.stem:
        raise InputFileError(path, f"name {scenario.name!r} does not match the file name: "
                                   f"rename the file to {scenario.name}{path.suffix} or the scenario to {path.stem!r}",
                             line=_line_of(node, ("name",)), field="name")
    return scenario


def list_scenarios(folder: Path) -> list[Path]:
    """Return the scenario files (`*.yaml`, `*.yml`) of a folder, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ScenarioError(f"scenarios folder {folder} does not exist (create it, or pass --scenarios DIR)")
    return sorted((p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file()
                   and not p.name.startswith(".")), key=lambda p: p.name)


def scenario_path(folder: Path, name: str) -> Path:
    """Return the file of scenario `name`; raises UnknownScenario naming the scenarios there are."""
    files = list_scenarios(folder)
    for path in files:
        if path.stem == name:
            return path
    known = ", ".join(p.stem for p in files) or "none"
    raise UnknownScenario(f"no scenario {name!r} in {folder} (scenarios there: {known})")


def dump_scenario(scenario: Scenario) -> str:
    """Return the YAML text of a scenario (defaults written out, so a reader sees every threshold)."""
    data = scenario.model_dump(mode="json", exclude_none=True)
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100))


def save_scenario(folder: Path, scenario: Scenario, *, overwrite: bool = False) -> Path:
    """Write `NAME.yaml` atomically and return its path; refuses to replace one unless `overwrite`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    existing = [folder / f"{scenario.name}{s}" for s in SUFFIXES if (folder / f"{scenario.name}{s}").exists()]
    if existing and not overwrite:
        raise ScenarioError(f"scenario file {existing[0]} already exists (choose another name, or replace it)")
    path = existing[0] if existing else folder / f"{scenario.name}.yaml"
    write_atomic(path, dump_scenario(scenario).encode("utf-8"))
    return path
