"""Published DSpark drafts on the Hugging Face Hub: the registry (:mod:`.registry`), downloads with a fit
check (:mod:`.download`), model cards (:mod:`.cards`) and upload (:mod:`.push`). Files are fetched by
:mod:`dspark_hf.checkpoints.fetch`; drafts are loaded with ``DSparkDraft.from_pretrained`` or
:func:`dspark_hf.loading.load_draft` (which also applies the registry's recommended policy)."""

from dspark_hf.checkpoints.fetch import ResolvedDraft
from dspark_hf.checkpoints.fetch_errors import HubError, OfflineNotCachedError, RepoAccessError, RepoNotFoundError, RevisionNotFoundError
from dspark_hf.hub.download import resolve_draft
from dspark_hf.hub.registry import PUBLISHED_DRAFTS, PublishedDraft, lookup
from dspark_hf.models.deepseek_v4.checkpoint import load_v4_drafter_state_dict

__all__ = [
    "PUBLISHED_DRAFTS", "PublishedDraft", "lookup", "ResolvedDraft", "resolve_draft",
    "load_v4_drafter_state_dict", "HubError", "RepoNotFoundError", "RepoAccessError", "RevisionNotFoundError",
    "OfflineNotCachedError",
]
