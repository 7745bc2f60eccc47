"""The ``embodied`` command: ``embodied <command> [key=value ...]``.

Each command composes ``configs/<command>.yaml`` with hydra's compose API, applies the
``key=value`` overrides, and calls the command's ``main(cfg)``. Commands are imported
lazily so that ``embodied daemon`` on a robot never imports torch.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from pathlib import Path

from embodied.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# command -> (config name, "module:function")
COMMANDS: dict[str, tuple[str, str]] = {
    "rollout": ("rollout", "embodied.evaluation:rollout_main"),
    "eval": ("eval", "embodied.evaluation:eval_main"),
    "datagen": ("datagen", "embodied.data.datagen:main"),
    "train": ("train", "embodied.train:main"),
    "serve": ("serve", "bridges.server:main"),
    "daemon": ("daemon", "bridges.daemon:main"),
    "keygen": ("keygen", "bridges.keys:main"),
    "bench engine": ("bench_engine", "embodied.engine.bench:main"),
    "bench bridge": ("bench_bridge", "bridges.bench:main"),
}

USAGE = """usage: embodied <command> [key=value ...]

commands:
  rollout   one episode, optional mp4:  embodied rollout planner=oracle task=stack level=L1 seed=0 video=true
  eval      success rates over the task suite:  embodied eval planner=model level=L1 episodes=50 workers=2 out=runs/eval
  compare   paired comparison of two eval dirs:  embodied compare runs/a runs/b
  datagen   oracle demonstrations as Parquet:  embodied datagen level=L1 episodes=500 out=data/l1 workers=2
  train     train the PaLM-E-style planner:  embodied train data=data/l1 out=runs/model
  serve     inference server over ZeroMQ:  embodied serve planner=model bind=tcp://*:5555
  daemon    robot control loop:  embodied daemon robot=sim server=tcp://127.0.0.1:5555
  keygen    CurveZMQ key pairs:  embodied keygen out=keys
  bench     benchmarks:  embodied bench engine|bridge [key=value ...]

Configs live in configs/<command>.yaml; any key can be overridden as key=value.
"""


def compose(config_name: str, overrides: list[str]):
    """Compose ``configs/<config_name>.yaml`` with overrides; unknown keys -> ConfigError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import ConfigCompositionException, MissingConfigException
    from omegaconf import OmegaConf

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"arguments must be key=value, got {bad[0]!r}")
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            cfg = hydra_compose(config_name=config_name, overrides=overrides)
    except MissingConfigException as e:
        raise ConfigError(f"no config {config_name!r} in {CONFIG_DIR}") from e
    except ConfigCompositionException as e:
        known = sorted(OmegaConf.to_container(_plain(config_name), resolve=False).keys())
        msg = str(e.__cause__ or e)
        key = next((o.split("=", 1)[0].lstrip("+~") for o in overrides if o.split("=", 1)[0].lstrip("+~") not in known), None)
        hint = ""
        if key is not None:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        raise ConfigError(f"bad override for {config_name!r}: {msg}{hint}. Known keys: {', '.join(known)}") from e
    return cfg


def _plain(config_name: str):
    from omegaconf import OmegaConf

    return OmegaConf.load(CONFIG_DIR / f"{config_name}.yaml")


def validated(cfg, schema):
    """Merge ``cfg`` into a dataclass ``schema``: wrong types or unknown keys -> ConfigError."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        fields = ", ".join(schema.__dataclass_fields__)
        raise ConfigError(f"invalid config for {schema.__name__}: {e.msg if hasattr(e, 'msg') else e}. Fields: {fields}") from e


def _resolve(argv: list[str]) -> tuple[str, list[str]]:
    if len(argv) >= 2 and f"{argv[0]} {argv[1]}" in COMMANDS:
        return f"{argv[0]} {argv[1]}", argv[2:]
    if argv[0] == "bench":
        raise ConfigError("usage: embodied bench engine|bridge [key=value ...]")
    if argv[0] in COMMANDS:
        return argv[0], argv[1:]
    close = difflib.get_close_matches(argv[0], [c.split()[0] for c in COMMANDS] + ["compare"], n=1)
    raise ConfigError(f"unknown command {argv[0]!r}" + (f" (did you mean {close[0]!r}?)" if close else "") + "\n" + USAGE)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    try:
        if argv[0] == "compare":
            from embodied.evaluation import compare_main

            return compare_main(argv[1:]) or 0
        command, overrides = _resolve(argv)
        config_name, target = COMMANDS[command]
        cfg = compose(config_name, overrides)
        module_name, func = target.split(":")
        result = getattr(importlib.import_module(module_name), func)(cfg)
        return int(result) if isinstance(result, int) else 0
    except ConfigError as e:
        print(f"embodied: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
