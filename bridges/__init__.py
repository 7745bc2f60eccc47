"""The ZeroMQ bridge between a robot and an inference server (see docs/protocol.md).

Modules: ``protocol`` (messages and validation), ``codec`` (arrays and JPEG frames),
``server`` (inference server), ``client`` (robot client), ``remote`` (RemotePlanner),
``robot`` (the robot interface the daemon drives), ``daemon`` (control loop), ``keys``
(CurveZMQ keys), ``bench`` (benchmark).

Every module here imports with only numpy, pyzmq and msgpack installed: opencv, the
simulator and the planner's own dependencies are imported only where they are used.
"""
