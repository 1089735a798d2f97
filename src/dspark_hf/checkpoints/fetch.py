"""Resolve a Hub id to a local folder holding just the files a draft needs.

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

Every failure becomes one line: :mod:`dspark_hf.checkpoints.fetch_errors`, ``CheckpointError`` (not a draft) or
``CompatibilityError`` (does not fit the target).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download
from huggingface_hub import errors as hf_errors

from dspark_hf.models.dspark.configuration_dspark import DSparkConfig
from dspark_hf.errors import CheckpointError, CompatibilityError
from dspark_hf.models.dspark.released_format import from_released_config, is_released_config
from dspark_hf.checkpoints import fetch_errors

CONFIG_NAME = "config.json"
SINGLE_WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
V4_MODEL_TYPES = ("deepseek_v4",)
V4_DRAFTER_PREFIX = "mtp."


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
        return cls(**{k: kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only", "force_download") if k in kwargs})


@dataclass(frozen=True)
class ResolvedDraft:
    """A draft (or V4 drafter) brought into the local Hub cache.

    ``folder``: the snapshot folder (``<cache>/models--owner--name/snapshots/<commit>``) holding the
    fetched files; a DSpark/DFlash folder loads with ``DSparkDraft.from_pretrained(folder)``.
    ``kind``: ``"dspark"`` or ``"deepseek_v4"``. ``files``: repo paths fetched. ``commit``: the commit.
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


def draft_kind(config: dict[str, Any]) -> str | None:
    """``"dspark"`` for a draft config (released layout or this library's), ``"deepseek_v4"`` for a V4
    target repo (whose drafter is ``mtp.*``), None for anything else."""
    if is_released_config(config) or config.get("model_type") == DSparkConfig.model_type:
        return "dspark"
    if config.get("model_type") in V4_MODEL_TYPES:
        return "deepseek_v4"
    return None


def draft_config_from_dict(config: dict[str, Any], source: str) -> DSparkConfig:
    """The :class:`DSparkConfig` of a draft config.json (released layout or this library's)."""
    if is_released_config(config):
        return from_released_config(config, source=source)
    return DSparkConfig.from_dict({k: v for k, v in config.items() if k not in ("architectures", "transformers_version")})


def check_config_fits_target(draft: DSparkConfig, target_config: Any, name: str) -> None:
    """Raise :class:`CompatibilityError` when ``draft`` cannot serve a target with ``target_config``.

    Runs on the configs alone, before any weight is fetched: hidden size, vocabulary, layer count and
    layer ids (the checks ``compatibility.check_draft_fits_target`` repeats on the loaded models).
    """
    tcfg = target_config.get_text_config() if hasattr(target_config, "get_text_config") else target_config
    target_name = getattr(target_config, "_name_or_path", "") or type(target_config).__name__

    def mismatch(what: str, mine: Any, theirs: Any) -> CompatibilityError:
        return CompatibilityError(f"Draft {name} does not fit target {target_name}: draft {what} is {mine}, target {what} is {theirs}.")

    if draft.target_hidden_size != tcfg.hidden_size:
        raise mismatch("hidden size", draft.target_hidden_size, tcfg.hidden_size)
    if draft.vocab_size != tcfg.vocab_size:
        raise mismatch("vocabulary size", draft.vocab_size, tcfg.vocab_size)
    if draft.num_target_layers != tcfg.num_hidden_layers:
        raise mismatch("target layer count", draft.num_target_layers, tcfg.num_hidden_layers)
    bad = [i for i in draft.target_layer_ids if not -1 <= i < tcfg.num_hidden_layers]
    if bad:
        raise mismatch("target_layer_ids", list(draft.target_layer_ids), f"layers -1..{tcfg.num_hidden_layers - 1}")


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{what} is not valid JSON: {err}.") from None


def shards_holding(index: dict[str, Any], prefix: str) -> tuple[list[str], list[str]]:
    """(sorted shard files, sorted tensor names) of the index entries whose name starts with ``prefix``."""
    names = sorted(k for k in index.get("weight_map", {}) if k.startswith(prefix))
    return sorted({index["weight_map"][k] for k in names}), names


