"""The transformers releases the speculative batch engine was tested on.

The engine subclasses transformers' continuous-batching processor and manager and reads a few of their
internals (request states, the packed forward's keyword arguments, the paged cache's block tables),
which change between releases; any other release is refused in one line.
"""

from __future__ import annotations

import transformers
from packaging.version import Version

from dspark_hf.errors import TransformersVersionError

TESTED_TRANSFORMERS = ">=5.24,<5.25"
_MIN, _MAX = Version("5.24"), Version("5.25")


def check_batching_transformers(version: str | None = None) -> None:
    """Raise :class:`TransformersVersionError` unless ``version`` (default: installed) is a tested release."""
    version = version or transformers.__version__
    release = Version(Version(version).base_version)
    if not (_MIN <= release < _MAX):
        raise TransformersVersionError(
            f"Batched DSpark (generate_batch / continuous batching / padded generate) is tested on transformers "
            f"{TESTED_TRANSFORMERS} only (found {version}); install it: pip install 'transformers{TESTED_TRANSFORMERS}'."
        )
