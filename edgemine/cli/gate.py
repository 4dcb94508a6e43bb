"""`edgemine gate`: the candidate model against the baseline on every locked scenario, for CI.

Exit codes: 0 pass, 1 regression (a FAIL; with --strict also an INSUFFICIENT), 2 error (missing or
stale lock, unknown model, missing predictions, a scenario that could not be evaluated, no scenarios).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from edgemine.cli.common import StateUrl, bundle_state, domain_errors
from edgemine.scenarios.errors import ScenarioError
from edgemine.scenarios.gate import run_gate
from edgemine.scenarios.lock import load_locked
from edgemine.scenarios.reports import (
    bundle_thumbnails,
    render_html,
    render_markdown,
    write_json,
    write_junit,
    write_text,
)
from edgemine.scenarios.reports.text import p_text, scored, value
from edgemine.scenarios.results import GateReport
from edgemine.service.limits import MAX_EXAMPLES

EXIT_CODES = {"pass": 0, "fail": 1, "error": 2}
STDOUT = Path("-")


def compute_report(bundle: Path, folder: Path, candidate: str, baseline: str, *, strict: bool,
                   seed: int, state_url: str | None = None) -> GateReport:
    """Load the locked scenarios of `folder` and run the gate of `candidate` against `baseline`."""
    state = bundle_state(bundle, state_url)
    if not folder.is_dir():
        raise ScenarioError(f"scenarios folder {folder} does not exist (give it with --scenarios DIR)")
    locked = load_locked(folder, state)
    if not locked:
        raise ScenarioError(f"no scenarios in {folder}: a gate with nothing to check never passes; "
                            "create one with `edgemine scenario create NAME`")
    report: GateReport = run_gate(state, candidate, baseline, locked, strict=strict, seed=seed)
    return report


def mine_flips_body(report: GateReport) -> tuple[dict[str, Any] | None, int]:
    """Return (a /v1/mine body whose positive_ids are the failed scenarios' regressed flips, how many there were).

    The ids are capped at the service's MAX_EXAMPLES (the first ones, scenario by scenario);
    include_states stays the default (unlabeled): mine new images like the regressions.
    """
    ids = list(dict.fromkeys(f.image_id for s in report.scenarios if s.verdict == "FAIL"
                             for f in s.flips if f.direction == "regressed"))
    if not ids:
        return None, 0
    from edgemine.service.query import MineQuery

    body = {"positive_ids": ids[:MAX_EXAMPLES]}
    MineQuery.model_validate(body)  # the body the service will accept, or a clear error now
    return body, len(ids)


def summary(report: GateReport) -> str:
    """Return a short plain-text summary: one line per scenario, the aggregate, the outcome."""
    lines = [f"edgemine gate: candidate {report.candidate} against baseline {report.baseline}, "
             f"{len(report.scenarios)} scenarios (seed {report.seed}{', strict' if report.strict else ''})"]
    width = max((len(s.name) for s in report.scenarios), default=0)
    for s in report.scenarios:
        lines.append(f"  {s.verdict:<12} {s.name:<{width}}  {s.metric} {value(s.baseline.value)} -> "
                     f"{value(s.candidate.value)} (drop {value(s.drop)}, p={p_text(s.p_adjusted)} Holm, "
                     f"n={scored(s)}): {s.reason}")
    cand, base = report.aggregate
    lines.append(f"  {'aggregate':<12} {'all labeled':<{width}}  {cand.metric} {value(base.value)} -> "
                 f"{value(cand.value)} (n={max(cand.n, base.n)}, not gated)")
    bad = {"FAIL"} | ({"INSUFFICIENT"} if report.strict else set())
    if report.status == "error":
        names = [s.name for s in report.scenarios if s.verdict == "ERROR"]
        lines.append("result: ERROR: could not evaluate " + (", ".join(names) or "any scenario"))
    elif report.status == "fail":
        names = [s.name for s in report.scenarios if s.verdict in bad]
        lines.append(f"result: FAIL: {len(names)} scenario(s) regressed: {', '.join(names)}")
    else:
        lines.append("result: PASS")
    return "\n".join(lines)


def write_reports(report: GateReport, bundle: Path, *, junit: Path | None, markdown: Path | None,
                  html: Path | None, json_out: Path | None) -> list[Path]:
    """Write the requested reports (HTML last: it decodes thumbnails); return their paths."""
    writers: list[tuple[Path | None, Callable[[Path], None]]] = [
        (junit, lambda path: write_junit(report, path)),
        (markdown, lambda path: write_text(path, render_markdown(report))),
        (json_out, lambda path: write_json(report, path)),
        (html, lambda path: write_text(path, render_html(report, bundle_thumbnails(bundle)))),
    ]
    written = []
    for target, write in writers:
        if target is None:
            continue
        try:
            write(target)
        except OSError as exc:
            raise ScenarioError(f"cannot write the report {target}: {exc.strerror or exc}") from exc
        written.append(target)
    return written


def gate(
    candidate: Annotated[str, typer.Option(help="The model under test (its predictions imported).")],
    baseline: Annotated[str, typer.Option(help="The model to compare against, e.g. the one in production.")],
    bundle: Annotated[Path, typer.Option(help="Bundle directory.")] = Path("bundle"),
    scenarios: Annotated[Path, typer.Option(help="Folder of scenario YAML files and their locks.")] = Path(
        "scenarios"),
    junit: Annotated[Path | None, typer.Option(help="Write a JUnit XML report (one suite per scenario).")] = None,
    markdown: Annotated[Path | None, typer.Option(
        help="Write a Markdown report (for $GITHUB_STEP_SUMMARY or a PR comment).")] = None,
    html: Annotated[Path | None, typer.Option(
        help="Write a self-contained HTML page with thumbnails of the flips.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON report (every figure, hashes).")
                        ] = None,
    strict: Annotated[bool, typer.Option(help="A scenario with too few scored images (INSUFFICIENT) fails.")
                      ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the paired bootstrap (AP50, F1).")] = 0,
    mine_flips: Annotated[Path | None, typer.Option(
        show_default=False, metavar="FILE|-",
        help=f"Write the failed scenarios' regressed flips as a /v1/mine body (positive_ids, at most "
             f"{MAX_EXAMPLES}) to FILE, or print it with '-' (the summary then goes to stderr).")] = None,
    state_url: StateUrl = None,
) -> None:
    """Compare a candidate model with the baseline on every locked scenario; exit 0 pass, 1 regression, 2 error.

    Reports are written whenever the gate produced one (also on a regression). Per scenario: FAIL
    when the candidate is below the floor, or drops more than max_drop and the drop is significant
    (one-sided exact McNemar, or paired bootstrap for AP50/F1; Holm across the scenarios); WARN for
    a drop that is not significant; INSUFFICIENT under min_n scored images; ERROR when it cannot be
    evaluated.
    """
    with domain_errors():
        report = compute_report(bundle, scenarios, candidate, baseline, strict=strict, seed=seed,
                                state_url=state_url)
        written = write_reports(report, bundle, junit=junit, markdown=markdown, html=html, json_out=json_out)
        body, total = mine_flips_body(report) if mine_flips is not None else (None, 0)
    to_stderr = mine_flips == STDOUT
    typer.echo(summary(report), err=to_stderr)
    for path in written:
        typer.echo(f"wrote {path}", err=to_stderr)
    if mine_flips is not None:
        _emit_mine_body(body, total, mine_flips)
    raise typer.Exit(EXIT_CODES[report.status])


def _emit_mine_body(body: dict[str, Any] | None, total: int, target: Path) -> None:
    if body is None:
        typer.echo("--mine-flips: no failed scenario has regressed flips: no mining query written", err=True)
        return
    if total > len(body["positive_ids"]):
        typer.echo(f"--mine-flips: {total} regressed flips; the query holds the first {MAX_EXAMPLES} "
                   "(the service's limit of examples per query)", err=True)
    text = json.dumps(body, indent=2) + "\n"
    if target == STDOUT:
        typer.echo(text, nl=False)
    else:
        with domain_errors():
            write_text(target, text)
        typer.echo(f"wrote the /v1/mine body ({len(body['positive_ids'])} positive_ids) to {target}", err=True)
