"""The one place that fetches from the Hugging Face Hub: a draft's Hub id to a local folder holding
just the files the draft needs (no model is built here).

Everything goes through :func:`huggingface_hub.hf_hub_download`, so the user's normal Hub setup applies
unchanged: token (``HF_TOKEN`` / ``hf auth login``), cache (``HF_HUB_CACHE`` / ``HF_HOME`` /
``cache_dir=``), endpoint (``HF_ENDPOINT``), ``revision=`` and ``HF_HUB_OFFLINE=1``.

Files fetched, in order (the config first, so a repo that is not a draft or a draft that does not fit
the target fails before any weight is downloaded):

- DSpark / DFlash drafts (released layout or saved by this library): ``config.json``, then
  ``model.safetensors`` or ``model.safetensors.index.json`` and its shards. Nothing else (no README,
  no pickles, no tokenizer: drafts use their target's).
- DeepSeek-V4 repos (``model_type: deepseek_v4``; the drafter is the ``mtp.*`` tensors of the whole
  target): ``config.json``, ``model.safetensors.index.json``, and ONLY the shards that hold ``mtp.*``.

Every failure becomes one line: :mod:`dspark_hf.checkpoints.fetch_errors`, ``CheckpointError`` (not a
draft), or whatever the caller's ``check_config`` raises (e.g. a draft that does not fit the target),
before any weight is downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download
from huggingface_hub import errors as hf_errors

from dspark_hf.checkpoints import fetch_errors as errors
from dspark_hf.checkpoints.files import CONFIG_NAME, SINGLE_WEIGHTS, WEIGHTS_INDEX, check_local_folder, is_local_path, load_config_json
from dspark_hf.checkpoints.formats import DEEPSEEK_V4, V4_DRAFTER_PREFIX, checkpoint_format, describe
from dspark_hf.errors import CheckpointError


# from_pretrained keywords that go to the Hub client.
HUB_KEYWORDS = ("revision", "token", "cache_dir", "local_files_only", "force_download")


@dataclass(frozen=True)
class HubSettings:
    """What the caller passes through to huggingface_hub (None: the user's normal setting)."""

    revision: str | None = None
    token: str | bool | None = None
    cache_dir: str | os.PathLike | None = None
    local_files_only: bool = False
    force_download: bool = False

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> "HubSettings":
        return cls(**{k: kwargs[k] for k in HUB_KEYWORDS if k in kwargs})


@dataclass(frozen=True)
class ResolvedDraft:
    """A draft (or V4 drafter) brought into the local Hub cache.

    ``folder``: the snapshot folder (``<cache>/models--owner--name/snapshots/<commit>``) holding the
    fetched files; a DSpark/DFlash folder loads with ``DSparkDraft.from_pretrained(folder)``.
    ``kind``: the format (:mod:`dspark_hf.checkpoints.formats`): ``"dspark"``, ``"released"`` or ``"deepseek_v4"``. ``files``: repo paths fetched. ``commit``: the commit.
    """

    repo_id: str
    folder: Path
    commit: str
    kind: str
    files: tuple[str, ...]
    config: dict[str, Any]


def _where(repo_id: str, revision: str | None) -> str:
    return repo_id if revision in (None, "main") else f"{repo_id}@{revision}"


def _translate(err: Exception, repo_id: str, filename: str, settings: HubSettings) -> Exception:
    """The one-line DSpark error for a huggingface_hub failure."""
    cause = err.__cause__ or err.__context__
    if isinstance(err, hf_errors.LocalEntryNotFoundError) and isinstance(cause, hf_errors.HfHubHTTPError):
        # The client reached the Hub, was refused (e.g. 403), then looked in the cache: report the refusal.
        return _translate(cause, repo_id, filename, settings)
    where = _where(repo_id, settings.revision)
    endpoint = hf_constants.ENDPOINT
    if isinstance(err, hf_errors.GatedRepoError):
        return errors.RepoAccessError(
            f"{where} is gated on {endpoint}: accept its terms on the repo page, then log in (`hf auth login` or HF_TOKEN)."
        )
    if isinstance(err, hf_errors.RevisionNotFoundError):
        return errors.RevisionNotFoundError(f"{repo_id} has no revision {settings.revision!r} on {endpoint} (branch, tag or commit).")
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, hf_errors.RepositoryNotFoundError) and status not in (401, 403):
        return errors.RepoNotFoundError(
            f"No repo {repo_id} on {endpoint} (404): check the id; if it is private, log in (`hf auth login` or HF_TOKEN)."
        )
    if status in (401, 403) or isinstance(err, hf_errors.RepositoryNotFoundError):
        return errors.RepoAccessError(
            f"Not authorised to read {where} on {endpoint} ({status}): log in with a token that can read it "
            "(`hf auth login` or HF_TOKEN)."
        )
    if isinstance(err, hf_errors.LocalEntryNotFoundError):
        why = "HF_HUB_OFFLINE=1 is set" if hf_constants.is_offline_mode() else (
            "local_files_only=True" if settings.local_files_only else f"{endpoint} cannot be reached")
        return errors.OfflineNotCachedError(
            f"{why} and {filename} of {where} is not in the Hub cache ({settings.cache_dir or hf_constants.HF_HUB_CACHE}): "
            "download it once online (`dspark hub download " + repo_id + "`)."
        )
    if isinstance(err, hf_errors.RemoteEntryNotFoundError):
        return CheckpointError(f"{where} has no {filename}: it is not a DSpark draft repo.")
    if isinstance(err, hf_errors.HfHubHTTPError):
        return errors.HubError(f"The Hub answered {status} for {filename} of {where} on {endpoint}.")
    return errors.HubError(f"Cannot fetch {filename} of {where} from {endpoint}: {type(err).__name__}: {err}".splitlines()[0])


