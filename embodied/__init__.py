"""embodied: a runtime for embodied robot agents (PaLM-E-style planner, tabletop sim, bridge).

Keep this file thin: heavy imports (torch, transformers, pybullet) live in the modules
that need them.
"""

__version__ = "0.1.0"
