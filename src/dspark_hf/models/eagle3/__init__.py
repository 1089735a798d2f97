"""EAGLE-3 drafts: DeepSpec's released ``Qwen3Eagle3Model`` checkpoints, loaded exactly.

``DSparkDraft.from_pretrained(<EAGLE-3 folder>)`` or ``Eagle3Draft.from_pretrained`` returns an
:class:`Eagle3Draft`. Modules: :mod:`.configuration_eagle3` (the config and the released config.json),
:mod:`.modeling_eagle3` (the model, its drafting helpers and the weight checks).
"""

from dspark_hf.models.eagle3.configuration_eagle3 import Eagle3Config
from dspark_hf.models.eagle3.modeling_eagle3 import Eagle3Draft, Eagle3Proposal

__all__ = ["Eagle3Config", "Eagle3Draft", "Eagle3Proposal"]
