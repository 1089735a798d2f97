"""Installs DSpark and EAGLE-3 drafting into transformers' ``generate(assistant_model=...)``.

transformers has no public argument for a custom candidate generator, so ``import dspark_hf`` wraps three
private methods of ``GenerationMixin``, each time passing straight through unless the assistant is one
of this library's drafts (:class:`DSparkDraft`, the DeepSeek-V4 drafter, or an :class:`Eagle3Draft`):

- ``_validate_generation_mode``: checks that the draft fits the target first, so a mismatch gives our
  one-line error instead of transformers' tokenizer advice; a target transformers marks stateful is
  refused in one line unless its cache can be made rewindable (DeepSeek-V4, see ``v4/target_cache.py``);
- ``_get_candidate_generator``: returns the draft's candidate generator (:data:`GENERATORS`:
  :class:`DSparkCandidateGenerator` or :class:`Eagle3CandidateGenerator`);
- ``_assisted_decoding``: runs transformers' loop with the call's token-level stopping criteria
  (``stop_strings``, custom criteria) checked on every prefix a round adds, and cuts the output back
  to the first stop, so the result is plain ``generate``'s (:mod:`.stopping`); for a bf16 / fp16 target
  its verification forwards compute attention row by row, so that they round as plain decoding's
  one-token steps do (:mod:`.exact_verification`); for a float32 target on a CPU they run their linear
  layers weight-major at the row counts measured faster on the machine (:mod:`.weight_major`).

Every other assistant path (assistant models, prompt lookup, early exit, MTP, DFlash, ...) runs the
original code unchanged. Versions of transformers without the generator hooks get one clear error.
"""

from __future__ import annotations

import contextlib
import functools
import inspect

import transformers
from packaging.version import Version
from transformers.generation.candidate_generator import CandidateGenerator
from transformers.generation.stopping_criteria import StoppingCriteriaList
from transformers.generation.utils import GenerationMixin

from dspark_hf.errors import TransformersVersionError
from dspark_hf.integration.candidate_generator import DSparkCandidateGenerator, Eagle3CandidateGenerator
from dspark_hf.integration.fit_checks import check_draft_fits_target, check_target_can_roll_back
from dspark_hf.integration.stopping import ACTIVE_STOPS, RoundStops
from dspark_hf.integration.verification_forwards import verification_context
from dspark_hf.models.deepseek_v4.modeling import DSparkV4Draft
from dspark_hf.models.eagle3.modeling_eagle3 import Eagle3Draft
from dspark_hf.models.dspark.modeling_dspark import DSparkDraft

SUPPORTED_TRANSFORMERS = ">=5.20,<6"
_MIN, _MAX = Version("5.20"), Version("6")
_PATCHED_FLAG = "_dspark_hf_original"


def check_transformers_version(version: str | None = None) -> None:
    """Raise :class:`TransformersVersionError` unless transformers has the hooks we need."""
    version = version or transformers.__version__
    hooks_present = (
        hasattr(CandidateGenerator, "requires_model_outputs")
        and hasattr(GenerationMixin, "_get_candidate_generator")
        and hasattr(GenerationMixin, "_validate_generation_mode")
        and hasattr(GenerationMixin, "_assisted_decoding")
    )
    release = Version(Version(version).base_version)
    if not (_MIN <= release < _MAX) or not hooks_present:
        raise TransformersVersionError(
            f"dspark_hf needs transformers {SUPPORTED_TRANSFORMERS} (found {version}); "
            f"install a supported version: pip install 'transformers{SUPPORTED_TRANSFORMERS}'."
        )


# Each draft class of this library and the candidate generator that drives it in generate().
GENERATORS = (
    ((DSparkDraft, DSparkV4Draft), DSparkCandidateGenerator),
    ((Eagle3Draft,), Eagle3CandidateGenerator),
)


def _generator_for(model):
    """The candidate generator class for ``model``, or ``None`` when it is not one of our drafts."""
    return next((generator for kinds, generator in GENERATORS if isinstance(model, kinds)), None)


def _is_dspark(model) -> bool:
    """One of this library's drafts: :class:`DSparkDraft`, a DeepSeek-V4 drafter (:class:`DSparkV4Draft`)
    or an :class:`Eagle3Draft`."""
    return _generator_for(model) is not None


@contextlib.contextmanager
def _rollback_checked(target):
    """Lift transformers' blanket ``_is_stateful`` refusal for a target whose cache can be rolled back."""
    if not getattr(target, "_is_stateful", False):
        yield
        return
    check_target_can_roll_back(target)
    target._is_stateful = False  # instance attribute shadowing the class's, removed right after
    try:
        yield
    finally:
        del target._is_stateful


def install_generation_hook() -> None:
    """Wrap the two GenerationMixin methods once; idempotent."""
    check_transformers_version()
    if hasattr(GenerationMixin._get_candidate_generator, _PATCHED_FLAG):
        return
    original_get = GenerationMixin._get_candidate_generator
    original_validate = GenerationMixin._validate_generation_mode
    original_assisted = GenerationMixin._assisted_decoding

    get_signature = inspect.signature(original_get)
    validate_signature = inspect.signature(original_validate)
    assisted_signature = inspect.signature(original_assisted)

    @functools.wraps(original_assisted)
    def _assisted_decoding(self, *args, **kwargs):
        bound = assisted_signature.bind(self, *args, **kwargs)
        arguments = bound.arguments
        if not _is_dspark(arguments.get("assistant_model")):
            return original_assisted(self, *args, **kwargs)
        input_ids = arguments["input_ids"]
        stops = RoundStops(arguments.get("stopping_criteria"), input_ids.shape[1])
        if stops.active:
            arguments["stopping_criteria"] = StoppingCriteriaList([*arguments["stopping_criteria"], stops])
            arguments["streamer"] = stops.streamer(arguments.get("streamer"), input_ids)
        rows = verification_context(self, arguments["generation_config"])
        token = ACTIVE_STOPS.set(stops)
        try:
            with rows:
                output = original_assisted(*bound.args, **bound.kwargs)
        finally:
            ACTIVE_STOPS.reset(token)
        return stops.trim(output)

    @functools.wraps(original_get)
    def _get_candidate_generator(self, *args, **kwargs):
        arguments = get_signature.bind(self, *args, **kwargs).arguments
        generator = _generator_for(arguments.get("assistant_model"))
        if generator is None:
            return original_get(self, *args, **kwargs)
        return generator(
            self,
            arguments["assistant_model"],
            arguments["input_ids"],
            arguments["generation_config"],
            arguments["logits_processor"],
            arguments["model_kwargs"],
        )

    @functools.wraps(original_validate)
    def _validate_generation_mode(self, *args, **kwargs):
        arguments = validate_signature.bind(self, *args, **kwargs).arguments
        assistant = (arguments.get("generation_mode_kwargs") or {}).get("assistant_model")
        if _is_dspark(assistant):
            check_draft_fits_target(assistant, self)
            with _rollback_checked(self):
                return original_validate(self, *args, **kwargs)
        return original_validate(self, *args, **kwargs)

    setattr(_assisted_decoding, _PATCHED_FLAG, original_assisted)
    setattr(_get_candidate_generator, _PATCHED_FLAG, original_get)
    setattr(_validate_generation_mode, _PATCHED_FLAG, original_validate)
    GenerationMixin._get_candidate_generator = _get_candidate_generator
    GenerationMixin._validate_generation_mode = _validate_generation_mode
    GenerationMixin._assisted_decoding = _assisted_decoding