def resolve_draft(repo_id: str, *, target_config: Any = None, **hub_kwargs: Any) -> ResolvedDraft:
    """Bring the files the draft in ``repo_id`` needs into the Hub cache; return where they are.

    ``hub_kwargs``: ``revision``, ``token``, ``cache_dir``, ``local_files_only``, ``force_download``
    (unset ones follow the user's environment). ``target_config``: when given, the draft's config is
    checked against it before any weights are fetched.
    """
    settings = HubSettings.from_kwargs(hub_kwargs)
    where = _where(repo_id, settings.revision)
    config_path = fetch_file(repo_id, CONFIG_NAME, settings)
    config = _read_json(config_path, f"{CONFIG_NAME} of {where}")
    kind = draft_kind(config)
    if kind is None:
        raise CheckpointError(
            f"{where} is not a DSpark draft: its config has model_type={config.get('model_type')!r}, "
            f"architectures={config.get('architectures')}."
        )
    folder = config_path.parent
    files = [CONFIG_NAME]
    if kind == "deepseek_v4":
        index_path = fetch_file(repo_id, WEIGHTS_INDEX, settings)
        shards, names = shards_holding(_read_json(index_path, f"{WEIGHTS_INDEX} of {where}"), V4_DRAFTER_PREFIX)
        if not names:
            raise CheckpointError(f"{where} is a DeepSeek-V4 repo without a drafter: its weight index has no {V4_DRAFTER_PREFIX}* tensors.")
        files.append(WEIGHTS_INDEX)
    else:
        if target_config is not None:
            check_config_fits_target(draft_config_from_dict(config, f"{where}/{CONFIG_NAME}"), target_config, where)
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
            shards = sorted(set(_read_json(index_path, f"{WEIGHTS_INDEX} of {where}")["weight_map"].values()))
            files.append(WEIGHTS_INDEX)
    for shard in shards:
        fetch_file(repo_id, shard, settings)
    files.extend(s for s in shards if s not in files)
    return ResolvedDraft(repo_id, folder, folder.name, kind, tuple(files), config)


def load_draft(repo_id: str, *, target_config: Any = None, **kwargs: Any):
    """The draft in a Hub repo through :func:`resolve_draft`: a ``DSparkDraft`` (DSpark / DFlash drafts),
    or for a DeepSeek-V4 repo its drafter, a :class:`~dspark_hf.models.deepseek_v4.DSparkV4Draft` (only the ``mtp.*``
    shards are downloaded).

    Hub keywords (``revision``, ``token``, ``cache_dir``, ``local_files_only``, ``force_download``) go
    to the download; the rest (``dtype``, ...) to ``DSparkDraft.from_pretrained`` on the local folder.
    Applies the registry's recommended verification policy when the draft is a published one.
    """
    from dspark_hf.models.dspark.modeling_dspark import DSparkDraft
    from dspark_hf.verification.policies import resolve_policy
    from dspark_hf.hub.registry import lookup

    hub_kwargs = {k: kwargs.pop(k) for k in ("revision", "token", "cache_dir", "local_files_only", "force_download") if k in kwargs}
    resolved = resolve_draft(repo_id, target_config=target_config, **hub_kwargs)
    if resolved.kind == "deepseek_v4":
        from dspark_hf.models.deepseek_v4.checkpoint import load_v4_drafter

        draft = load_v4_drafter(resolved.folder, **kwargs)
        draft.name_or_path = repo_id
    else:
        draft = DSparkDraft.from_pretrained(str(resolved.folder), **kwargs)
    entry = lookup(repo_id)
    if entry is not None and draft.verification_policy is None:
        draft.verification_policy = resolve_policy(entry.recommended_policy)
    return draft


def load_v4_drafter_state_dict(repo_id: str, **hub_kwargs: Any) -> dict[str, Any]:
    """The ``mtp.*`` tensors of a DeepSeek-V4 repo, read from the only shards that hold them.

    Downloads ``config.json``, the weight index and the ``mtp.*`` shards; reads with
    ``safetensors.safe_open`` so no other tensor of those shards is materialised.
    """
    from safetensors import safe_open

    resolved = resolve_draft(repo_id, **hub_kwargs)
    if resolved.kind != "deepseek_v4":
        raise CheckpointError(f"{repo_id} is not a DeepSeek-V4 repo (model_type {resolved.config.get('model_type')!r}).")
    index = _read_json(resolved.folder / WEIGHTS_INDEX, f"{WEIGHTS_INDEX} of {repo_id}")
    shards, names = shards_holding(index, V4_DRAFTER_PREFIX)
    wanted = set(names)
    tensors: dict[str, Any] = {}
    for shard in shards:
        with safe_open(resolved.folder / shard, framework="pt") as f:
            for name in f.keys():
                if name in wanted:
                    tensors[name] = f.get_tensor(name)
    missing = wanted - tensors.keys()
    if missing:
        raise CheckpointError(f"{repo_id}: the weight index lists {len(missing)} mtp.* tensors its shards lack, e.g. {sorted(missing)[0]}.")
    return tensors
