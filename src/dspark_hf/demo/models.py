"""Which target and draft the demo runs, and a small cache of loaded pairs.

Names: a local folder or a Hub id; for the target ``None`` (or empty) means the embedded
SmolLM2-135M-Instruct (:mod:`dspark_hf.bundled.target`). For the draft ``None`` means the draft
shipped for the embedded target when this build includes one (``dspark_hf/default_draft/``, the same
folder and test :func:`dspark_hf.bundled.draft.default_draft_dir` applies), otherwise ``"random"``:
an untrained draft shaped for the target by
:func:`dspark_hf.models.dspark.config_for_target.draft_config_for_target`, seeded so that every load gives the same draft
(its text is exact; its proposals are rarely accepted). Loading goes through the same functions as
``dspark generate``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from dspark_hf.errors import CheckpointError

RANDOM = "random"
RANDOM_DRAFT_SEED = 0


def shipped_draft_available() -> bool:
    """True when this build includes the default draft for the embedded target."""
    from dspark_hf.bundled.draft import default_draft_dir

    try:
        default_draft_dir()
    except CheckpointError:
        return False
    return True


def resolve_names(target: str | None, draft: str | None) -> tuple[str | None, str | None]:
    """``(target, draft)`` with blanks normalised; a default draft resolves to the shipped one (``None``)
    for the embedded target when it exists, else to ``"random"``."""
    target = (target or "").strip() or None
    draft = (draft or "").strip() or None
    if draft is None and (target is not None or not shipped_draft_available()):
        draft = RANDOM
    return target, draft


@dataclass
class LoadedModels:
    """A target, its tokenizer and a draft, ready for ``generate``, with names to show."""

    target: object
    tokenizer: object
    draft: object
    target_name: str
    draft_name: str
    precision: str = ""  # the dtype line (:meth:`dspark_hf.precision.Precision.describe`)


def random_draft(target_config):
    """An untrained draft shaped for the target, the same weights on every call (seeded; the global
    random state is left as it was)."""
    from dspark_hf.models.dspark.config_for_target import draft_config_for_target
    from dspark_hf.models.dspark.modeling_dspark import DSparkDraft

    with torch.random.fork_rng():
        torch.manual_seed(RANDOM_DRAFT_SEED)
        return DSparkDraft(draft_config_for_target(target_config)).eval()


def load_models(target: str | None, draft: str | None, dtype: str = "auto") -> LoadedModels:
    """Load the pair named by :func:`resolve_names` (eval mode) in the dtypes ``dtype`` resolves to
    (:mod:`dspark_hf.precision`; the output stays identical to plain decoding)."""
    from dspark_hf.checkpoints.files import check_local_folder, is_local_path
    from dspark_hf.loading import load_draft
    from dspark_hf.loading import load_target_with_precision

    target, draft = resolve_names(target, draft)
    if draft not in (None, RANDOM) and is_local_path(draft):
        from pathlib import Path

        check_local_folder(Path(draft).expanduser())
    model, tokenizer, precision = load_target_with_precision(target, dtype)
    if draft == RANDOM:
        draft_model = random_draft(model.config).to(precision.draft_dtype)
        draft_label = "random (untrained, shaped for the target: exact text, rarely accepted)"
    else:
        draft_model = load_draft(draft, model, dtype=precision.draft_dtype)
        draft_label = draft or "shipped default draft"
    from dspark_hf.bundled.target import DEFAULT_TARGET_NAME

    return LoadedModels(model, tokenizer, draft_model, target or f"embedded {DEFAULT_TARGET_NAME}", draft_label,
                        precision.describe())


class ModelRegistry:
    """Loaded (target, draft) pairs keyed by their resolved names; keeps the ``capacity`` most recent.

    Thread-safe; a pair is loaded once even when asked for by two sessions at the same time. The demo
    runs one generation at a time, so sessions can share the loaded models.
    """

    def __init__(self, capacity: int = 2, loader=load_models) -> None:
        self.capacity = capacity
        self.loader = loader
        self._pairs: OrderedDict[tuple, LoadedModels] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, target: str | None, draft: str | None, models: LoadedModels) -> None:
        """Register an already loaded pair under these names (tests, embedding the app elsewhere)."""
        with self._lock:
            self._pairs[resolve_names(target, draft)] = models
            self._evict()

    def get(self, target: str | None = None, draft: str | None = None) -> LoadedModels:
        key = resolve_names(target, draft)
        with self._lock:
            if key not in self._pairs:
                self._pairs[key] = self.loader(*key)
                self._evict()
            self._pairs.move_to_end(key)
            return self._pairs[key]

    def _evict(self) -> None:
        while len(self._pairs) > self.capacity:
            self._pairs.popitem(last=False)
