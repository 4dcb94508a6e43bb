"""`edgemine scenario create|list|show|refresh|label-gap`: scenario files, their locks and label gaps."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from edgemine.bundle.snapshot import load_current
from edgemine.bundle.state import StateDB
from edgemine.cli.common import StateUrl, bundle_state, domain_errors
from edgemine.scenarios.errors import InputFileError
from edgemine.scenarios.files import list_scenarios, load_scenario, save_scenario, scenario_path
from edgemine.scenarios.lock import (
    LockDiff,
    Resolver,
    label_gap,
    load_locked,
    lock_state,
    make_lock,
    refresh,
    resolve_members,
    truth_ids,
    write_lock,
)
from edgemine.scenarios.spec import Scenario

if TYPE_CHECKING:
    from edgemine.service.runtime import EmbedderLoader

scenario_app = typer.Typer(help="Scenarios: named slices with a metric and a gate, locked to their images.",
                           no_args_is_help=True)
SHOWN = 20  # ids listed per joined/left/member list before "... and N more"

Bundle = Annotated[Path, typer.Option(help="Bundle directory.")]
Folder = Annotated[Path, typer.Option("--scenarios", help="Scenarios folder (YAML files and their locks).")]


def make_resolver(bundle: Path, loader: EmbedderLoader | None = None, state_url: str | None = None) -> Resolver:
    """Return a Resolver mining the bundle like `edgemine mine` (same model loading; built on first use).

    `loader` replaces the CLIP loader (tests pass a fake embedder); text prompts load the model.
    """
    from edgemine.service.runtime import Runtime
    from edgemine.service.scenario_query import resolve_query

    runtime: list[Runtime] = []

    def resolve(body: dict[str, Any]) -> list[str]:
        if not runtime:
            extra: dict[str, Any] = {} if loader is None else {"loader": loader}
            runtime.append(Runtime(bundle, state_url=state_url, **extra))
        return resolve_query(runtime[0].current().miner, body)

    return resolve


def _state(bundle: Path, state_url: str | None) -> StateDB:
    return bundle_state(bundle, state_url)


def _version(bundle: Path) -> str:
    return str(load_current(bundle).version)


def _ids(values: Sequence[str] | None) -> list[str]:
    """Split repeated and comma-separated id options into one list."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def _listed(label: str, ids: Sequence[str]) -> None:
    for image_id in ids[:SHOWN]:
        typer.echo(f"  {label} {image_id}")
    if len(ids) > SHOWN:
        typer.echo(f"  ... and {len(ids) - SHOWN} more")


def _show_diff(diff: LockDiff) -> None:
    action = "lock written" if diff.written else "lock unchanged"
    typer.echo(f"{diff.name}: {len(diff.joined)} joined, {len(diff.left)} left, {diff.unchanged} unchanged "
               f"({len(diff.lock.ids)} members; {action})")
    if diff.note:
        typer.echo(f"  note: previous lock not readable: {diff.note}")
    _listed("+", diff.joined)
    _listed("-", diff.left)


