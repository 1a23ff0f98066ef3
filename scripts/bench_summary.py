"""The summary of bench_capacity.py: per server and run, N_max, CPU at N_max, calls per core
and RSS per call; with ``--runs K`` the median of each across the runs; the ratios of the
engine to each bare server (from the medians) and the comparisons at equal load.
"""

from __future__ import annotations

import statistics

from bench_servers import BARE_SCRIPTS, describe
from bench_step import HEADER, fmt_row

BARE_ORDER = ("bare", "websockets", "picows")
TARGET = 0.6  # engine calls per core / bare (trio-websocket) calls per core


def summarize_run(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Per server: N_max (the largest N that passed with every smaller step passing too),
    and the figures at N_max."""
    summary: dict[str, dict] = {}
    for kind, rows in results.items():
        rows = sorted(rows, key=lambda s: s["calls"])
        if not rows:
            continue
        carried = {s["calls"] for s in rows if s["passed"]}  # with --retries: one try passed
        first_fail = min((s["calls"] for s in rows if s["calls"] not in carried), default=None)
        ok_rows = [s for s in rows if s["passed"] and (first_fail is None or s["calls"] < first_fail)]
        if not ok_rows:
            summary[kind] = {"n_max": 0}
            continue
        best = max(ok_rows, key=lambda s: s["calls"])
        summary[kind] = {
            "n_max": best["calls"],
            "capped_by_steps": first_fail is None,
            "cpu_at_n_max": best["cpu"],
            "calls_per_core": best["calls"] / best["cpu"] if best["cpu"] > 0 else float("nan"),
            "cpu_ms_per_call_s": best["cpu_ms_per_call_s"],
            "rss_per_call_kb": best["rss_per_call_kb"],
            "gen_cpu_at_n_max": best["gen_cpu"],
            "first_fail": first_fail,
        }
    return summary


def print_tables(results: dict[str, list[dict]], provider: str, run: int | None = None) -> None:
    for kind, rows in results.items():
        if not rows:
            continue
        label = f"run {run}: " if run is not None else ""
        print(f"\n{label}{kind} server ({describe(kind, provider)})")
        print(HEADER)
        for s in sorted(rows, key=lambda s: s["calls"]):
            print(fmt_row(s))


def _line(kind: str, s: dict) -> str:
    if not s.get("n_max"):
        return f"  {kind:<10} carried no step"
    more = " (the sweep's largest step: the real limit is higher)" if s["capped_by_steps"] else f" (failed at {s['first_fail']})"
    return (
        f"  {kind:<10} N_max {s['n_max']}{more}; CPU at N_max {100 * s['cpu_at_n_max']:.0f}% of one core "
        f"= {s['cpu_ms_per_call_s']:.2f} ms CPU per call-second; calls per core {s['calls_per_core']:.0f}; "
        f"RSS per call {s['rss_per_call_kb']:.0f} KiB; load generators at {100 * s['gen_cpu_at_n_max']:.0f}% of a core in all"
    )


def median_summary(runs: list[dict[str, dict]]) -> dict[str, dict]:
    """Per server, the median over the runs of N_max, calls per core, CPU per call-second and
    RSS per call (a run where it carried no step counts as N_max 0 and is left out of the rest)."""
    out: dict[str, dict] = {}
    for kind in dict.fromkeys(k for run in runs for k in run):
        per = [run.get(kind, {"n_max": 0}) for run in runs]
        carried = [s for s in per if s.get("n_max")]
        m = {"runs": len(per), "n_max_per_run": [s["n_max"] for s in per], "n_max": statistics.median(s["n_max"] for s in per)}
        if carried:
            for key in ("calls_per_core", "cpu_ms_per_call_s", "rss_per_call_kb", "cpu_at_n_max", "gen_cpu_at_n_max"):
                m[key] = statistics.median(s[key] for s in carried)
            m["calls_per_core_per_run"] = [round(s.get("calls_per_core", 0.0), 1) for s in per]
        out[kind] = m
    return out


def equal_load(steps: dict[str, list[dict]], a: str, b: str) -> list[tuple[int, float, float]]:
    """(N, median ms/cs of a, median ms/cs of b) at every N both passed, over every run."""
    def by_n(kind: str) -> dict[int, list[float]]:
        d: dict[int, list[float]] = {}
        for s in steps.get(kind, []):
            if s["passed"]:
                d.setdefault(s["calls"], []).append(s["cpu_ms_per_call_s"])
        return d

    da, db = by_n(a), by_n(b)
    return [(n, statistics.median(da[n]), statistics.median(db[n])) for n in sorted(set(da) & set(db))]


def print_summary(all_runs: list[dict[str, list[dict]]], baseline_tree=None) -> dict:
    """Print the summary of every run and the medians; return them for --json."""
    per_run = [summarize_run(r) for r in all_runs]
    pooled: dict[str, list[dict]] = {}
    for r in all_runs:
        for kind, rows in r.items():
            pooled.setdefault(kind, []).extend(rows)
    print("\nsummary")
    if len(all_runs) > 1:
        for i, summary in enumerate(per_run, 1):
            print(f"  run {i}: " + "; ".join(
                f"{kind} N_max {s.get('n_max', 0)}" + (f", {s['calls_per_core']:.0f} calls/core" if s.get("n_max") else "")
                for kind, s in summary.items()
            ))
        medians = median_summary(per_run)
        print(f"  median over {len(all_runs)} runs:")
        for kind, m in medians.items():
            if "calls_per_core" not in m:
                print(f"  {kind:<10} carried no step in any run")
                continue
            print(
                f"  {kind:<10} N_max {m['n_max']:g} (runs: {', '.join(map(str, m['n_max_per_run']))}); "
                f"calls per core {m['calls_per_core']:.0f} (runs: {', '.join(f'{x:.0f}' for x in m['calls_per_core_per_run'])}); "
                f"{m['cpu_ms_per_call_s']:.2f} ms CPU per call-second at N_max; RSS per call {m['rss_per_call_kb']:.0f} KiB"
            )
    else:
        medians = median_summary(per_run)
        for kind, s in per_run[0].items():
            print(_line(kind, s))
    out: dict = {"per_run": per_run, "median": medians, "ratios": {}}
    e = medians.get("engine", {})
    for bare in BARE_ORDER:
        b = medians.get(bare, {})
        if "calls_per_core" not in e or "calls_per_core" not in b:
            continue
        ratio = e["calls_per_core"] / b["calls_per_core"]
        target = f" (target >= {TARGET}: {'met' if ratio >= TARGET else 'NOT met'})" if bare == "bare" else ""
        what = "medians, " if len(all_runs) > 1 else ""
        print(
            f"  engine / {bare} ({BARE_SCRIPTS[bare]}): {what}calls per core {e['calls_per_core']:.0f} / {b['calls_per_core']:.0f} "
            f"= {ratio:.2f}{target}; N_max {e['n_max']:g} / {b['n_max']:g} = {e['n_max'] / b['n_max']:.2f}"
        )
        pairs = equal_load(pooled, "engine", bare)
        if pairs:
            print(
                f"    at equal load (CPU per call-second, engine vs {bare}; {bare}/engine = the engine's share of its calls per core): "
                + "; ".join(f"N={n}: {ec:.2f} vs {bc:.2f} ms = {bc / ec:.2f}" for n, ec, bc in pairs)
            )
        out["ratios"][f"engine/{bare}"] = {
            "calls_per_core": ratio, "n_max": e["n_max"] / b["n_max"],
            "at_equal_load": {str(n): bc / ec for n, ec, bc in pairs},
        }
    if "engine" in pooled and "baseline" in pooled:
        pairs = equal_load(pooled, "engine", "baseline")
        if pairs:
            print(
                f"  engine vs baseline ({baseline_tree}) at equal load, CPU per call-second (baseline/engine > 1: this tree is cheaper): "
                + "; ".join(f"N={n}: {ec:.2f} vs {oc:.2f} ms = {oc / ec:.2f}" for n, ec, oc in pairs)
            )
            out["engine_vs_baseline_at_equal_load"] = {str(n): oc / ec for n, ec, oc in pairs}
    for kind in [k for k in pooled if k.startswith("engine-w")]:
        w = medians.get(kind, {})
        if not w.get("n_max") or not e.get("n_max"):
            continue
        equal = "; ".join(f"N={n}: {ec:.2f} vs {wc:.2f} ms" for n, ec, wc in equal_load(pooled, "engine", kind))
        print(
            f"  engine / {kind}: N_max {e['n_max']:g} / {w['n_max']:g} = {w['n_max'] / e['n_max']:.2f}x with {kind[len('engine-w'):]} "
            f"workers; CPU per call-second at equal load, 1 process vs workers: {equal}"
        )
    gen_busy = [s for rows in pooled.values() for s in rows if not s["passed"] and s["gen_cpu"] / s["generators"] > 0.85]
    if gen_busy:
        print(
            "  note: the load generators were above 85% of a core each at a failing step "
            f"({', '.join(str(s['server']) + '@' + str(s['calls']) for s in gen_busy)}); those failures may be partly their own"
        )
    return out
