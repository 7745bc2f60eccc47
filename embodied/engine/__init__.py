"""Streaming inference engine. Import submodules directly (they import torch): ``embodied.engine.core``."""
