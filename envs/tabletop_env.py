"""The gymnasium environment: one task family in the simulated tabletop.

An action is the text of one plan step (``"put red cube in tray"``); the env parses and
validates it, runs it through the ``SkillController`` on the simulated Panda, lets the
objects settle and checks the task's success predicate.

- A step that does not parse or names something not in the scene is *not* an exception:
  ``info["error"]`` holds the named error's message, reward is 0 and the step counts.
- ``terminated`` on success, on a ``done`` step, or on failure (an object left the
  table / workspace: ``info["failure"]``); ``truncated`` at ``episode.max_steps``.
- reward 1.0 on the step that reaches success, else 0.

Perception (``perception=``): ``None`` or ``"ground_truth"`` (the reference) takes the
detections, the scene graph and the poses the skill controller uses from the simulator;
a ``Perception`` object (``embodied.perception.tabletop.TabletopPerception()``, handed in by
the caller: ``perception=camera`` on the command line) takes all three from the perception
cameras only (``envs.perceived``), re-perceived after every motion. Success and failure are
always judged on the simulator's ground truth. ``randomize=True`` draws a seeded
``envs.variation.RenderVariation`` per episode (light, table tint, colours jittered within
their names, perception cameras moved about 1 cm / 1 degree, RGB and depth noise), recorded
in ``env.variation``. ``perception_cameras`` / ``calibrations``
choose the cameras it sees through and what it is told about them.

Wording (``phrasing=``): ``"templates"`` (the task templates), ``"train"`` or ``"dev"``: the
instruction reworded from the episode's goal (``envs.tasks.phrasing``); the scene is the same.

Observation dict: ``image`` (H, W, 3) uint8 front camera, ``state`` (15,) float32 (layout in
``embodied.core.observation``), ``instruction`` text, plus ``depth`` (H, W) float32 metres,
``wrist_image`` / ``wrist_depth`` when enabled. ``grasp_assist=True`` attaches a pinched
object to the hand while it is held (default: friction only); see ``envs.panda``. ``env.unwrapped.observation()`` gives the
full ``embodied.core.observation.Observation`` (frames, history, detections, privileged).
"""

from __future__ import annotations

import string
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from embodied.core.errors import ConfigError, EmbodiedError
from embodied.core.observation import STATE_SIZE, Observation
from embodied.core.plan import parse_step, validate_step
from embodied.core.skills import SkillController
from embodied.core.world import WorldState
from envs.cameras import SPECS
from envs.levels import check as check_level
from envs.levels import stable_seed
from envs.perceived import PerceivedTable
from envs.sim import FRONT_CAMERA, TabletopSim
from envs.tasks import Episode, Task, get_task, make_privileged
from envs.tasks.phrasing import check_wording, reword
from envs.variation import RenderVariation

INSTRUCTION_CHARSET = string.ascii_letters + string.digits + " .,;:'\"!?-()/&"
ACTION_CHARSET = string.ascii_lowercase + " "
MAX_INSTRUCTION = 256
MAX_ACTION = 96
STATE_BOUND = 4.0  # |state| entries: joint angles (rad), metres, quaternion; all well inside


