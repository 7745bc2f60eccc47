"""Perception from pixels: cameras, calibration, the tabletop detector and its scene graph.

A part of its own: numpy and opencv only (no torch, no pybullet), so that it runs on the
robot computer. Import the submodules directly.
"""
