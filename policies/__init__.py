"""Low-level controllers (skills through an arm interface) and planners.

Keep this file thin: import what you need from the submodules
(``embodied.core.skills``, ``policies.oracle``, ``policies.baselines``).
"""
