"""FSDP2 for ``dspark train``, through accelerate's own FSDP support.

``accelerate launch --use_fsdp --fsdp_version 2 ...`` (or an accelerate config file with
``distributed_type: FSDP`` and ``fsdp_version: 2``) makes ``Accelerator.prepare`` shard the draft
with ``torch.distributed.fsdp.fully_shard``. This module adapts accelerate's plugin to a draft:

- the draft's embedding and LM head are the frozen target's own tensors: they are left out of the
  sharding (``ignored_modules``), so they stay shared with the target and are never communicated;
  everything else of the draft (decoder layers, ``fc``, norms, sequential and confidence heads) is
  sharded, and with accelerate's default ``NO_WRAP`` policy each decoder layer of a DSpark draft becomes
  its own FSDP unit (``TRANSFORMER_BASED_WRAP`` on ``DSparkDecoderLayer``); an EAGLE-3 draft is one FSDP
  unit (its training chain, :mod:`.eagle3_chain`, calls its one layer's modules directly, which would
  skip a layer unit's all-gather);
- checkpoints hold the model and optimizer state sharded, written and read by every process with
  ``torch.distributed.checkpoint`` (as accelerate's ``save_state`` does for FSDP2), frozen tensors left
  out; the full trainable weights are gathered for ``draft.safetensors`` and for the final draft.

accelerate (1.15) turns FSDP on only across processes of an accelerator device (CUDA GPUs and the
like): with ``--use_fsdp`` on CPU it silently runs DDP, with one process no distribution at all.
:func:`check_fsdp_setup` turns that into one error line. Only FSDP2 is supported (``fsdp_version 2``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from dspark_hf.errors import DSparkError

WRAPPED_LAYER = "DSparkDecoderLayer"


def fsdp_requested() -> bool:
    """Whether the launcher asked for FSDP (``accelerate launch --use_fsdp`` or a config file with
    ``distributed_type: FSDP`` set ``ACCELERATE_USE_FSDP``)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def uses_fsdp(accelerator) -> bool:
    """Whether ``accelerator`` shards the models it prepares with FSDP."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def check_fsdp_setup(accelerator) -> None:
    """Raise one :class:`DSparkError` line when FSDP was asked for but is not what accelerate set up,
    or when it is FSDP1 or torch is older than 2.7; do nothing otherwise."""
    import accelerate

    if uses_fsdp(accelerator):
        version = accelerator.state.fsdp_plugin.fsdp_version
        if version != 2:
            raise DSparkError(f"dspark train supports FSDP2 only: launch with --fsdp_version 2 (got fsdp_version {version}).")
        if tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]) < (2, 7):
            raise DSparkError(f"FSDP2 in dspark train needs torch >= 2.7 (to leave the target's tensors unsharded); this is {torch.__version__}.")
        return
    if fsdp_requested():
        from accelerate.utils import DistributedType

        n = accelerator.num_processes
        got = {DistributedType.NO: "a single process with no distribution",
               DistributedType.MULTI_CPU: f"DDP across {n} CPU processes"}.get(accelerator.distributed_type)
        got = got or f"{str(accelerator.distributed_type).split('.')[-1]} with {n} process(es)"
        raise DSparkError(
            f"FSDP was requested but accelerate {accelerate.__version__} set up {got}: it runs FSDP only across "
            "several GPU (or other accelerator) processes (accelerate launch --use_fsdp --fsdp_version 2 "
            "--num_processes N, N >= 2); on CPU use DDP (ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu ...)."
        )


def configure_fsdp_plugin(accelerator, draft, layer_units: bool = True) -> None:
    """Set accelerate's FSDP plugin up for ``draft`` before ``accelerator.prepare``: the target-owned
    embedding and LM head are ignored (not sharded), decoder layers are wrapped one by one unless
    the launch chose a wrap policy, and ``cpu_ram_efficient_loading`` is off (it moves the model to
    the meta device, which would take the shared target tensors with it; every process builds the
    same seeded draft anyway). Under mixed precision, forward inputs and outputs are not cast (see below).

    ``layer_units=False``: no wrap policy at all, whatever the launch chose, so the whole trainable
    draft is the one (root) FSDP unit, all-gathered by the objective's forward. For a draft whose
    training calls its layers' submodules rather than the layers (EAGLE-3's chain): FSDP2 all-gathers
    a unit's weights in the pre-forward hook of the module it wraps, which such calls skip."""
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    plugin = accelerator.state.fsdp_plugin
    plugin.ignored_modules = [draft.embed_tokens, draft.lm_head]
    if not layer_units:
        plugin.auto_wrap_policy = None
    elif plugin.auto_wrap_policy is None or (
        plugin.auto_wrap_policy is transformer_auto_wrap_policy and not plugin.transformer_cls_names_to_wrap
    ):
        plugin.auto_wrap_policy = transformer_auto_wrap_policy
        plugin.transformer_cls_names_to_wrap = [WRAPPED_LAYER]
    plugin.cpu_ram_efficient_loading = False
    policy = plugin.mixed_precision_policy
    if getattr(policy, "cast_forward_inputs", False):
        # Mixed precision: leave inputs and outputs as they are (the target's logits and the losses
        # stay float32); autocast, which accelerate turns on as well, runs the matmuls in bf16.
        plugin.mixed_precision_policy = dataclasses.replace(policy, cast_forward_inputs=False, output_dtype=None)


