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
