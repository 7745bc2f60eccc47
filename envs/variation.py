"""Randomised rendering for measuring perception's robustness: ``RenderVariation``.

One variation is drawn from a seed and is plain data (``to_dict`` / ``from_dict``, JSON), so a
measurement can be repeated exactly: light direction, intensity (``EXPOSURE``) and shading coefficients,
a table tint, every object's and container's colour jittered *within its name* (hue within
``HUE_JITTER_DEG`` of the vocabulary's, so the right answer stays right), each camera moved
by about 1 cm and turned by about 1 degree (``envs.cameras.jittered``; perception keeps the
nominal calibration, as a real robot's would), and RGB and depth noise.

    var = RenderVariation.sample(seed, sim.scene, SPECS)
    var.apply(sim)                    # recolour after sim.load (pybullet changeVisualShape)
    cams = var.cameras(sim, SPECS)    # SimCameras with the moved poses, light and noise
    frames = {n: c.read() for n, c in cams.items()}
    var.restore(sim)                  # the scene's own colours again
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np

from embodied.core.vocab import COLOUR_RGBA
from embodied.core.world import SceneSpec
from envs.cameras import DEFAULT_LIGHT, Lighting, SimCamera, SimCameraSpec, jittered
from envs.sim import TABLE_RGBA, TRAY_RGBA

HUE_JITTER_DEG = 6.0  # object / bin hue within this of its vocabulary colour (pink and red are 28 deg apart)
SATURATION = (0.85, 1.08)  # factors on saturation
VALUE = (0.8, 1.05)  # factors on value (albedo brightness)
# Brightness of a surface facing the light, relative to pybullet's default light (light colour
# times ambient + diffuse + specular). Brighter overexposes: clipped channels move an orange
# towards yellow (hue 14 -> 20 of 180 at 1.2), which no camera's auto-exposure would allow.
EXPOSURE = (0.7, 1.05)
ELEVATION_DEG = (45.0, 85.0)  # light above the table
AMBIENT, DIFFUSE, SPECULAR = (0.45, 0.7), (0.25, 0.5), (0.0, 0.12)
TABLE_TINT = 0.07  # table RGB channels times 1 +- this
RGB_NOISE = (1.0, 4.0)  # std of additive RGB noise (0..255)
DEPTH_NOISE = (0.0002, 0.001)  # std of multiplicative depth noise (0.2-1 mm at 1 m)
CAMERA_METRES, CAMERA_DEGREES = 0.01, 1.0


def nominal_rgba(scene: SceneSpec) -> dict[str, tuple[float, float, float, float]]:
    """The colours ``envs.sim`` gives the scene's objects and containers."""
    out = {o.name: COLOUR_RGBA[o.colour] for o in scene.objects}
    for c in scene.containers:
        out[c.name] = TRAY_RGBA if c.name == "tray" else COLOUR_RGBA.get(c.colour, TRAY_RGBA)
    return out


def _jitter_colour(rgba, rng: np.random.Generator, grey: bool) -> tuple[float, float, float, float]:
    h, s, v = colorsys.rgb_to_hsv(*rgba[:3])
    if grey:
        s, v = s, float(np.clip(v * rng.uniform(0.85, 1.15), 0.0, 1.0))
    else:
        h = (h + rng.uniform(-HUE_JITTER_DEG, HUE_JITTER_DEG) / 360.0) % 1.0
        s = float(np.clip(s * rng.uniform(*SATURATION), 0.0, 1.0))
        v = float(np.clip(v * rng.uniform(*VALUE), 0.0, 1.0))
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return (round(r, 4), round(g, 4), round(b, 4), 1.0)


