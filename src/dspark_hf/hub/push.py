"""Upload a draft to the Hub: safetensors weights, config.json and a DSpark model card, in one commit.

transformers' stock ``push_to_hub`` writes a generic card; :func:`push_draft_to_hub` writes the card of
:mod:`dspark_hf.hub.cards` instead (with the measured figures passed in). It goes through
huggingface_hub (``create_repo`` + ``upload_folder``), so the user's token and ``HF_ENDPOINT`` apply.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi
from huggingface_hub import errors as hf_errors

from dspark_hf.hub.cards import render_draft_card
from dspark_hf.checkpoints.fetch_errors import HubError, RepoAccessError


def push_draft_to_hub(
    draft: Any,
    repo_id: str,
    *,
    figures: list | None = None,
    base_model: str | None = None,
    license: str = "apache-2.0",  # noqa: A002
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    card: str | None = None,
):
    """Create ``repo_id`` if needed and commit the draft's weights, config and model card.

    ``card``: README text to use as is; default: :func:`render_draft_card` with ``figures``,
    ``base_model`` (default: the draft config's ``target_name_or_path`` if set) and ``license``.
    Returns huggingface_hub's ``CommitInfo``.
    """
    api = HfApi(token=token)
    base_model = base_model or getattr(draft.config, "target_name_or_path", None)
    try:
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            draft.save_pretrained(folder)
            text = card if card is not None else render_draft_card(
                draft.config, repo_id=repo_id, base_model=base_model, figures=figures, license=license)
            (folder / "README.md").write_text(text)
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                revision=revision,
                commit_message=commit_message or "Upload DSpark draft",
                create_pr=create_pr,
            )
    except hf_errors.HfHubHTTPError as err:
        status = getattr(err.response, "status_code", None)
        if status in (401, 403):
            raise RepoAccessError(f"Not authorised to push to {repo_id} ({status}): log in with a write token "
                                  "(`hf auth login` or HF_TOKEN).") from None
        raise HubError(f"Pushing to {repo_id} failed: the Hub answered {status}.") from None
