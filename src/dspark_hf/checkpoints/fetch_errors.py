"""One-line errors for everything that can go wrong between a Hub id and a loadable draft folder.

"Not a draft" is a :class:`~dspark_hf.errors.CheckpointError` and "does not fit the target" a
:class:`~dspark_hf.errors.CompatibilityError`; the rest are :class:`HubError` subclasses.
"""

from __future__ import annotations

from dspark_hf.errors import DSparkError


class HubError(DSparkError, OSError):
    """The Hub (or the local Hub cache) could not provide the requested draft files."""


class RepoNotFoundError(HubError):
    """404: no such repo (or a private one the token cannot see)."""


class RepoAccessError(HubError):
    """401 / 403: the repo is gated or the token is missing or lacks the right."""


class RevisionNotFoundError(HubError):
    """The repo exists but has no such branch, tag or commit."""


class OfflineNotCachedError(HubError):
    """No network (or ``HF_HUB_OFFLINE=1``) and the files are not in the Hub cache."""
