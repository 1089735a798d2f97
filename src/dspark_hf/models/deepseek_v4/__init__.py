"""DeepSeek-V4 DSpark drafters: the ``mtp.*`` part of a V4 target repo, run as a DSpark draft.

``DSparkDraft.from_pretrained(<V4 repo folder or Hub id>)`` returns a :class:`DSparkV4Draft` (only the
shards holding ``mtp.*`` are downloaded and read); pass it as ``assistant_model`` to the V4 target.
Modules: :mod:`.configuration` (the drafter's config from the repo's), :mod:`.modeling` (the drafter on
transformers' ``deepseek_v4`` layers), :mod:`.checkpoint` (``mtp.*`` names, shards, de-quantisation),
:mod:`.target_cache` (rewindable cache layers for the V4 target's compressed attention).
"""

from dspark_hf.models.deepseek_v4.checkpoint import is_v4_config, load_v4_drafter, load_v4_drafter_from_folder
from dspark_hf.models.deepseek_v4.configuration import DSparkV4Config
from dspark_hf.models.deepseek_v4.modeling import DSparkV4Draft

__all__ = ["DSparkV4Config", "DSparkV4Draft", "is_v4_config", "load_v4_drafter", "load_v4_drafter_from_folder"]
