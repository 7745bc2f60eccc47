"""Statistics of evaluations: Wilson intervals, per-family summaries, the exact McNemar test."""

from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarise(records: list[dict], level: str, planner: str, seed: int, extra: dict | None = None) -> dict:
    tasks: dict[str, dict] = {}
    for family in sorted({r["task"] for r in records}):
        rs = [r for r in records if r["task"] == family]
        k = sum(r["success"] for r in rs)
        lo, hi = wilson_interval(k, len(rs))
        tasks[family] = {"success_rate": k / len(rs), "episodes": len(rs), "ci95": [round(lo, 4), round(hi, 4)]}
    k = sum(r["success"] for r in records)
    lo, hi = wilson_interval(k, len(records))
    summary = {
        "level": level,
        "planner": planner,
        "seed": seed,
        "overall": {"success_rate": k / len(records) if records else 0.0, "episodes": len(records), "ci95": [round(lo, 4), round(hi, 4)]},
        "tasks": tasks,
    }
    summary.update(extra or {})
    return summary


def markdown_table(summary: dict) -> str:
    head = f"# {summary['planner']} at {summary['level']} (seed {summary['seed']})\n\n"
    rows = ["| task | success | episodes | 95% CI |", "| --- | --- | --- | --- |"]
    for family, t in summary["tasks"].items():
        rows.append(f"| {family} | {t['success_rate']:.1%} | {t['episodes']} | {t['ci95'][0]:.2f}-{t['ci95'][1]:.2f} |")
    o = summary["overall"]
    rows.append(f"| **overall** | **{o['success_rate']:.1%}** | {o['episodes']} | {o['ci95'][0]:.2f}-{o['ci95'][1]:.2f} |")
    return head + "\n".join(rows) + "\n"


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar test (binomial on the discordant pairs)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)
