"""Model configuration (dataclasses; also the hydra schema for ``configs/model/*.yaml``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

from embodied.core.errors import ConfigError
from embodied.core.vocab import is_object_name


@dataclass
class LMConfig:
    """The decoder. From scratch: a Llama config; ``pretrained``: a local AutoModelForCausalLM dir."""

    hidden_size: int = 192
    layers: int = 3
    heads: int = 4
    kv_heads: int = 4
    intermediate_size: int = 512
    max_positions: int = 512
    pretrained: Optional[str] = None


@dataclass
class VisionConfig:
    """ViT-style encoder: a small conv stem, ``patch_size`` patches, transformer layers.

    Tokens per frame = (image_size // patch_size) ** 2. ``pretrained``: a local
    transformers vision model directory (ViT, CLIP vision, ...) used instead.
    """

    image_size: int = 128
    patch_size: int = 16
    stem_channels: int = 48
    width: int = 128
    depth: int = 2
    heads: int = 4
    pretrained: Optional[str] = None


@dataclass
class ModelConfig:
    name: str = "default"
    lm: LMConfig = field(default_factory=LMConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    state_size: int = 15
    state_tokens: int = 2
    state_hidden: int = 128
    vocab_size: int = 512  # BPE vocabulary size when the tokenizer is trained from scratch
    cameras: list[str] = field(default_factory=list)  # which frames to use, in order; empty = all, sorted
    # Write the robot's perception (Observation.detections: the objects and containers it sees) into the
    # prompt after the frames. Off for checkpoints saved before this option existed.
    prompt_objects: bool = False
    # Plans name an object by a reference token into the prompt's object list, then its name
    # (``<o2> purple triangle``; ``embodied.model.refs``); needs prompt_objects.
    object_refs: bool = False
    # Write where each listed object is (Observation.relations, a perception scene graph) after its name:
    # ``Objects: red cube on blue cube, blue cube on table, tray``; needs prompt_objects.
    prompt_relations: bool = False
    # The object names (``<colour> <shape>``) of the training data, written by ``embodied train``. The
    # planner renames any other perceived object to one of these of the same colour
    # (``embodied.model.aliases``). Empty: nothing is renamed.
    known_objects: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        d = dict(d)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys {unknown}; known: {sorted(known)}")
        try:
            lm = LMConfig(**d.pop("lm", {}))
            vision = VisionConfig(**d.pop("vision", {}))
        except TypeError as e:
            raise ConfigError(f"bad model config: {e}") from e
        return cls(lm=lm, vision=vision, **d)

    def check(self) -> "ModelConfig":
        v = self.vision
        if v.pretrained is None and (v.image_size % v.patch_size or v.patch_size % 4):
            raise ConfigError(
                f"vision.image_size ({v.image_size}) must be a multiple of vision.patch_size ({v.patch_size}), "
                "and patch_size a multiple of 4"
            )
        if self.lm.hidden_size % self.lm.heads or self.lm.heads % self.lm.kv_heads:
            raise ConfigError("lm.hidden_size must divide by lm.heads, and lm.heads by lm.kv_heads")
        if self.object_refs and not self.prompt_objects:
            raise ConfigError("object_refs needs prompt_objects: the references point into the prompt's object list")
        if self.prompt_relations and not self.prompt_objects:
            raise ConfigError("prompt_relations needs prompt_objects: the relations follow the names in the prompt's object list")
        if self.prompt_relations and self.object_refs:
            raise ConfigError("prompt_relations and object_refs cannot be combined yet; switch one of them off")
        bad = [n for n in self.known_objects if not isinstance(n, str) or not is_object_name(n)]
        if bad:
            raise ConfigError(f"known_objects: {bad[0]!r} is not an object name '<colour> <shape>' of embodied.core.vocab")
        if self.state_tokens < 1:
            raise ConfigError("state_tokens must be >= 1")
        return self
