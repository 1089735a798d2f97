"""Published DSpark drafts on the Hugging Face Hub: registry, downloads, model cards, upload."""

from .download import ResolvedDraft, load_draft, load_v4_drafter_state_dict, resolve_draft
from .errors import HubError, OfflineNotCachedError, RepoAccessError, RepoNotFoundError, RevisionNotFoundError
from .registry import PUBLISHED_DRAFTS, PublishedDraft, lookup

__all__ = [
    "PUBLISHED_DRAFTS", "PublishedDraft", "lookup", "ResolvedDraft", "resolve_draft", "load_draft",
    "load_v4_drafter_state_dict", "HubError", "RepoNotFoundError", "RepoAccessError", "RevisionNotFoundError",
    "OfflineNotCachedError",
]
