"""The one place that tells a checkpoint's format from its ``config.json``.

- ``"dspark"``: saved by this library (``model_type: dspark``);
- ``"released"``: a draft folder DeepSeek released (DSpark or DFlash: the target's text config with
  ``architectures`` ``Qwen3DSparkModel`` / ``Gemma4DSparkModel`` and DSpark keys);
- ``"deepseek_v4"``: a DeepSeek-V4 target repo, whose drafter is its ``mtp.*`` tensors;
- ``"eagle3"``: an EAGLE-3 draft, as DeepSpec releases it (the target's Qwen3 config with
  ``architectures: Qwen3Eagle3Model`` and EAGLE-3 keys) or as this library saves it
  (``model_type: dspark_eagle3``);
- ``None``: anything else (not a draft).
"""

from __future__ import annotations

from typing import Any

DSPARK = "dspark"
RELEASED = "released"
DEEPSEEK_V4 = "deepseek_v4"
EAGLE3 = "eagle3"

# Released architecture name -> the DSpark backbone it uses.
RELEASED_ARCHITECTURES = {"Qwen3DSparkModel": "qwen3", "Gemma4DSparkModel": "gemma4"}
V4_MODEL_TYPES = ("deepseek_v4",)
V4_DRAFTER_PREFIX = "mtp."
EAGLE3_ARCHITECTURE = "Qwen3Eagle3Model"
EAGLE3_MODEL_TYPE = "dspark_eagle3"


def checkpoint_format(config: dict[str, Any]) -> str | None:
    """``"dspark"``, ``"released"``, ``"deepseek_v4"``, ``"eagle3"`` or ``None`` for a parsed config.json object."""
    architectures = config.get("architectures") or []
    if (isinstance(architectures, list) and EAGLE3_ARCHITECTURE in architectures) or config.get("model_type") == EAGLE3_MODEL_TYPE:
        return EAGLE3
    if isinstance(architectures, list) and any(arch in RELEASED_ARCHITECTURES for arch in architectures):
        return RELEASED
    if config.get("model_type") == DSPARK:
        return DSPARK
    if config.get("model_type") in V4_MODEL_TYPES:
        return DEEPSEEK_V4
    return None


def describe(config: dict[str, Any]) -> str:
    """``model_type=..., architectures=[...]`` for messages about a config that is not a draft."""
    return f"model_type={config.get('model_type')!r}, architectures={config.get('architectures')}"