@scenario_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Scenario name (letters, digits, . _ -); the file is NAME.yaml.")],
    from_query: Annotated[Path | None, typer.Option(
        "--from-query", show_default=False, help="A JSON file: the body of POST /v1/mine.")] = None,
    ids: Annotated[list[str] | None, typer.Option(
        "--ids", show_default=False, help="Member image ids (repeat, or comma-separated).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(
        "--exclude", show_default=False, help="Image ids never members (repeat, or comma-separated).")] = None,
    description: Annotated[str | None, typer.Option(show_default=False, help="One line on the slice.")] = None,
    metric: Annotated[str, typer.Option(help="accuracy, precision, recall, f1 or ap50.")] = "accuracy",
    classes: Annotated[list[str] | None, typer.Option(
        "--classes", show_default=False, help="Labels the metric counts (repeat or comma-separated; default all).")
    ] = None,
    iou: Annotated[float, typer.Option(help="Detection: IoU for a match.")] = 0.5,
    score_threshold: Annotated[float, typer.Option(
        "--score-threshold", help="The metric's min_score: predictions below it are dropped.")] = 0.0,
    min_n: Annotated[int, typer.Option(help="Gate: fewer scored images is INSUFFICIENT.")] = 30,
    max_drop: Annotated[float, typer.Option(help="Gate: a significant drop larger than this fails.")] = 0.02,
    alpha: Annotated[float, typer.Option(help="Gate: family-wise significance level (Holm).")] = 0.05,
    floor: Annotated[float | None, typer.Option(
        show_default=False, help="Gate: the candidate below this value fails regardless.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing scenario file of this name.")] = False,
    bundle: Bundle = Path("bundle"),
    scenarios: Folder = Path("scenarios"),
    state_url: StateUrl = None,
) -> None:
    """Write NAME.yaml from a mining query and/or ids, resolve its members and write NAME.lock.json."""
    with domain_errors():
        query: dict[str, Any] | None = None
        if from_query is not None:
            try:
                query = json.loads(from_query.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"--from-query {from_query}: not a readable JSON file: {exc}") from exc
            if not isinstance(query, dict):
                raise ValueError(f"--from-query {from_query}: a /v1/mine body is a JSON object")
        data: dict[str, Any] = {
            "name": name, "description": description,
            "members": {"query": query, "ids": _ids(ids), "exclude": _ids(exclude)},
            "metric": {"name": metric, "classes": _ids(classes) or None, "iou": iou, "min_score": score_threshold},
            "gate": {"min_n": min_n, "max_drop": max_drop, "alpha": alpha, "floor": floor}}
        try:
            scenario = Scenario.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            if tuple(first["loc"]) == ("members",):
                raise ValueError("a scenario needs members: give --from-query FILE, --ids ID, or both") from exc
            raise ValueError(f"{'.'.join(str(p) for p in first['loc']) or 'scenario'}: "
                             f"{str(first['msg']).removeprefix('Value error, ')}") from exc
        state = _state(bundle, state_url)
        version = _version(bundle)
        # Resolve before writing anything: a bad query or unknown id leaves no half-made scenario.
        resolver = make_resolver(bundle, state_url=state_url) if query else None
        members = resolve_members(scenario, state.known_ids, resolver)
        path = save_scenario(scenarios, scenario, overwrite=force)
        lock = make_lock(scenario, members, version)
        out = write_lock(path, lock)
    typer.echo(f"wrote {path} and {out}: {len(lock.ids)} members (bundle version {version}, "
               f"content hash {lock.content_hash[:12]})")


@scenario_app.command("list")
def list_(bundle: Bundle = Path("bundle"), scenarios: Folder = Path("scenarios"),
          state_url: StateUrl = None) -> None:
    """List the scenarios: members, how many have ground truth, and whether the lock is fresh."""
    with domain_errors():
        state = _state(bundle, state_url)
        rows: list[tuple[str, int | None, int | None, str, str]] = []
        for path in list_scenarios(scenarios):
            try:
                found = lock_state(path, state)
            except InputFileError as exc:  # one broken file must not hide the others
                rows.append((path.stem, None, None, "invalid", str(exc)))
                continue
            members = len(found.lock.ids) if found.lock else None
            labeled = len(truth_ids(state, found.lock.ids)) if found.lock else None
            rows.append((found.name, members, labeled, found.status, found.reason))
    if not rows:
        typer.echo(f"no scenarios in {scenarios} (create one: edgemine scenario create NAME --from-query FILE)")
        return
    width = max(8, *(len(r[0]) for r in rows))
    typer.echo(f"{'scenario':<{width}}  {'members':>7}  {'with truth':>10}  lock")
    for name, members, labeled, status, reason in rows:
        typer.echo(f"{name:<{width}}  {'-' if members is None else members:>7}  "
                   f"{'-' if labeled is None else labeled:>10}  {status}{f' ({reason})' if reason else ''}")


