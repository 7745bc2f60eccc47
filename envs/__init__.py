"""Simulated tabletop world (pybullet), task suite and gymnasium registration.

Importing this package registers the gymnasium ids; pybullet is imported only by the
modules that build a simulation.
"""
