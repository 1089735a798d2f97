"""Errors a user can act on. Each carries one line that says what is wrong and what to do."""


class DSparkError(Exception):
    """Base class of every error dspark_hf raises on purpose."""


class CheckpointError(DSparkError, ValueError):
    """A draft checkpoint cannot be loaded: bad path, missing keys or weights, pickle-only files."""


class CompatibilityError(DSparkError, ValueError):
    """The draft does not fit the target (hidden size, vocabulary, layer count or layer ids)."""


class UnsupportedUsageError(DSparkError, ValueError):
    """A generate() call this draft cannot serve (e.g. a batch of more than one sequence)."""


class TransformersVersionError(DSparkError, ImportError):
    """The installed transformers lacks the hooks dspark_hf needs."""


class ConfigValueError(CheckpointError):
    """A draft config holds a value of the wrong type or out of range. ``detail`` names the key, the
    value and what is allowed; ``source`` is where the config came from (its config.json, or
    ``DSparkConfig`` for one built in code)."""

    def __init__(self, detail: str, source: str = "DSparkConfig") -> None:
        super().__init__(detail, source)
        self.detail, self.source = detail, source

    def __str__(self) -> str:
        return f"{self.source}: {self.detail}"

    def at(self, source: str) -> "ConfigValueError":
        """The same problem, reported against ``source`` (e.g. the config.json it was read from)."""
        return ConfigValueError(self.detail, source)


class DataError(DSparkError, ValueError):
    """The training data cannot be read: a missing file, bad JSON, or a record of the wrong shape
    (reported as ``<file>:<line>: <what is wrong>``)."""
