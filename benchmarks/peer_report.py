"""Peer comparison at equal recall: sweep curves, the fastest configuration per recall target, plots.

bench_search.py names a swept peer's methods `peer@param=value` (peers.peer_methods); this module groups
them back into one recall/latency curve per peer and scenario (examples x excluded fraction).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RECALL_TARGET = 0.95  # the recall@k target
# Methods whose recall is measured against another ground truth (the exact probe ranking): not comparable.
NOT_COMPARABLE = ("edgemine-probe",)
Row = dict[str, Any]


def split_method(method: str) -> tuple[str, str | None, int | None]:
    """`hnswlib@ef=200` -> ("hnswlib", "ef", 200); a plain name -> (name, None, None)."""
    if "@" not in method:
        return method, None, None
    family, setting = method.split("@", 1)
    param, value = setting.split("=", 1)
    return family, param, int(value)


def scenarios(res: dict[str, Any]) -> list[tuple[int, float]]:
    """The (examples, excluded) pairs in the order they ran."""
    seen: dict[tuple[int, float], None] = {}
    for r in res["results"]:
        seen[(r["examples"], r["excluded"])] = None
    return list(seen)


def curves(res: dict[str, Any], scenario: tuple[int, float]) -> dict[str, list[Row]]:
    """Each method family's rows in one scenario, sorted by its parameter (one row for exact methods)."""
    out: dict[str, list[Row]] = {}
    for r in res["results"]:
        if (r["examples"], r["excluded"]) != scenario or r["method"] in NOT_COMPARABLE:
            continue
        family, param, value = split_method(r["method"])
        out.setdefault(family, []).append({**r, "family": family, "param": param, "value": value})
    for rows in out.values():
        rows.sort(key=lambda row: row["value"] or 0)
    return out


def fastest_at(rows: list[Row], target: float) -> Row | None:
    """The lowest-p50 row with recall >= target, if any."""
    good = [row for row in rows if row["recall"] >= target]
    return min(good, key=lambda row: row["p50_ms"]) if good else None


def _config(row: Row) -> str:
    return f"{row['param']}={row['value']}" if row["param"] else "-"


def equal_recall_table(res: dict[str, Any], target: float = RECALL_TARGET) -> list[str]:
    """Markdown: per scenario, each method's fastest configuration reaching `target`, vs edgemine-auto."""
    lines = [
        f"#### Fastest configuration with recall@k >= {target} (p50; ratio = p50 / edgemine-auto p50)",
        "",
        "| examples | excluded | method | config | p50 ms | p99 ms | recall@k | p50 / edgemine-auto |",
        "| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for scenario in scenarios(res):
        fams = curves(res, scenario)
        ours = fastest_at(fams.get("edgemine-auto", []), 0.0)
        for family, rows in fams.items():
            best = fastest_at(rows, target)
            m, frac = scenario
            if best is None:
                top = max(rows, key=lambda row: row["recall"])
                lines.append(
                    f"| {m} | {frac:.0%} | {family} | not reached (best {top['recall']} at {_config(top)}, "
                    f"{top['p50_ms']} ms) | | | | |"
                )
                continue
            ratio = f"{best['p50_ms'] / ours['p50_ms']:.2g}x" if ours else ""
            lines.append(
                f"| {m} | {frac:.0%} | {family} | {_config(best)} | {best['p50_ms']} | {best['p99_ms']} | "
                f"{best['recall']} | {ratio} |"
            )
    return lines


def curve_table(res: dict[str, Any]) -> list[str]:
    """Markdown: each swept peer's recall / p50 ms at every parameter value, per scenario."""
    lines = ["#### Sweep curves (recall@k / p50 ms at each value; * = documented recommendation)", ""]
    recommended = {name: p.get("recommended") for name, p in res.get("peers", {}).items()}
    lines += ["| method | examples | excluded | curve |", "| --- | ---: | ---: | --- |"]
    for scenario in scenarios(res):
        for family, rows in curves(res, scenario).items():
            if rows[0]["param"] is None:
                continue
            points = ", ".join(
                f"{row['param']}={row['value']}{'*' if row['value'] == recommended.get(family) else ''}: "
                f"{row['recall']} / {row['p50_ms']}"
                for row in rows
            )
            lines.append(f"| {family} | {scenario[0]} | {scenario[1]:.0%} | {points} |")
    return lines


def markdown(res: dict[str, Any], command: str, plot_name: str | None) -> str:
    """The peer-comparison sections appended to bench_search's Markdown for one size."""
    load = res.get("loadavg_start"), res.get("loadavg_end")
    lines = [
        "",
        "Command: `" + command + "`",
        "",
        "The machine (2 cores) was shared with other agents' jobs during this run "
        f"(1-minute load average {load[0]} at the start, {load[1]} at the end): absolute times are noisy; "
        "compare methods within this run (they are timed interleaved, query set by query set).",
        "",
    ]
    if plot_name:
        lines += [f"![recall vs p50 per scenario]({plot_name})", ""]
    lines += [*equal_recall_table(res), "", *curve_table(res)]
    return "\n".join(lines) + "\n"


def plot(res: dict[str, Any], path: Path, xlabel: str = "p50 latency, ms (log)") -> None:
    """Write a recall-vs-p50 grid (rows: excluded fraction, columns: examples) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scen = scenarios(res)
    fracs = sorted({s[1] for s in scen})
    counts = sorted({s[0] for s in scen})
    fig, axes = plt.subplots(len(fracs), len(counts), figsize=(5 * len(counts), 4 * len(fracs)), squeeze=False)
    families = sorted({split_method(r["method"])[0] for r in res["results"]} - set(NOT_COMPARABLE))
    colors = {family: plt.get_cmap("tab10")(i % 10) for i, family in enumerate(families)}
    recommended = {name: p.get("recommended") for name, p in res.get("peers", {}).items()}
    for (m, frac) in scen:
        ax = axes[fracs.index(frac)][counts.index(m)]
        for family, rows in curves(res, (m, frac)).items():
            xs, ys = [r["p50_ms"] for r in rows], [r["recall"] for r in rows]
            style = "-o" if rows[0]["param"] else "s"
            ax.plot(xs, ys, style, color=colors[family], label=family, markersize=5)
            for r in rows:
                if r["param"] and r["value"] == recommended.get(family):
                    ax.plot([r["p50_ms"]], [r["recall"]], "o", markersize=11, mfc="none", color=colors[family])
        ax.axhline(RECALL_TARGET, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_title(f"{m} example(s), {frac:.0%} excluded", fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"recall@{res['k']}")
        ax.grid(True, which="both", alpha=0.3)
    # Every family once, including those run in some scenarios only (e.g. a slow peer at 1M).
    legend: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=9)
    fig.suptitle(
        f"n = {res['n']:,} x {res['d']}, k = {res['k']}: recall vs p50 (sweeps joined; large circle = "
        "documented default; shared, loaded 2-core machine)",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    fig.savefig(path, dpi=90)
    plt.close(fig)