@scenario_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Scenario name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the scenario, lock and every member as JSON.")
                       ] = False,
    bundle: Bundle = Path("bundle"),
    scenarios: Folder = Path("scenarios"),
    state_url: StateUrl = None,
) -> None:
    """Show a scenario's definition, its lock and its members."""
    with domain_errors():
        state = _state(bundle, state_url)
        path = scenario_path(scenarios, name)
        status = lock_state(path, state)
        scenario = status.scenario or load_scenario(path)
        ids = list(status.lock.ids) if status.lock else []
        labeled = truth_ids(state, ids) if ids else set()
    if as_json:
        typer.echo(json.dumps({"scenario": scenario.model_dump(mode="json"), "file": str(path),
                               "lock_status": status.status, "lock_reason": status.reason,
                               "lock": status.lock.to_json() if status.lock else None,
                               "with_ground_truth": len(labeled)}, indent=2, ensure_ascii=False))
        return
    typer.echo(f"scenario {scenario.name}  ({path})")
    if scenario.description:
        typer.echo(f"  {scenario.description}")
    typer.echo(f"metric: {json.dumps(scenario.metric.model_dump(mode='json'))}")
    typer.echo(f"gate: {json.dumps(scenario.gate.model_dump(mode='json'))}")
    typer.echo(f"members: {json.dumps(scenario.members.model_dump(mode='json', exclude_defaults=True))}")
    typer.echo(f"lock: {status.status}{f' ({status.reason})' if status.reason else ''}")
    if status.lock:
        lock = status.lock
        typer.echo(f"  {len(ids)} members, {len(labeled)} with ground truth; bundle version {lock.bundle_version}, "
                   f"created {lock.created_at}, content hash {lock.content_hash}")
        _listed("", ids)


@scenario_app.command("refresh")
def refresh_(
    names: Annotated[list[str] | None, typer.Argument(help="Scenario names (default: every scenario).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print what would join and leave; write nothing.")] = False,
    bundle: Bundle = Path("bundle"),
    scenarios: Folder = Path("scenarios"),
    state_url: StateUrl = None,
) -> None:
    """Re-resolve members against the bundle (re-running queries), print joined/left, rewrite changed locks."""
    with domain_errors():
        state = _state(bundle, state_url)
        version = _version(bundle)
        paths = [scenario_path(scenarios, n) for n in names] if names else list_scenarios(scenarios)
        resolver = make_resolver(bundle, state_url=state_url)
        diffs = [refresh(path, state, version, resolver, write=not dry_run) for path in paths]
    for diff in diffs:
        _show_diff(diff)
    if not diffs:
        typer.echo(f"no scenarios in {scenarios}")


@scenario_app.command("label-gap")
def label_gap_(
    name: Annotated[str, typer.Argument(help="Scenario name.")],
    batch_name: Annotated[str | None, typer.Option(
        "--batch-name", show_default=False, help="Name of the batch (default: label-gap NAME).")] = None,
    bundle: Bundle = Path("bundle"),
    scenarios: Folder = Path("scenarios"),
    state_url: StateUrl = None,
) -> None:
    """Queue the scenario's members without ground truth as an annotation batch."""
    from edgemine.service.batches import BatchCreate, BatchItemIn, create_batch

    with domain_errors():
        state = _state(bundle, state_url)
        locked = load_locked(scenarios, state, [name])[0]
        gap = label_gap(locked, state)
        if not gap:
            typer.echo(f"all {len(locked.member_ids)} members of {name} have ground truth: nothing to queue")
            return
        request = BatchCreate(name=batch_name or f"label-gap {name}",
                              items=[BatchItemIn(image_id=i) for i in gap],
                              query={"scenario": name, "lock": locked.lock_hash})
        batch = create_batch(state, load_current(bundle), request)
    typer.echo(f"batch {batch.batch_id} ({batch.name!r}): {batch.size} of {len(gap)} members without ground "
               f"truth queued; export it with GET /v1/batches/{batch.batch_id}/export")
    if batch.skipped:
        typer.echo(f"{len(batch.skipped)} skipped: already queued, or marked labeled without imported ground "
                   "truth (import their annotations: edgemine annotations import FILE)")
        _listed("", batch.skipped)