def trainable_names(module: torch.nn.Module, prefix: str = "draft.") -> list[str]:
    """Names (without ``prefix``) of the trainable parameters of ``module``."""
    return [name.removeprefix(prefix) for name, p in module.named_parameters() if p.requires_grad]


def full_trainable_state(objective: torch.nn.Module, rank0_only: bool = False) -> dict[str, torch.Tensor]:
    """The draft's full (unsharded) trainable weights, on CPU, keyed as in ``DSparkDraft.state_dict``.

    Collective: every process must call it. With ``rank0_only`` the other processes get ``{}``."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=rank0_only, ignore_frozen_params=True)
    state = get_model_state_dict(objective, options=options)
    names = set(trainable_names(objective))
    full = {k.removeprefix("draft."): v for k, v in state.items()}
    return {k: v.detach().to("cpu").contiguous() for k, v in full.items() if k in names}


def _state_dicts(objective, optimizer):
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    model_state, optim_state = get_state_dict(objective, optimizer, options=StateDictOptions(ignore_frozen_params=True))
    return {"model": model_state, "optimizer": optim_state}


def save_sharded(folder: str | Path, objective: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Save the sharded model and optimizer state to ``folder`` (collective: every process writes its
    shards). ``optimizer`` is the torch optimizer (``AcceleratedOptimizer.optimizer``)."""
    import torch.distributed.checkpoint as dcp

    dcp.save(_state_dicts(objective, optimizer), checkpoint_id=str(folder))


def load_sharded(folder: str | Path, objective: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Restore what :func:`save_sharded` wrote into ``objective`` and ``optimizer`` (collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    from dspark_hf.errors import CheckpointError

    state = _state_dicts(objective, optimizer)
    try:
        dcp.load(state, checkpoint_id=str(folder))
    except Exception as err:  # noqa: BLE001 - DCP raises CheckpointException with per-rank tracebacks
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"Sharded checkpoint {folder} does not match this draft and optimizer ({first[:200]}).") from err
    # Not strict: the frozen (target-owned) tensors are not in the checkpoint; anything else must be.
    keys = set_state_dict(objective, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"],
                          options=StateDictOptions(ignore_frozen_params=True, strict=False))
    frozen = {name for name, p in objective.named_parameters() if not p.requires_grad}
    wrong = sorted(set(keys.missing_keys) - frozen) + sorted(keys.unexpected_keys)
    if wrong:
        raise CheckpointError(f"Sharded checkpoint {folder} does not match this draft ({wrong[:3]}).")
