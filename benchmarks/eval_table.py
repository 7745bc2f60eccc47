"""Collect the summaries under benchmarks/results/eval/ into one markdown table (stdout and eval/table.md)."""

import json
import sys
from pathlib import Path

from envs.tasks import TASKS

root = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/eval")
runs = {d.name: json.loads((d / "summary.json").read_text()) for d in sorted(root.iterdir()) if (d / "summary.json").exists()}
scene_dependent = [f for f, t in TASKS.items() if t.scene_dependent]


def rate(s, family=None):
    if family is None:
        return s["overall"]["success_rate"]
    return s["tasks"][family]["success_rate"] if family in s["tasks"] else float("nan")


def scene_dep(s):
    rs = [s["tasks"][f] for f in scene_dependent if f in s["tasks"]]
    n = sum(r["episodes"] for r in rs)
    return sum(r["success_rate"] * r["episodes"] for r in rs) / n if n else float("nan")


lines = ["| run | episodes | overall | scene-dependent families | " + " | ".join(TASKS) + " |",
         "| --- | --- | --- | --- | " + " | ".join("---" for _ in TASKS) + " |"]
for name, s in runs.items():
    lines.append(f"| {name} | {s['overall']['episodes']} | {rate(s):.1%} | {scene_dep(s):.1%} | "
                 + " | ".join(f"{rate(s, f):.0%}" for f in TASKS) + " |")
ratios = []
for L in ("L1", "L2", "L3", "L4"):
    m, o = runs.get(f"model-{L}"), runs.get(f"oracle-{L}")
    if m and o and rate(o) > 0:
        ratios.append(f"- {L}: model / oracle = {rate(m):.1%} / {rate(o):.1%} = {rate(m) / rate(o):.2f}")
full, blank = runs.get("model-L1"), runs.get("model-L1-ablate-frames")
listless = runs.get("model-L1-ablate-objects")
if full and blank:
    ratios.append(f"- ablate=frames on scene-dependent families at L1: {scene_dep(full):.1%} -> {scene_dep(blank):.1%} "
                  f"({(scene_dep(full) - scene_dep(blank)) * 100:+.1f} points lost)")
if listless and blank:  # both without the object list: what the frames alone are worth
    ratios.append(f"- frames alone (no object list) on scene-dependent families at L1: ablate=objects "
                  f"{scene_dep(listless):.1%} vs ablate=frames {scene_dep(blank):.1%} "
                  f"({(scene_dep(listless) - scene_dep(blank)) * 100:+.1f} points from the frames)")
for level in ("L2", "L3"):  # the planner's object aliases against the model reading the unseen names itself
    with_aliases, plain = runs.get(f"model-{level}"), runs.get(f"model-{level}-no-aliases")
    if with_aliases and plain:
        ratios.append(f"- object aliases at {level}: {rate(with_aliases):.1%} with, {rate(plain):.1%} without (object_aliases=false)")
for planner in ("oracle", "model"):  # perception from pixels against the simulator's ground truth, same seeds
    for L in ("L1", "L2", "L3", "L4"):
        gt, cam, rnd = runs.get(f"{planner}-{L}"), runs.get(f"{planner}-{L}-camera"), runs.get(f"{planner}-{L}-camera-randomized")
        if gt and cam and rate(gt) > 0:
            extra = f"; randomised {rate(rnd):.1%} = {rate(rnd) / rate(gt):.2f}" if rnd else ""
            ratios.append(f"- {planner} {L}: perception=camera {rate(cam):.1%} vs ground truth {rate(gt):.1%} = {rate(cam) / rate(gt):.2f}{extra}")
templated, reworded = runs.get("model-L1"), runs.get("model-L1-wording-dev")
if templated and reworded and rate(templated) > 0:
    ratios.append(f"- wording no template produces (phrasing=dev) at L1: {rate(reworded):.1%} vs the templates' {rate(templated):.1%} "
                  f"= {rate(reworded) / rate(templated):.2f}")
for L in ("L1", "L2"):
    m, nog = runs.get(f"model-{L}"), runs.get(f"model-{L}-ablate-relations")
    if m and nog:
        ratios.append(f"- without the scene graph (ablate=relations) at {L}: {rate(m):.1%} -> {rate(nog):.1%}")
text = "\n".join(lines) + "\n\n" + "\n".join(ratios) + "\n"
(root / "table.md").write_text(text)
print(text)
