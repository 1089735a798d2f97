"""The manager of a speculative continuous batch: transformers' ``ContinuousBatchingManager`` whose
batch processor drafts and verifies (:class:`~dspark_hf.batching.processor.SpeculativeBatchProcessor`).

Everything a user does with a manager works unchanged (``start``, ``add_request(s)``, ``get_result``,
iteration, ``request_id_iter``, ``cancel_request``, ``stop``), since only the processor's per-step
methods differ. The continuous-batching config is copied and adjusted for speculation, each change
because a drafted step needs it:

- ``allow_block_sharing=False``: prefix sharing hashes pages as they fill, and a page holding
  rejected draft tokens must never be shared;
- ``use_async_batching=False``: the next step's drafts need this step's accepted tokens;
- ``use_cuda_graph=False``, no ``torch.compile`` of the varlen / decode paths, and
  ``max_blocks_per_request=0`` (no block-table decode fast path): every step is a varlen forward
  whose logits rows are chosen per step;
- ``scheduler_type="fifo"``: decoding requests are scheduled first and whole, so a request's
  ``[last, d_1 .. d_L]`` is never split across steps (the lengths are cut to the token budget first).
"""

from __future__ import annotations

import copy

from transformers.generation.configuration_utils import ContinuousBatchingConfig
from transformers.generation.continuous_batching.continuous_api import ContinuousBatchingManager

from dspark_hf.batching.processor import SpeculativeBatchProcessor
from dspark_hf.batching.speculation import Speculation


def speculative_batching_config(config: ContinuousBatchingConfig | None) -> ContinuousBatchingConfig:
    """A copy of ``config`` (or the default) with the settings a drafted step needs (module docstring)."""
    config = copy.deepcopy(config) if config is not None else ContinuousBatchingConfig()
    config.allow_block_sharing = False
    config.use_async_batching = False
    config.use_cuda_graph = False
    config.varlen_compile_config = None
    config.decode_compile_config = None
    config.max_blocks_per_request = 0
    config.scheduler_type = "fifo"
    return config


class SpeculativeBatchingManager(ContinuousBatchingManager):
    """``ContinuousBatchingManager`` drafting with ``draft`` for every request. ``speculation`` holds
    the policy, the per-request states and the telemetry (also at ``draft.last_batch_telemetry``)."""

    def __init__(self, model, generation_config, continuous_batching_config, workload_hints=None, *, draft, steps_per_second=None) -> None:
        super().__init__(model, generation_config, speculative_batching_config(continuous_batching_config), workload_hints)
        self.speculation = Speculation(model, draft, generation_config, steps_per_second=steps_per_second)

    @property
    def telemetry(self):
        return self.speculation.telemetry

    def _create_batch_processor(self):
        processor = super()._create_batch_processor()
        if isinstance(processor, SpeculativeBatchProcessor):
            return processor
        return SpeculativeBatchProcessor.adopt(processor, self.speculation)

    def stop(self, *args, **kwargs):
        """transformers' ``stop``; once the loop has ended, the feature hooks are removed from the target."""
        result = super().stop(*args, **kwargs)
        if not self.is_running():
            self.speculation.close()
        return result

    def destroy(self) -> None:
        self.speculation.close()
        super().destroy()
