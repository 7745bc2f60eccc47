"""Single ``put X on Y`` placements through the independent Panda (``envs.alt_arm``), per controller.

Runs ``envs.alt_arm.placement_probe`` (1-2 kg objects of friction 0.5, finger pads 1.0, a
velocity-controlled Panda at 1 kHz) for the working tree's skill controller and, with
``--rev``, for the ``embodied/core/skills.py`` of a git revision (the controller before a
change), in each world variant asked for. Counts placements that did not end on the lower
object ("slid off") with their offsets. Writes ``benchmarks/results/placement_probe.json``.

    python benchmarks/placement_probe.py --rev 583302d                   # 12 placements, 3 worlds
    python benchmarks/placement_probe.py --n 24 --worlds coupled occluded --rev 583302d
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

WORLDS = {
    "coupled": {},  # heavy, slippery, the real gripper's coupled fingers, a perfect camera
    "occluded": {"occlude": True, "locate_noise": [0.002, 0.02]},  # a camera: blind under the hand, 2 mm / 0.02 rad noise
    "uncoupled": {"coupled_fingers": False},  # fingers driven independently: the object floats along the closing direction
}


def controller_at(rev: str):
    """``SkillController`` from ``embodied/core/skills.py`` at git revision ``rev``."""
    src = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:embodied/core/skills.py"], check=True,
                         capture_output=True, text=True).stdout
    fd, path = tempfile.mkstemp(suffix=".py", prefix="skills_")
    with os.fdopen(fd, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location(f"skills_at_{rev}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    os.remove(path)
    return mod.SkillController


def summarise(rows: list[dict]) -> dict:
    off = [r for r in rows if not r["on"]]
    return {"placements": len(rows), "slid_off": len(off), "offsets_cm": [r["offset_cm"] for r in off],
            "skill_failures": sum(not r["success"] for r in rows),
            "sim_s_per_step": round(sum(r["sim_s"] for r in rows) / max(len(rows), 1), 3), "rows": rows}


def main(argv=None) -> int:
    from embodied.core.skills import SkillController
    from envs.alt_arm import placement_probe

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12, help="placements per world and controller")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worlds", nargs="*", default=list(WORLDS), choices=list(WORLDS))
    ap.add_argument("--rev", default=None, help="also run the controller of this git revision (the 'before')")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "placement_probe.json"))
    args = ap.parse_args(argv)
    controllers = {"working tree": SkillController}
    if args.rev:
        controllers[f"rev {args.rev}"] = controller_at(args.rev)
    out = {"command": "python benchmarks/placement_probe.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "n": args.n, "seed": args.seed, "worlds": {w: WORLDS[w] for w in args.worlds}, "results": {}}
    for world in args.worlds:
        for label, cls in controllers.items():
            t = time.time()
            s = summarise(placement_probe(args.n, args.seed, world_kwargs=WORLDS[world], controller=cls))
            s["wall_s"] = round(time.time() - t, 1)
            out["results"][f"{world} / {label}"] = s
            print(f"{world:10s} {label:16s} slid off {s['slid_off']:2d}/{s['placements']} {s['offsets_cm']} cm; "
                  f"skill failures {s['skill_failures']}; {s['sim_s_per_step']:.2f} s simulated per step; {s['wall_s']:.0f} s", flush=True)
            os.makedirs(os.path.dirname(args.out), exist_ok=True)
            with open(args.out, "w") as f:
                json.dump(out, f, indent=1)
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
