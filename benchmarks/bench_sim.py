"""Simulator speed: render fps, physics steps/s, seconds per skill, episodes/minute.

Baseline measured in the same run: a front-camera render with the stock pybullet_data
Panda (its ~10 MB visual meshes) against ours (collision meshes used as visuals).
Writes ``benchmarks/results/sim.json``.

    python benchmarks/bench_sim.py                 # about a minute on one core
    python benchmarks/bench_sim.py --episodes 2 --families stack,put_in_container
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def scene():
    from embodied.core.world import BIN_HALF_EXTENTS, TRAY_HALF_EXTENTS, ContainerSpec, ObjectSpec, Placement, SceneSpec

    objs = [ObjectSpec("red", "cube"), ObjectSpec("green", "cylinder"), ObjectSpec("blue", "triangle"),
            ObjectSpec("yellow", "hexagon"), ObjectSpec("purple", "pentagon")]
    xy = [(0.42, 0.10), (0.55, 0.12), (0.44, -0.12), (0.60, -0.08), (0.66, 0.06)]
    return SceneSpec(objs, {o.name: Placement(x, y, 0.2) for o, (x, y) in zip(objs, xy)},
                     [ContainerSpec("tray", "grey", (0.50, 0.30), TRAY_HALF_EXTENTS),
                      ContainerSpec("orange bin", "orange", (0.50, -0.30), BIN_HALF_EXTENTS)])


def timed(fn, n: int) -> float:
    """Seconds per call (median of 3 batches of n)."""
    out = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t) / n)
    return sorted(out)[1]


def bench_render(sizes) -> dict:
    import pybullet_data

    from envs.sim import TabletopSim

    res = {}
    for size in sizes:
        sim = TabletopSim(image_size=size)
        sim.load(scene())
        ours = timed(lambda s=sim: s._render(s._view, s._proj, True), 20)
        # baseline: the same scene with the stock Panda visual meshes
        c = sim.client
        c.removeBody(sim.robot)
        c.setAdditionalSearchPath(pybullet_data.getDataPath())
        c.loadURDF("franka_panda/panda.urdf", useFixedBase=True)
        stock = timed(lambda s=sim: s._render(s._view, s._proj, True), 5)
        sim.close()
        res[str(size)] = {"fps": 1 / ours, "stock_panda_fps": 1 / stock, "speedup": stock / ours}
        print(f"render {size}x{size}: {1 / ours:7.1f} fps  (stock Panda meshes {1 / stock:6.1f} fps, x{stock / ours:.1f})")
    sim = TabletopSim(image_size=128, depth=True, wrist_camera=True)
    sim.load(scene())

    def full():
        sim._frame_cache = None
        sim.frames()

    t = timed(full, 10)
    res["128_front+wrist+depth"] = {"fps": 1 / t}
    print(f"observation 128 (front + wrist + depth + detections): {1 / t:7.1f} per s")
    sim.close()
    return res


def bench_physics() -> dict:
    from embodied.core.world import SceneSpec
    from envs.sim import TabletopSim

    sim = TabletopSim()
    res = {}
    for name, sc in (("empty", SceneSpec([], {})), ("5 objects + 2 containers", scene())):
        sim.load(sc)
        t = timed(lambda: sim.step(240), 2)
        res[name] = 240 / t
        print(f"physics {name}: {240 / t:8.0f} steps/s ({240 / t / 240:.1f}x real time)")
    t = time.perf_counter()
    for _ in range(5):
        sim.load(scene())
    res["load_scene_s"] = (time.perf_counter() - t) / 5
    print(f"load + settle a scene: {res['load_scene_s'] * 1000:.0f} ms")
    sim.close()
    return {"steps_per_s": res}


def bench_skills() -> dict:
    from embodied.core.skills import SkillController
    from envs.sim import TabletopSim

    sim = TabletopSim()
    steps = ["put blue triangle on red cube", "put green cylinder in tray", "move yellow hexagon to top right",
             "put purple pentagon left of red cube"]
    times, phys = [], []
    for text in steps:
        sim.load(scene())
        ctl = SkillController(sim.arm, sim.pose, sim.scene.objects, sim.scene.containers)
        s0, t = sim.steps, time.perf_counter()
        r = ctl.execute(text)
        sim.settle()
        times.append(time.perf_counter() - t)
        phys.append(sim.steps - s0)
        print(f"skill {text!r}: {times[-1]:.2f} s, {phys[-1]} physics steps, success={r.success}")
    sim.close()
    return {"seconds_per_skill": sum(times) / len(times), "physics_steps_per_skill": sum(phys) / len(phys)}


def bench_episodes(families, episodes: int) -> dict:
    import gymnasium as gym

    import envs  # noqa: F401
    from envs.registration import env_id

    n = ok = steps = 0
    t = time.perf_counter()
    for fam in families:
        env = gym.make(env_id(fam))
        u = env.unwrapped
        for seed in range(episodes):
            env.reset(seed=seed)
            done = False
            while not done:
                step = u.task.oracle_plan(u.episode, u.world_state())[0]
                _, _, term, trunc, info = env.step(step.text)
                steps += 1
                done = term or trunc
            n += 1
            ok += bool(info["success"])
        env.close()
    dt = time.perf_counter() - t
    print(f"oracle episodes: {n} in {dt:.1f} s = {n / dt * 60:.1f} episodes/min, {dt / steps:.2f} s per plan step, success {ok}/{n}")
    return {"episodes": n, "successes": ok, "episodes_per_min": n / dt * 60, "seconds_per_plan_step": dt / steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=3, help="oracle episodes per family")
    ap.add_argument("--families", default="", help="comma-separated families (default: all)")
    ap.add_argument("--sizes", default="128,224", help="render sizes")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "sim.json"))
    args = ap.parse_args()
    from envs.registration import FAMILIES

    families = [f for f in args.families.split(",") if f] or list(FAMILIES)
    out = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "render": bench_render([int(s) for s in args.sizes.split(",")]),
        "physics": bench_physics(),
        "skills": bench_skills(),
        "episodes": bench_episodes(families, args.episodes),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