def fetch_file(repo_id: str, filename: str, settings: HubSettings) -> Path:
    """One file of ``repo_id`` through huggingface_hub's cache; failures as one-line DSpark errors."""
    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=settings.revision,
                token=settings.token,
                cache_dir=settings.cache_dir,
                local_files_only=settings.local_files_only,
                force_download=settings.force_download,
            )
        )
    except (hf_errors.HfHubHTTPError, hf_errors.EntryNotFoundError, hf_errors.HFValidationError, OSError, ValueError) as err:
        if isinstance(err, hf_errors.HFValidationError):
            raise errors.RepoNotFoundError(f"{repo_id!r} is not a valid Hub repo id (owner/name).") from None
        raise _translate(err, repo_id, filename, settings) from None


def _missing_ok(repo_id: str, filename: str, settings: HubSettings) -> Path | None:
    """Like :func:`fetch_file`, but None when the repo simply lacks ``filename``."""
    try:
        return fetch_file(repo_id, filename, settings)
    except CheckpointError:
        return None
    except errors.OfflineNotCachedError:
        # Offline, a file absent from the cache may be absent from the repo too: let the caller decide.
        return None


def read_config_dict(path: str | os.PathLike, **hub_kwargs: Any) -> dict[str, Any]:
    """The config.json object of a local folder, or of a Hub repo (fetched into the Hub cache)."""
    if is_local_path(path):
        folder = Path(path).expanduser() / hub_kwargs.get("subfolder", "")
        if not (folder / CONFIG_NAME).is_file():
            check_local_folder(folder)
        return load_config_json(folder / CONFIG_NAME)
    return load_config_json(fetch_file(str(path), CONFIG_NAME, HubSettings.from_kwargs(hub_kwargs)))


def shards_holding(index: dict[str, Any], prefix: str) -> tuple[list[str], list[str]]:
    """(sorted shard files, sorted tensor names) of the index entries whose name starts with ``prefix``."""
    names = sorted(k for k in index.get("weight_map", {}) if k.startswith(prefix))
    return sorted({index["weight_map"][k] for k in names}), names


def resolve_draft(repo_id: str, *, check_config: Callable[[dict[str, Any]], None] | None = None, **hub_kwargs: Any) -> ResolvedDraft:
    """Bring the files the draft in ``repo_id`` needs into the Hub cache; return where they are.

    ``hub_kwargs``: ``revision``, ``token``, ``cache_dir``, ``local_files_only``, ``force_download``
    (unset ones follow the user's environment). ``check_config``: called with the parsed config.json
    before any weights are fetched (e.g. to check that the draft fits a target); it raises to stop.
    """
    settings = HubSettings.from_kwargs(hub_kwargs)
    where = _where(repo_id, settings.revision)
    config_path = fetch_file(repo_id, CONFIG_NAME, settings)
    config = load_config_json(config_path)
    kind = checkpoint_format(config)
    if kind is None:
        raise CheckpointError(f"{where} is not a DSpark draft: its config has {describe(config)}.")
    folder = config_path.parent
    files = [CONFIG_NAME]
    if check_config is not None:
        check_config(config)
    if kind == DEEPSEEK_V4:
        index_path = fetch_file(repo_id, WEIGHTS_INDEX, settings)
        shards, names = shards_holding(load_config_json(index_path), V4_DRAFTER_PREFIX)
        if not names:
            raise CheckpointError(f"{where} is a DeepSeek-V4 repo without a drafter: its weight index has no {V4_DRAFTER_PREFIX}* tensors.")
        files.append(WEIGHTS_INDEX)
    else:
        if _missing_ok(repo_id, SINGLE_WEIGHTS, settings) is not None:
            shards = [SINGLE_WEIGHTS]
        else:
            index_path = _missing_ok(repo_id, WEIGHTS_INDEX, settings)
            if index_path is None:
                if hf_constants.is_offline_mode() or settings.local_files_only:
                    raise errors.OfflineNotCachedError(
                        f"Offline and the weights of {where} are not in the Hub cache: download them once online "
                        f"(`dspark hub download {repo_id}`)."
                    )
                raise CheckpointError(f"{where} has no {SINGLE_WEIGHTS} or {WEIGHTS_INDEX}: no safetensors weights to load.")
            weight_map = load_config_json(index_path).get("weight_map")
            if not isinstance(weight_map, dict):
                raise CheckpointError(f"{WEIGHTS_INDEX} of {where} has no weight_map.")
            shards = sorted(set(weight_map.values()))
            files.append(WEIGHTS_INDEX)
    for shard in shards:
        fetch_file(repo_id, shard, settings)
    files.extend(s for s in shards if s not in files)
    return ResolvedDraft(repo_id, folder, folder.name, kind, tuple(files), config)
