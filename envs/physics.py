"""Physics variation for the simulated tabletop: heavier and slipperier objects, seeded and recordable.

A ``PhysicsVariation`` says from which ranges each object's mass (kg) and lateral friction are
drawn, and the Panda's finger-pad friction. ``TabletopSim(physics=...)`` (or ``sim.physics =``
before ``load``) applies it to every scene it builds: the values are drawn from a generator
seeded by ``(variation.seed, the scene's content)``, so the same scene always gets the same
physics (and the same frames), and different scenes get different draws. An object whose
``ObjectSpec`` already sets a mass or friction other than the defaults keeps its own.
``TabletopSim.physics_record()`` is the JSON-able record of what was used.

Presets (``physics_variation("heavy")`` and so on; ``"default"`` is today's physics):

=================  ============  ==============  ===============
preset             mass (kg)     friction        finger friction
=================  ============  ==============  ===============
default            0.08          1.0             1.5
heavy              0.5 - 2.0     1.0             1.5
slippery           0.08          0.3 - 0.6       1.0
heavy_slippery     0.5 - 2.0     0.4 - 0.7       1.0
=================  ============  ==============  ===============

Bullet multiplies the two frictions at a contact: an object of friction 0.4 between finger pads
of 1.0 is pinched with 0.4, against 1.5 for today's objects.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, replace

import numpy as np

from embodied.core.errors import ConfigError
from embodied.core.world import OBJECT_FRICTION, OBJECT_MASS, SceneSpec

FINGER_FRICTION = 1.5  # the Panda's finger pads in ``envs.panda`` by default


@dataclass(frozen=True)
class PhysicsVariation:
    """Ranges (low, high) for per-object mass (kg) and lateral friction, drawn uniformly per scene."""

    mass: tuple[float, float] = (OBJECT_MASS, OBJECT_MASS)
    friction: tuple[float, float] = (OBJECT_FRICTION, OBJECT_FRICTION)
    finger_friction: float = FINGER_FRICTION
    seed: int = 0
    name: str = "custom"

    def __post_init__(self):
        for what, (lo, hi) in (("mass", self.mass), ("friction", self.friction)):
            if not (0 < lo <= hi):
                raise ConfigError(f"physics variation {what} must be a range 0 < low <= high, got {(lo, hi)}")
        if not 0 < self.mass[1] <= 20:
            raise ConfigError(f"physics variation mass above 20 kg is beyond the Panda: {self.mass}")
        if self.finger_friction <= 0:
            raise ConfigError(f"finger_friction must be positive, got {self.finger_friction}")

    def draw(self, scene: SceneSpec) -> dict[str, tuple[float, float]]:
        """Mass and friction for each object of ``scene``: seeded by ``seed`` and the scene's content."""
        key = zlib.crc32(json.dumps(scene.to_dict(), sort_keys=True).encode())
        rng = np.random.default_rng([int(self.seed) & 0xFFFFFFFF, key])
        out = {}
        for o in scene.objects:
            m = float(rng.uniform(*self.mass))
            f = float(rng.uniform(*self.friction))
            out[o.name] = (o.mass if o.mass != OBJECT_MASS else m, o.friction if o.friction != OBJECT_FRICTION else f)
        return out

    def apply(self, scene: SceneSpec) -> SceneSpec:
        """``scene`` with every object's mass and friction set (see ``draw``); placements shared."""
        drawn = self.draw(scene)
        objects = [replace(o, mass=round(drawn[o.name][0], 4), friction=round(drawn[o.name][1], 4)) for o in scene.objects]
        return SceneSpec(objects, scene.placements, list(scene.containers))

    def with_seed(self, seed: int) -> "PhysicsVariation":
        return replace(self, seed=int(seed))

    def to_dict(self) -> dict:
        return {"name": self.name, "mass": list(self.mass), "friction": list(self.friction),
                "finger_friction": self.finger_friction, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict) -> "PhysicsVariation":
        if not isinstance(d, dict):
            raise ConfigError(f"a physics variation must be a dict (from to_dict()) or a preset name, got {type(d).__name__}")
        unknown = set(d) - {"name", "mass", "friction", "finger_friction", "seed"}
        if unknown:
            raise ConfigError(f"physics variation has unknown keys {sorted(unknown)}; known: name, mass, friction, finger_friction, seed")
        base = PRESETS.get(str(d.get("name", "")), PhysicsVariation())
        return cls(mass=tuple(float(v) for v in d.get("mass", base.mass)),
                   friction=tuple(float(v) for v in d.get("friction", base.friction)),
                   finger_friction=float(d.get("finger_friction", base.finger_friction)),
                   seed=int(d.get("seed", 0)), name=str(d.get("name", "custom")))


PRESETS: dict[str, PhysicsVariation] = {
    "default": PhysicsVariation(name="default"),
    "heavy": PhysicsVariation(mass=(0.5, 2.0), name="heavy"),
    "slippery": PhysicsVariation(friction=(0.3, 0.6), finger_friction=1.0, name="slippery"),
    "heavy_slippery": PhysicsVariation(mass=(0.5, 2.0), friction=(0.4, 0.7), finger_friction=1.0, name="heavy_slippery"),
}


def physics_variation(spec, seed: int | None = None) -> PhysicsVariation | None:
    """A ``PhysicsVariation`` from a preset name, a dict (``to_dict()``), a variation, or None.

    ``seed`` (optional) replaces the variation's seed.
    """
    if spec is None:
        return None
    if isinstance(spec, PhysicsVariation):
        v = spec
    elif isinstance(spec, str):
        if spec not in PRESETS:
            raise ConfigError(f"unknown physics preset {spec!r}; presets: {', '.join(PRESETS)}")
        v = PRESETS[spec]
    else:
        v = PhysicsVariation.from_dict(spec)
    return v if seed is None else v.with_seed(seed)
