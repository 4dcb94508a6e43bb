"""Scenario lock files: a scenario's members resolved against the bundle, fixed for reproducible gates.

`NAME.lock.json` lies beside `NAME.yaml` (commit both): the sorted member ids, the bundle version
they were resolved against, `spec_hash` (of the YAML's `members` block: editing the metric, gate
or description needs no refresh), `content_hash` (of name, spec hash and ids: the lock's identity,
the same for the same members whenever and against whichever version they were resolved),
`created_at` and the edgemine version. A lock is *stale* when the `members` block changed since,
when locked images left the bundle, or when its ids were edited by hand; `edgemine scenario
refresh NAME` fixes it. Members are resolved through an injected `Resolver` (the service's
miner, see edgemine/service/scenario_query.py), so this module never imports the service.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgemine import __version__
from edgemine.bundle.errors import UnknownImageIds
from edgemine.bundle.layout import utc_now, write_atomic
from edgemine.bundle.state import StateDB
from edgemine.scenarios.errors import LockError, ScenarioError
from edgemine.scenarios.files import list_scenarios, load_scenario, scenario_path
from edgemine.scenarios.results import LockedScenario
from edgemine.scenarios.spec import Scenario
from edgemine.scenarios.store import load_truth

LOCK_SUFFIX = ".lock.json"
LOCK_FORMAT = 1
Resolver = Callable[[dict[str, Any]], list[str]]
"""Runs a /v1/mine body (a scenario's `members.query`) and returns the ranked image ids."""
IdCheck = Callable[[Iterable[str]], set[str]]
"""Given ids, returns those that qualify (known to the bundle; having ground truth)."""
LockStatus = Literal["fresh", "stale", "missing"]


@dataclass(frozen=True)
class Lock:
    """The content of NAME.lock.json."""

    name: str
    ids: tuple[str, ...]
    bundle_version: str
    spec_hash: str
    content_hash: str
    created_at: str
    edgemine_version: str
    format: int = LOCK_FORMAT

    def to_json(self) -> dict[str, Any]:
        """Return the lock file's JSON object (plain types; ids last, being the long part)."""
        out = asdict(self)
        out["count"] = len(self.ids)
        out["ids"] = list(out.pop("ids"))
        return out


@dataclass(frozen=True)
class LockDiff:
    """What a refresh changed: images that joined and left the scenario, and how many stayed."""

    name: str
    joined: list[str]
    left: list[str]
    unchanged: int
    lock: Lock
    previous: Lock | None            # None: there was no (readable) lock before
    written: bool                    # the lock file was (re)written
    note: str = ""                   # e.g. why the previous lock could not be read


@dataclass(frozen=True)
class LockState:
    """A scenario's lock as `scenario list` shows it: fresh, stale (with why) or missing."""

    name: str
    path: Path
    status: LockStatus
    reason: str = ""
    lock: Lock | None = None
    scenario: Scenario | None = field(default=None, repr=False)


def lock_path(path: Path) -> Path:
    """Return the lock file of the scenario file `path` (NAME.yaml -> NAME.lock.json)."""
    return Path(path).with_name(Path(path).stem + LOCK_SUFFIX)


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def spec_hash(scenario: Scenario) -> str:
    """Return the sha256 of the scenario's `members` block (canonical JSON)."""
    return _digest(scenario.members.model_dump(mode="json"))


def content_hash(name: str, spec: str, ids: Sequence[str]) -> str:
    """Return the lock's identity: sha256 of its name, spec hash and sorted ids."""
    return _digest([LOCK_FORMAT, name, spec, sorted(ids)])


def resolve_members(scenario: Scenario, known_ids: IdCheck, resolver: Resolver | None) -> list[str]:
    """Return the sorted members: the query's results and its positive_ids, plus `ids`, minus `exclude`.

    The query's own positive_ids (its failure examples) are members too: the miner never returns
    a query's examples, yet they are the slice's first members. `ids` unknown to the bundle are
    an error listing them; `exclude` may name images the bundle no longer has. An empty result
    is an error: a scenario without images could never fail a gate.
    """
    members = scenario.members
    unknown = sorted(set(members.ids) - known_ids(members.ids))
    if unknown:
        raise ScenarioError(f"scenario {scenario.name!r}: members.ids names images not in the bundle: "
                            f"{UnknownImageIds(unknown)}")
    chosen = set(members.ids)
    if members.query is not None:
        if resolver is None:
            raise ScenarioError(f"scenario {scenario.name!r} has a members.query: resolving it needs the "
                                "bundle's miner (no resolver given)")
        chosen |= set(resolver(dict(members.query)))
        positives = members.query.get("positive_ids") or []
        if isinstance(positives, list):
            chosen |= {p for p in positives if isinstance(p, str)}
    ids = sorted(chosen - set(members.exclude))
    if not ids:
        raise ScenarioError(f"scenario {scenario.name!r} resolves to no images (its query found none, "
                            "or exclude removed them all): a scenario needs members")
    return ids


def make_lock(scenario: Scenario, ids: Sequence[str], bundle_version: str) -> Lock:
    """Return the lock of `scenario` with these members, stamped now."""
    spec = spec_hash(scenario)
    ordered = tuple(sorted(set(ids)))
    return Lock(scenario.name, ordered, str(bundle_version), spec, content_hash(scenario.name, spec, ordered),
                utc_now(), __version__)


def write_lock(path: Path, lock: Lock) -> Path:
    """Write the lock of the scenario file `path` atomically; return the lock file's path."""
    out = lock_path(path)
    write_atomic(out, (json.dumps(lock.to_json(), indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return out


def read_lock(path: Path) -> Lock:
    """Read the lock of the scenario file `path`; LockError when missing or malformed."""
    file = lock_path(path)
    fix = f"run `edgemine scenario refresh {Path(path).stem}`"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise LockError(f"scenario {Path(path).stem!r} has no lock file {file}: {fix}") from exc
    except (OSError, ValueError) as exc:
        raise LockError(f"lock file {file} is unreadable ({exc}): {fix}") from exc
    try:
        if not isinstance(data, dict) or data.get("format") != LOCK_FORMAT:
            raise ValueError(f"format {data.get('format') if isinstance(data, dict) else None!r}, "
                             f"this edgemine reads {LOCK_FORMAT}")
        ids = data["ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError("ids is not a list of strings")
        text = {k: data[k] for k in ("name", "bundle_version", "spec_hash", "content_hash", "created_at",
                                     "edgemine_version")}
        if not all(isinstance(v, str) for v in text.values()):
            raise ValueError("a field that should be text is not")
    except (KeyError, ValueError) as exc:
        raise LockError(f"lock file {file} is malformed ({exc}): {fix}") from exc
    return Lock(ids=tuple(ids), **text)


def lock_state(path: Path, state: StateDB) -> LockState:
    """Return whether the lock of scenario file `path` is fresh, stale (and why) or missing."""
    path = Path(path)
    scenario = load_scenario(path)
    if not lock_path(path).exists():
        return LockState(scenario.name, path, "missing", f"no lock file {lock_path(path).name}",
                         scenario=scenario)
    try:
        lock = read_lock(path)
    except LockError as exc:
        return LockState(scenario.name, path, "stale", str(exc), scenario=scenario)
    reason = ""
    if lock.name != scenario.name:
        reason = f"the lock is for scenario {lock.name!r}"
    elif lock.spec_hash != spec_hash(scenario):
        reason = "the members block of the YAML changed since the lock was made"
    elif (lock.content_hash != content_hash(lock.name, lock.spec_hash, lock.ids)
          or list(lock.ids) != sorted(set(lock.ids))):
        reason = "the lock's ids were edited by hand (content hash mismatch)"
    else:
        gone = sorted(set(lock.ids) - state.known_ids(lock.ids))
        if gone:
            reason = f"{len(gone)} locked images left the bundle: {UnknownImageIds(gone)}"
    return LockState(scenario.name, path, "stale" if reason else "fresh", reason, lock, scenario)


def lock_scenario(path: Path, state: StateDB, bundle_version: str, resolver: Resolver | None) -> Lock:
    """Resolve the members of scenario file `path` against the bundle and write its lock."""
    return refresh(path, state, bundle_version, resolver).lock


def refresh(path: Path, state: StateDB, bundle_version: str, resolver: Resolver | None, *,
            write: bool = True) -> LockDiff:
    """Re-resolve the members, return what joined and left, and rewrite the lock when it changed.

    A lock whose members and spec hash are unchanged is left as it is (no git diff from a
    routine refresh); `write=False` only computes the difference (for `--dry-run` and HTTP).
    """
    path = Path(path)
    scenario = load_scenario(path)
    ids = resolve_members(scenario, state.known_ids, resolver)
    previous: Lock | None = None
    note = ""
    if lock_path(path).exists():
        try:
            previous = read_lock(path)
        except LockError as exc:
            note = str(exc)
    lock = make_lock(scenario, ids, bundle_version)
    old = set(previous.ids) if previous is not None else set()
    new = set(lock.ids)
    same = previous is not None and previous.content_hash == lock.content_hash and previous.name == lock.name
    if same and previous is not None:
        lock = previous
    written = write and not same
    if written:
        write_lock(path, lock)
    return LockDiff(scenario.name, sorted(new - old), sorted(old - new), len(new & old), lock, previous,
                    written, note)


def load_locked(folder: Path, state: StateDB, names: Sequence[str] | None = None) -> list[LockedScenario]:
    """Return the scenarios with their locked members; one LockError lists every missing or stale lock."""
    paths = list_scenarios(folder) if names is None else [scenario_path(folder, n) for n in names]
    out: list[LockedScenario] = []
    problems: list[str] = []
    for path in paths:
        status = lock_state(path, state)
        if status.status != "fresh" or status.lock is None or status.scenario is None:
            problems.append(f"{status.name}: {status.status} ({status.reason})")
            continue
        sc = status.scenario
        out.append(LockedScenario(sc.name, sc.metric, sc.gate, status.lock.ids, status.lock.content_hash, str(path)))
    if problems:
        which = " ".join(n.split(":", 1)[0] for n in problems)
        raise LockError(f"{len(problems)} scenario lock(s) cannot be used: {'; '.join(problems)}. "
                        f"Run `edgemine scenario refresh {which}` (then commit the lock files)")
    return out


def truth_ids(state: StateDB, ids: Iterable[str]) -> set[str]:
    """Return which of `ids` have ground truth."""
    return set(load_truth(state, list(ids)))


def label_gap(locked: LockedScenario, state: StateDB, has_truth: IdCheck | None = None) -> list[str]:
    """Return the sorted members of `locked` without ground truth (`has_truth`: default the bundle's)."""
    check = has_truth or (lambda ids: truth_ids(state, ids))
    members = list(locked.member_ids)
    return sorted(set(members) - check(members))
