"""Published DSpark drafts on the Hugging Face Hub: registry, downloads, model cards, upload."""

from dspark_hf.checkpoints.fetch import ResolvedDraft, load_draft, load_v4_drafter_state_dict, resolve_draft
from dspark_hf.checkpoints.fetch_errors import HubError, OfflineNotCachedError, RepoAccessError, RepoNotFoundError, RevisionNotFoundError
from dspark_hf.hub.registry import PUBLISHED_DRAFTS, PublishedDraft, lookup

__all__ = [
    "PUBLISHED_DRAFTS", "PublishedDraft", "lookup", "ResolvedDraft", "resolve_draft", "load_draft",
    "load_v4_drafter_state_dict", "HubError", "RepoNotFoundError", "RepoAccessError", "RevisionNotFoundError",
    "OfflineNotCachedError",
]
