"""Low-level controllers (skills through an arm interface) and planners.

Keep this file thin: import what you need from the submodules
(``policies.controller``, ``policies.oracle``, ``policies.baselines``).
"""
