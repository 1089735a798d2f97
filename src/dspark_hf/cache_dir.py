"""Where dspark_hf keeps what it makes on a machine (the converted bundled target, cost profiles, the
baseline pair): ``$DSPARK_HF_CACHE``, else ``$XDG_CACHE_HOME/dspark_hf``, else ``~/.cache/dspark_hf``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$DSPARK_HF_CACHE``, else ``$XDG_CACHE_HOME/dspark_hf``, else ``~/.cache/dspark_hf``."""
    if os.environ.get("DSPARK_HF_CACHE"):
        return Path(os.environ["DSPARK_HF_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dspark_hf"