class TabletopEnv(gym.Env):
    """Tabletop manipulation with plan-step actions. See the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(
        self,
        task: str | Task,
        level: str = "L1",
        split: str = "test",
        image_size: int = 128,
        depth: bool = False,
        wrist_camera: bool = False,
        privileged: bool = False,
        render_mode: str | None = None,
        grasp_assist: bool = False,
        perception: Any = None,
        perception_cameras: Any = None,
        calibrations: Any = None,
        phrasing: str = "templates",
        randomize: bool = False,
    ):
        self.task = get_task(task) if isinstance(task, str) else task
        check_level(level, split)
        self.phrasing = check_wording(phrasing)
        if not isinstance(randomize, bool):
            raise ConfigError(f"randomize={randomize!r}: expected true or false")
        self.randomize = randomize
        self.variation: RenderVariation | None = None  # this episode's randomised rendering (JSON: variation.to_dict())
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"render_mode {render_mode!r} is not supported; use 'rgb_array' or None")
        self.level, self.split = level, split
        self.privileged = privileged
        self.render_mode = render_mode
        s = image_size
        obs = {
            "image": spaces.Box(0, 255, (s, s, 3), np.uint8),
            "state": spaces.Box(-STATE_BOUND, STATE_BOUND, (STATE_SIZE,), np.float32),
            "instruction": spaces.Text(MAX_INSTRUCTION, min_length=0, charset=INSTRUCTION_CHARSET),
        }
        if depth:
            obs["depth"] = spaces.Box(0.0, FRONT_CAMERA.far, (s, s), np.float32)
        if wrist_camera:
            obs["wrist_image"] = spaces.Box(0, 255, (s, s, 3), np.uint8)
            if depth:
                obs["wrist_depth"] = spaces.Box(0.0, 1.5, (s, s), np.float32)
        self.observation_space = spaces.Dict(obs)
        self.action_space = spaces.Text(MAX_ACTION, min_length=1, charset=ACTION_CHARSET)
        self.sim = TabletopSim(image_size=image_size, depth=depth, wrist_camera=wrist_camera, grasp_assist=grasp_assist)
        self.perceived = self._perceived(perception, perception_cameras, calibrations)
        self.episode: Episode | None = None
        self.controller: SkillController | None = None
        self.history: list[str] = []
        self._steps = 0
        self._seq = 0

    # --- gymnasium API ------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        level = options.get("level", self.level)
        split = options.get("split", self.split)
        check_level(level, split)
        episode_seed = int(seed) if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
        self.episode = self.task.sample(episode_seed, level, split)
        if self.phrasing != "templates":  # same scene, the instruction reworded from the goal
            self.episode.instruction = reword(self.episode, self.phrasing)
        self.sim.load(self.episode.scene)
        scene = self.episode.scene
        self.variation = None
        if self.randomize:  # seeded by the episode: the same episode renders the same way
            specs = self.perceived.specs if self.perceived is not None else SPECS
            self.variation = RenderVariation.sample(stable_seed("render", self.episode.family, level, split, episode_seed),
                                                    scene, specs)
            self.variation.apply(self.sim)
        if self.perceived is None:
            self.controller = SkillController(self.sim.arm, self.sim.pose, scene.objects, scene.containers)
        else:
            if self.variation is not None:  # perception keeps the nominal calibration, as a real robot's would
                self.perceived.use_cameras(self.variation.cameras(self.sim, self.perceived.specs))
            self.perceived.forget()
            self.controller = None  # built from what perception sees, before each step
        self.history = []
        self._steps = 0
        self._seq = 0
        return self._gym_obs(), self._info()

    def step(self, action: str):
        if self.episode is None:
            raise gym.error.ResetNeeded("call env.reset() before env.step()")
        self._steps += 1
        self._seq += 1
        info = self._info()
        scene = self.episode.scene
        names = (scene.object_names, scene.container_names)
        if self.perceived is not None:  # what the robot can act on: what it perceives now
            seen = self.perceived.scene()
            self.controller = SkillController(self.sim.arm, self.perceived.locate, seen.object_specs(), seen.container_specs())
            names = ([o.name for o in seen.object_specs()], [c.name for c in seen.container_specs()])
        try:
            step = parse_step(action)
            validate_step(step, *names)
        except EmbodiedError as err:
            info["error"] = str(err)
            info["error_type"] = type(err).__name__
            return self._gym_obs(), 0.0, False, self._steps >= self.episode.max_steps, info
        self.history.append(step.text)
        if step.is_done:
            info["skill_success"] = True
        else:
            result = self.controller.execute(step)
            info["skill_success"] = result.success
            info["skill_reason"] = result.reason
            self.sim.settle()
        world = self.sim.world_state()
        success = bool(self.task.success(self.episode, world))
        off = world.off_table()
        info["success"] = success
        if off:
            info["failure"] = f"{', '.join(off)} left the table or the workspace"
        terminated = success or step.is_done or bool(off)
        truncated = not terminated and self._steps >= self.episode.max_steps
        return self._gym_obs(), 1.0 if success else 0.0, terminated, truncated, info

    def render(self):
        if self.render_mode == "rgb_array":
            return self.sim.frames()["front"].copy()
        return None

    def close(self):
        if getattr(self, "sim", None) is not None:
            self.sim.close()
            self.sim = None

    # --- richer views ---------------------------------------------------------------------
    def world_state(self) -> WorldState:
        return self.sim.world_state()

    def observation(self) -> Observation:
        """The full observation a planner sees (frames, state, history, detections, ...)."""
        if self.episode is None:
            raise gym.error.ResetNeeded("call env.reset() before env.observation()")
        f = self.sim.frames()
        frames = {"front": f["front"].copy()}
        depth = {}
        if "wrist" in f:
            frames["wrist"] = f["wrist"].copy()
        if "front_depth" in f:
            depth["front"] = f["front_depth"].copy()
        if "wrist_depth" in f:
            depth["wrist"] = f["wrist_depth"].copy()
        world = self.sim.world_state()
        if self.perceived is None:
            detections, relations = list(f["detections"]), self._relations(f["detections"], world)
        else:
            seen = self.perceived.scene()
            detections = seen.detections
            relations = {k: v for k, v in seen.relations.items() if k in detections}
        return Observation(
            frames=frames,
            state=self._state(),
            instruction=self.episode.instruction,
            history=list(self.history),
            depth=depth,
            detections=detections,
            relations=relations,
            seq=self._seq,
            privileged=make_privileged(self.episode, world) if self.privileged else None,
        )

    # --- internals ------------------------------------------------------------------------
    def _perceived(self, perception, cameras, calibrations) -> PerceivedTable | None:
        if perception is None or perception == "ground_truth":
            return None
        if isinstance(perception, str) or not callable(getattr(perception, "perceive", None)):
            raise ConfigError(
                f"perception={perception!r}: use None / 'ground_truth', or hand in a Perception object, "
                "e.g. TabletopEnv(..., perception=embodied.perception.tabletop.TabletopPerception())"
            )
        return PerceivedTable(self.sim, perception, cameras, calibrations)

    @staticmethod
    def _relations(detections, world) -> dict[str, str]:
        """Scene graph of the detected objects (containers have none), from the simulator's poses."""
        out = {}
        for name in detections:
            if name in world.positions:
                rel = world.relation(name)
                if rel:
                    out[name] = rel
        return out

    def _state(self) -> np.ndarray:
        st = self.sim.arm.state()
        v = np.concatenate([
            st.joint_positions, [st.gripper_width], st.ee_pose.position, st.ee_pose.orientation,
        ]).astype(np.float32)  # (STATE_SIZE,)
        return np.clip(v, -STATE_BOUND, STATE_BOUND)

    def _gym_obs(self) -> dict:
        f = self.sim.frames()
        obs = {"image": f["front"].copy(), "state": self._state(), "instruction": self.episode.instruction}
        if "front_depth" in f:
            obs["depth"] = np.clip(f["front_depth"], 0.0, FRONT_CAMERA.far)
        if "wrist" in f:
            obs["wrist_image"] = f["wrist"].copy()
            if "wrist_depth" in f:
                obs["wrist_depth"] = np.clip(f["wrist_depth"], 0.0, 1.5)
        return obs

    def _info(self) -> dict:
        return {
            "success": False, "skill_success": False, "skill_reason": "", "failure": "", "error": "", "error_type": "",
            "family": self.episode.family, "level": self.episode.level, "seed": self.episode.seed,
            "steps": self._steps,
        }


