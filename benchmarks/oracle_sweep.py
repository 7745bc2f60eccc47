"""Oracle success rate per task family and level in the simulator (closed loop).

Each episode: reset, then repeat {observe, ask the oracle for the remaining plan, execute its
first step, env.step} until the env terminates or truncates (``episode.max_steps``).
Success is the task's exact predicate on the settled world. Writes
``benchmarks/results/oracle_sweep.json``; prints a table with 95% Wilson intervals and each
rate against the bar (L1 >= 0.95, L2-L4 >= 0.90).

    python benchmarks/oracle_sweep.py --episodes 50            # all families, L1-L4
    python benchmarks/oracle_sweep.py --families stack --levels L1 --episodes 5
    python benchmarks/oracle_sweep.py --perturb --levels L1 --episodes 20   # knock an object mid-episode
    python benchmarks/oracle_sweep.py --physics heavy_slippery --levels L1 --episodes 10   # 0.5-2 kg, friction 0.4-0.7
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BARS = {"L1": 0.95, "L2": 0.90, "L3": 0.90, "L4": 0.90}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def perturb(env, rng) -> str:
    """Knock one random object somewhere: onto another object, into a container, or to a
    random free spot on the table; let it settle. Returns what was done."""
    import numpy as np

    sim, world = env.sim, env.world_state()
    names = [n for n in world.positions if n != world.held]
    name = names[int(rng.integers(len(names)))]
    others = [n for n in names if n != name and world.clear(n)]
    kind = ["stack", "container", "table"][int(rng.integers(3))]
    if kind == "container" and not world.scene.containers:
        kind = "table"
    if kind == "stack" and others:
        o = others[int(rng.integers(len(others)))]
        p = world.positions[o]
        xyz = (p[0], p[1], world.top_z(o) + world.scene.object(name).height / 2 + 0.002)
    elif kind == "container":
        c = world.scene.containers[int(rng.integers(len(world.scene.containers)))]
        x, y = world.free_slot(c.name, ignore=name)
        xyz, o = (x, y, 0.03), c.name
    else:
        kind, o = "table", ""
        for _ in range(200):
            x, y = rng.uniform(0.38, 0.67), rng.uniform(-0.27, 0.27)
            if all(np.hypot(p[0] - x, p[1] - y) > 0.09 for n, p in world.positions.items() if n != name) and not any(
                c.contains_xy(x, y, margin=0.05) for c in world.scene.containers
            ):
                break
        xyz = (x, y, world.scene.object(name).height / 2 + 0.002)
    yaw = float(rng.uniform(-0.5, 0.5))
    sim.client.resetBasePositionAndOrientation(sim.bodies[name], [float(v) for v in xyz], sim.client.getQuaternionFromEuler([0, 0, yaw]))
    sim.settle()
    return f"{name} -> {kind} {o}".strip()


def run_episode(env, planner, seed: int, perturbed: bool = False) -> dict:
    """One closed-loop oracle episode; returns what happened. ``perturbed``: knock one object
    before the second step (before the first when the plan has one step)."""
    import numpy as np

    env.reset(seed=seed)
    episode = env.episode
    steps, trace = 0, []
    info = {"success": False, "failure": ""}
    rng = np.random.default_rng(seed)
    at = 1 if len(list(planner.plan(env.observation()))) > 2 else 0  # the plan ends with done
    while True:
        if perturbed and steps == at:
            done_to = perturb(env, rng)
            trace.append(["perturb: " + done_to, True, ""])
        step = next(iter(planner.plan(env.observation())))
        _, _, terminated, truncated, info = env.step(step.text)
        steps += 1
        trace.append([step.text, bool(info.get("skill_success")), info.get("skill_reason", "") or info.get("error", "")])
        if terminated or truncated:
            break
    out = {"seed": seed, "success": bool(info["success"]), "steps": steps, "max_steps": episode.max_steps,
           "instruction": episode.instruction}
    if perturbed:
        out["perturbation"] = done_to if perturbed and steps > at else "none (ended first)"
    if not out["success"]:
        out["failure"] = info.get("failure", "") or ("truncated" if truncated else "done without success")
        out["trace"] = trace
    return out


def _write(args, rows, failures, t_start, argv, final: bool) -> dict:
    """Write the results so far (the file is rewritten after every row)."""
    total_k = sum(r["successes"] for r in rows)
    total_n = sum(r["episodes"] for r in rows)
    summary = {"episodes": total_n, "successes": total_k, "rate": total_k / max(total_n, 1),
               "all_meet_bar": all(r["meets_bar"] for r in rows), "complete": final, "seconds": time.time() - t_start,
               "command": "python benchmarks/oracle_sweep.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"summary": summary, "rows": rows, "failures": failures}, f, indent=1)
    return summary


def main(argv=None) -> int:
    from envs.physics import physics_variation
    from envs.tabletop_env import TabletopEnv
    from envs.tasks import TASKS, oracle_plan
    from policies.oracle import OraclePlanner

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="*", default=list(TASKS))
    ap.add_argument("--levels", nargs="*", default=list(BARS))
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--split", default="test")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--grasp-assist", action="store_true", help="TabletopEnv(grasp_assist=True): attach a pinched object to the hand")
    ap.add_argument("--perturb", action="store_true", help="knock one random object once per episode (closed-loop recovery)")
    ap.add_argument("--physics", default=None, help="physics variation preset (envs.physics: heavy, slippery, heavy_slippery); "
                    "each scene draws its objects' mass and friction, seeded by the scene")
    ap.add_argument("--out", default=None, help="default benchmarks/results/oracle_sweep[_perturbed].json")
    args = ap.parse_args(argv)
    if args.out is None:
        name = "oracle_sweep_perturbed.json" if args.perturb else "oracle_sweep.json"
        args.out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", name)

    planner = OraclePlanner(oracle_plan)
    rows, failures = [], {}
    t_start = time.time()
    # levels outer: L1 for every family completes first
    for level in args.levels:
        for family in args.families:
            extra = {"grasp_assist": True} if args.grasp_assist else {}
            env = TabletopEnv(family, level=level, split=args.split, image_size=args.image_size, privileged=True, **extra)
            env.sim.physics = args.physics  # None: the scenes' own (default) physics
            t0 = time.time()
            results = [run_episode(env, planner, s, args.perturb) for s in range(args.first_seed, args.first_seed + args.episodes)]
            env.close()
            k = sum(r["success"] for r in results)
            n = len(results)
            lo, hi = wilson(k, n)
            row = {"family": family, "level": level, "split": args.split, "perturbed": args.perturb, "grasp_assist": args.grasp_assist,
                   "physics": physics_variation(args.physics).to_dict() if args.physics else None, "episodes": n, "successes": k,
                   "rate": k / n, "ci95": [lo, hi], "bar": BARS.get(level, 0.9), "meets_bar": k / n >= BARS.get(level, 0.9),
                   "mean_steps": sum(r["steps"] for r in results) / n, "seconds": time.time() - t0,
                   "failure_kinds": dict(Counter(r["failure"] for r in results if not r["success"]))}
            if args.perturb:  # how often each kind of knock happened (stack / container / table / none)
                row["perturbations"] = dict(Counter(r["perturbation"].split(" -> ")[1].split()[0] if " -> " in r["perturbation"] else "none"
                                                    for r in results))
            rows.append(row)
            failures[f"{family}/{level}"] = [r for r in results if not r["success"]]
            _write(args, rows, failures, t_start, argv, final=False)
            print(f"{family:20s} {level}  {k:3d}/{n:<3d} = {k / n:5.1%}  [{lo:.2f}, {hi:.2f}]  bar {row['bar']:.2f} "
                  f"{'ok ' if row['meets_bar'] else 'LOW'}  steps {row['mean_steps']:.1f}  {row['seconds']:.0f}s", flush=True)
    summary = _write(args, rows, failures, t_start, argv, final=True)
    total_k, total_n = summary["successes"], summary["episodes"]
    print(f"overall {total_k}/{total_n} = {summary['rate']:.1%}; all rows meet the bar: {summary['all_meet_bar']}; "
          f"{summary['seconds']:.0f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
