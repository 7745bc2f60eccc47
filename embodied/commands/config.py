"""Configuration of the commands: compose ``configs/<name>.yaml`` with hydra, validate it
against a dataclass schema, and describe a config's keys for ``--help``.

Every command validates all of its settings here, before it touches its output folder.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from embodied.core.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def compose(config_name: str, overrides: list[str]):
    """Compose ``configs/<config_name>.yaml`` with overrides; unknown keys -> ConfigError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import ConfigCompositionException, MissingConfigException
    from omegaconf import OmegaConf

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"arguments must be key=value, got {bad[0]!r} (embodied <command> --help lists the keys)")
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            cfg = hydra_compose(config_name=config_name, overrides=overrides)
    except MissingConfigException as e:
        raise ConfigError(f"no config {config_name!r} in {CONFIG_DIR}") from e
    except ConfigCompositionException as e:
        known = sorted(OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / f"{config_name}.yaml"), resolve=False))
        msg = str(e.__cause__ or e)
        key = next((o.split("=", 1)[0].lstrip("+~") for o in overrides if o.split("=", 1)[0].lstrip("+~") not in known), None)
        hint = ""
        if key is not None:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        raise ConfigError(f"bad override for {config_name!r}: {msg}{hint}. Known keys: {', '.join(known)}") from e
    return cfg


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


def plain(cfg) -> dict:
    """A composed config (DictConfig or dict) as a plain dict."""
    if isinstance(cfg, dict):
        return cfg
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def flag(value, key: str) -> bool:
    """A true/false option; anything else (``object_aliases=maybe``) is a named error, not a silent True."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(f"{key}={value!r}: expected true or false")


def positive_int(value, key: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(value).strip() != str(n):
        raise ConfigError(f"{key}={value!r}: expected a positive integer")
    return n


def one_of(value, choices, key: str):
    if value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        noun = {"tasks": "task"}.get(key, key)
        raise ConfigError(f"unknown {noun} {value!r}; choose one of {', '.join(map(str, choices))}"
                          + (f" (did you mean {close[0]!r}?)" if close else ""))
    return value


_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w]*):(?P<value>[^#]*)(?:#\s?(?P<comment>.*))?$")


def describe(config_name: str) -> str:
    """The keys of ``configs/<config_name>.yaml`` with their defaults and comments, for ``--help``."""
    path = CONFIG_DIR / f"{config_name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no config {config_name!r} in {CONFIG_DIR}")
    head, rows, parents = [], [], []
    in_defaults = False
    for raw in path.read_text().splitlines():
        if not raw.strip():
            continue
        if raw.lstrip().startswith("#"):
            if not rows:
                head.append(raw.lstrip("# ").rstrip())
            continue
        if raw.lstrip().startswith("- "):
            if in_defaults and "_self_" not in raw:
                group, _, option = raw.strip()[2:].partition(":")
                rows.append((f"{group.strip()}", option.strip(), f"config group: configs/{group.strip()}/<name>.yaml"))
            continue
        m = _LINE.match(raw)
        if not m:
            continue
        depth = len(m["indent"]) // 2
        parents = parents[:depth]
        key, value, comment = m["key"], m["value"].strip(), (m["comment"] or "").strip()
        in_defaults = depth == 0 and key == "defaults"
        if in_defaults:
            continue
        if not value:  # a section: its keys follow, indented
            parents.append(key)
            if comment:
                rows.append((".".join(parents), "", comment))
            continue
        rows.append((".".join(parents + [key]), value, comment))
    width = max((len(k) + len(v) for k, v, _ in rows), default=0) + 2
    lines = head + ["", "keys (override as key=value):"]
    for key, value, comment in rows:
        left = f"{key}={value}" if value else f"{key}.*"
        lines.append(f"  {left:<{width}} {('# ' + comment) if comment else ''}".rstrip())
    return "\n".join(lines)
