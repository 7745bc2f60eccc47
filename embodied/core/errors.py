"""Named errors raised on runtime paths. Each message says what to do."""


class EmbodiedError(Exception):
    """Base class for every error this project raises on purpose."""


class PlanSyntaxError(EmbodiedError, ValueError):
    """A plan step's text does not follow the plan grammar."""


class UnknownObjectError(EmbodiedError, KeyError):
    """A plan step names an object, container or location that is not in the scene."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class IllegalStepError(EmbodiedError, ValueError):
    """A step parses and names known things, but cannot be done (e.g. put a cube on itself)."""


class ObservationError(EmbodiedError, ValueError):
    """An observation has a wrong shape, dtype or missing field."""


class ConfigError(EmbodiedError, ValueError):
    """A configuration value is unknown or invalid."""


class ProtocolError(EmbodiedError, ValueError):
    """A bridge message is malformed (bad header, version, shape, size, ...). ``code`` names the problem."""

    def __init__(self, message: str, code: str = "bad_message"):
        super().__init__(message)
        self.code = code


class BridgeTimeoutError(EmbodiedError, TimeoutError):
    """No reply from the other end of the bridge within the timeout."""


class RemoteError(EmbodiedError, RuntimeError):
    """The inference server answered with an error reply. ``code`` is the server's error code."""

    def __init__(self, message: str, code: str = "error"):
        super().__init__(message)
        self.code = code


class EngineError(EmbodiedError, RuntimeError):
    """The inference engine cannot serve a request (too long for its cache, engine closed, ...)."""


class CameraError(EmbodiedError, RuntimeError):
    """A camera gave no frame: unplugged, end of a video file, a stream that stopped, a bad source."""


class CalibrationError(EmbodiedError, ValueError):
    """A calibration file is missing, malformed, or does not match the camera (e.g. its resolution)."""


class PerceptionError(EmbodiedError, RuntimeError):
    """Perception cannot say where something is (an object it does not see, frames it cannot read)."""


class TrainingDivergedError(EmbodiedError, RuntimeError):
    """Training produced non-finite losses or gradients too many steps in a row (or started from non-finite weights)."""
