"""dspark_hf: DeepSeek's DSpark speculative decoding for HuggingFace transformers.

``import dspark_hf`` registers :class:`DSparkConfig` / :class:`DSparkDraft` with the Auto classes and
installs DSpark drafting into ``generate(assistant_model=...)``::

    import dspark_hf
    draft = dspark_hf.DSparkDraft.from_pretrained("deepseek-ai/dspark_qwen3_4b_block7")
    out = target.generate(ids, assistant_model=draft, max_new_tokens=256)   # identical to plain generate
    print(draft.last_telemetry.summary())

It also lets transformers' SDPA attention on CPU run masked multi-row queries of grouped-query models
without copying keys and values per head (bit-identical results, cheaper verification and packed
forwards; ``DSPARK_HF_CPU_GQA=0`` turns it off: :mod:`dspark_hf.integration.cpu_gqa_attention`), and
continuous batching's packed forwards on CPU attend request by request instead of through a dense mask
over every request's keys (``DSPARK_HF_CPU_BLOCK_ATTENTION=0`` turns it off:
:mod:`dspark_hf.integration.cpu_block_attention`).
"""

from transformers import AutoConfig, AutoModel

from dspark_hf.batching.entry_points import install_batching_hook
from dspark_hf.errors import (
    CheckpointError,
    CompatibilityError,
    ConfigValueError,
    DataError,
    DSparkError,
    TransformersVersionError,
    UnsupportedUsageError,
)
from dspark_hf.integration.cpu_block_attention import install_cpu_block_attention
from dspark_hf.integration.cpu_gqa_attention import install_cpu_gqa_attention
from dspark_hf.integration.generation_hook import SUPPORTED_TRANSFORMERS, install_generation_hook
from dspark_hf.models.deepseek_v4.modeling import DSparkV4Draft
from dspark_hf.models.dspark.configuration_dspark import DSparkConfig
from dspark_hf.models.dspark.modeling_dspark import DSparkDraft
from dspark_hf.models.eagle3 import Eagle3Config, Eagle3Draft
from dspark_hf.telemetry import GenerationTelemetry, StepRecord
from dspark_hf.verification.policies import (
    ConfidenceThreshold,
    FixedLength,
    HardwareAware,
    OnlineAcceptance,
    SurvivalThreshold,
    VerificationPolicy,
    WholeBlock,
    resolve_policy,
)
from dspark_hf.version import __version__

AutoConfig.register(DSparkConfig.model_type, DSparkConfig, exist_ok=True)
AutoModel.register(DSparkConfig, DSparkDraft, exist_ok=True)
AutoConfig.register(Eagle3Config.model_type, Eagle3Config, exist_ok=True)
AutoModel.register(Eagle3Config, Eagle3Draft, exist_ok=True)
install_generation_hook()
install_batching_hook()
install_cpu_gqa_attention()
install_cpu_block_attention()  # after the grouped-query wrapper: it wraps that one

__all__ = [
    "DSparkConfig",
    "DSparkDraft",
    "DSparkV4Draft",
    "Eagle3Config",
    "Eagle3Draft",
    "VerificationPolicy",
    "WholeBlock",
    "FixedLength",
    "ConfidenceThreshold",
    "SurvivalThreshold",
    "HardwareAware",
    "OnlineAcceptance",
    "resolve_policy",
    "GenerationTelemetry",
    "StepRecord",
    "DSparkError",
    "CheckpointError",
    "CompatibilityError",
    "ConfigValueError",
    "DataError",
    "UnsupportedUsageError",
    "TransformersVersionError",
    "SUPPORTED_TRANSFORMERS",
    "__version__",
]
