"""The PaLM-E-style planner model: ``PalmE``, its config and its multimodal prompt.

Thin on purpose: names are imported lazily, so ``import embodied.model`` does not import torch.
"""

from __future__ import annotations

_EXPORTS = {
    "PalmE": "embodied.model.palme",
    "PalmEOutput": "embodied.model.palme",
    "ModelConfig": "embodied.model.config",
    "LMConfig": "embodied.model.config",
    "VisionConfig": "embodied.model.config",
    "MultimodalPrompt": "embodied.model.prompt",
    "TextSegment": "embodied.model.prompt",
    "ImageSegment": "embodied.model.prompt",
    "StateSegment": "embodied.model.prompt",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'embodied.model' has no attribute {name!r}")