@dataclass
class RenderVariation:
    seed: int
    light_direction: tuple[float, float, float] = DEFAULT_LIGHT
    lighting: Lighting = field(default_factory=Lighting)
    table_rgba: tuple[float, float, float, float] = TABLE_RGBA
    colours: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)  # body name -> rgba
    cameras_pose: dict[str, dict] = field(default_factory=dict)  # camera -> {"eye", "target", "up"}
    rgb_noise: float = 0.0
    depth_noise: float = 0.0

    @classmethod
    def sample(cls, seed: int, scene: SceneSpec, specs: Mapping[str, SimCameraSpec]) -> "RenderVariation":
        rng = np.random.default_rng([int(seed), 0x5EED])
        el = math.radians(rng.uniform(*ELEVATION_DEG))
        az = rng.uniform(0.0, 2 * math.pi)
        light = (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))
        amb, dif, spec = float(rng.uniform(*AMBIENT)), float(rng.uniform(*DIFFUSE)), float(rng.uniform(*SPECULAR))
        i = float(rng.uniform(*EXPOSURE)) / (amb + dif + spec)  # the light's intensity, as a camera's auto-exposure leaves it
        lighting = Lighting((i, i, i), amb, dif, spec)
        tint = np.clip(np.asarray(TABLE_RGBA[:3]) * (1 + rng.uniform(-TABLE_TINT, TABLE_TINT, 3)), 0, 1)
        colours = {name: _jitter_colour(rgba, rng, name == "tray") for name, rgba in nominal_rgba(scene).items()}
        poses = {}
        for name, spec in specs.items():
            j = jittered(spec, rng, CAMERA_METRES, CAMERA_DEGREES)
            poses[name] = {"eye": [round(float(v), 6) for v in j.eye], "target": [round(float(v), 6) for v in j.target],
                           "up": [round(float(v), 6) for v in j.up]}
        return cls(int(seed), tuple(round(v, 5) for v in light), lighting, tuple(round(float(v), 4) for v in tint) + (1.0,), colours, poses,
                   float(rng.uniform(*RGB_NOISE)), float(rng.uniform(*DEPTH_NOISE)))

    # --- the simulator ------------------------------------------------------------------------------
    def apply(self, sim) -> None:
        """Recolour the loaded scene's bodies and the table (after ``sim.load``)."""
        c = sim.client
        for name, rgba in self.colours.items():
            if name in sim.bodies:
                c.changeVisualShape(sim.bodies[name], -1, rgbaColor=list(rgba))
        c.changeVisualShape(sim.table, -1, rgbaColor=list(self.table_rgba))

    def restore(self, sim) -> None:
        """The scene's own colours again (what ``envs.sim`` built)."""
        c = sim.client
        for name, rgba in nominal_rgba(sim.scene).items():
            if name in sim.bodies:
                c.changeVisualShape(sim.bodies[name], -1, rgbaColor=list(rgba))
        c.changeVisualShape(sim.table, -1, rgbaColor=list(TABLE_RGBA))

    def spec(self, spec: SimCameraSpec) -> SimCameraSpec:
        """``spec`` moved as this variation moves it."""
        p = self.cameras_pose.get(spec.name)
        if p is None:
            return spec
        return replace(spec, eye=tuple(p["eye"]), target=tuple(p["target"]), up=tuple(p["up"]))

    def cameras(self, sim, specs: Mapping[str, SimCameraSpec], depth: bool = True) -> dict[str, SimCamera]:
        """``SimCamera``s rendering this variation (moved poses, light, noise; seeded)."""
        return {name: SimCamera(sim, self.spec(spec), depth=depth, light=self.light_direction, rgb_noise=self.rgb_noise,
                                depth_noise=self.depth_noise, seed=self.seed * 31 + k, lighting=self.lighting)
                for k, (name, spec) in enumerate(specs.items())}

    # --- records --------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        lt = self.lighting
        return {"seed": self.seed, "light_direction": list(self.light_direction),
                "lighting": {"color": list(lt.color), "ambient": lt.ambient, "diffuse": lt.diffuse, "specular": lt.specular, "distance": lt.distance},
                "table_rgba": list(self.table_rgba), "colours": {k: list(v) for k, v in self.colours.items()},
                "cameras": self.cameras_pose, "rgb_noise": self.rgb_noise, "depth_noise": self.depth_noise}

    @classmethod
    def from_dict(cls, d: dict) -> "RenderVariation":
        lt = d.get("lighting", {})
        lighting = Lighting(tuple(lt.get("color", (1.0, 1.0, 1.0))), float(lt.get("ambient", 0.6)), float(lt.get("diffuse", 0.35)),
                            float(lt.get("specular", 0.05)), float(lt.get("distance", 2.0)))
        return cls(int(d["seed"]), tuple(d.get("light_direction", DEFAULT_LIGHT)), lighting, tuple(d.get("table_rgba", TABLE_RGBA)),
                   {k: tuple(v) for k, v in d.get("colours", {}).items()}, dict(d.get("cameras", {})),
                   float(d.get("rgb_noise", 0.0)), float(d.get("depth_noise", 0.0)))
