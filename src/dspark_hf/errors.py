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
