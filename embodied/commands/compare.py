"""``embodied compare <dirA> <dirB>``: paired comparison of two evaluations on the seeds both ran."""

from __future__ import annotations

from pathlib import Path

from embodied.commands.eval import read_jsonl
from embodied.commands.stats import mcnemar_exact
from embodied.core.errors import ConfigError


def main(argv: list[str]) -> int:
    """``embodied compare <dirA> <dirB>``: paired comparison on the seeds both evaluated."""
    if len(argv) != 2:
        raise ConfigError("usage: embodied compare <eval dir A> <eval dir B>")
    print(format_comparison(compare(Path(argv[0]), Path(argv[1]))))
    return 0


def compare(dir_a: Path, dir_b: Path) -> dict:
    a = {(r["task"], r["seed"]): r["success"] for r in read_jsonl(dir_a / "episodes.jsonl")}
    b = {(r["task"], r["seed"]): r["success"] for r in read_jsonl(dir_b / "episodes.jsonl")}
    if not a or not b:
        raise ConfigError(f"no episodes.jsonl with episodes in {dir_a if not a else dir_b}")
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ConfigError("the two evaluations share no (task, seed) pairs: run them with the same seed and level")
    rows: dict[str, dict] = {}
    for family in sorted({t for t, _ in shared}) + ["overall"]:
        keys = [k for k in shared if family == "overall" or k[0] == family]
        both = sum(a[k] and b[k] for k in keys)
        only_a = sum(a[k] and not b[k] for k in keys)
        only_b = sum(b[k] and not a[k] for k in keys)
        rows[family] = {
            "pairs": len(keys),
            "a_rate": sum(a[k] for k in keys) / len(keys),
            "b_rate": sum(b[k] for k in keys) / len(keys),
            "both": both, "only_a": only_a, "only_b": only_b,
            "mcnemar_p": mcnemar_exact(only_a, only_b),
        }
    return {"a": str(dir_a), "b": str(dir_b), "rows": rows}


def format_comparison(result: dict) -> str:
    lines = [f"A = {result['a']}", f"B = {result['b']}", "",
             f"{'task':<22}{'pairs':>6}{'A':>8}{'B':>8}{'B-A':>8}{'A only':>8}{'B only':>8}{'p':>8}"]
    for family, r in result["rows"].items():
        lines.append(f"{family:<22}{r['pairs']:>6}{r['a_rate']:>8.1%}{r['b_rate']:>8.1%}{r['b_rate'] - r['a_rate']:>+8.1%}"
                     f"{r['only_a']:>8}{r['only_b']:>8}{r['mcnemar_p']:>8.3f}")
    return "\n".join(lines)
