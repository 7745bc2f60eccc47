"""Simulated tabletop world (pybullet), task suite and gymnasium registration.

Importing this package registers the gymnasium ids; pybullet is imported only by the
modules that build a simulation.
"""

from envs.registration import register_all as _register_all

_register_all()
