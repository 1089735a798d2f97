"""Worker of test_training_fsdp, started by ``accelerate launch --use_fsdp --fsdp_version 2``.

In one process group it runs three trainings of the tiny target's draft (6 steps, checkpoint every 2):
``straight`` (uninterrupted), ``resumed`` stopped after step 3 (as a kill would: its last checkpoint
is step 2) and then rerun by a fresh Trainer from that checkpoint. Each rank writes its full initial
and final trainable weights and what FSDP did to the draft (``facts{rank}.json``), including the
steps it trained in the stopped run and in the rerun.

``--method dspark|eagle3``: the method trained (``training_tiny.TINY_RUNS``; default dspark).

``--run NAME STEPS``: only one run of STEPS steps into ``NAME`` (resuming from its checkpoints).

``--bf16``: bf16 mixed precision (accelerate's FSDP policy plus autocast).

``--force-cpu-fsdp``: accelerate 1.15 enables FSDP only for accelerator devices and keeps CPU
processes in DDP mode (MULTI_CPU) even under ``--use_fsdp``. torch's FSDP2 itself runs on CPU with
gloo, so the test switches accelerate's state to FSDP with the plugin ``--use_fsdp`` configured
(read from the environment), which is exactly what accelerate does itself on GPUs; everything after
that (``prepare``, ``fully_shard``, clipping, state dicts) is accelerate's and torch's own code.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accelerate import Accelerator  # noqa: E402
from accelerate.state import PartialState  # noqa: E402
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin  # noqa: E402

from dspark_hf.training.checkpointing import trainable_state  # noqa: E402
from dspark_hf.training.fsdp import full_trainable_state  # noqa: E402
from dspark_hf.training.trainer import Trainer, TrainConfig, end_process_group  # noqa: E402
from training_tiny import TINY_RUNS, tiny_examples, tiny_run  # noqa: E402

torch.set_num_threads(1)
out = Path(sys.argv[1])
method = sys.argv[sys.argv.index("--method") + 1] if "--method" in sys.argv else "dspark"


def tiny_target():
    return tiny_run(method)[1]


def new_accelerator() -> Accelerator:
    """One Accelerator per Trainer, as in a real run (accelerate's FSDP gradient clipping looks the
    model up among all the models an Accelerator prepared; the process-wide state is shared)."""
    accelerator = Accelerator(mixed_precision="bf16" if "--bf16" in sys.argv else "no")
    if "--force-cpu-fsdp" in sys.argv and accelerator.distributed_type != DistributedType.FSDP:
        assert accelerator.distributed_type == DistributedType.MULTI_CPU, accelerator.distributed_type
        # What AcceleratorState.__init__ does when it enables FSDP (accelerate/state.py).
        accelerator.state.distributed_type = DistributedType.FSDP
        accelerator.state.fsdp_plugin = FullyShardedDataParallelPlugin()
        if accelerator.mixed_precision != "no":
            accelerator.state.fsdp_plugin.set_mixed_precision(accelerator.mixed_precision)
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    return accelerator


accelerator = new_accelerator()
rank = accelerator.process_index


def config(name, **kw):
    base = dict(output_dir=str(out / name), num_anchors=3, batch_size=2, max_steps=6, save_every=2, progress=False,
                **TINY_RUNS[method][0])
    return TrainConfig(**{**base, **kw})


if "--run" in sys.argv:  # one run: --run NAME STEPS (the SIGKILL test kills and reruns it)
    name, steps = sys.argv[sys.argv.index("--run") + 1], int(sys.argv[sys.argv.index("--run") + 2])
    final = Trainer(tiny_target(), tiny_examples(), config(name, max_steps=steps), accelerator=accelerator).train()
    save_file(trainable_state(final), str(out / f"{name}{rank}.safetensors"))
    sys.exit(0)

straight = Trainer(tiny_target(), tiny_examples(), config("straight"), accelerator=accelerator)
save_file(full_trainable_state(straight.objective), str(out / f"init{rank}.safetensors"))

from torch.distributed.tensor import DTensor  # noqa: E402

draft = straight.draft
facts = {
    "distributed_type": str(accelerator.distributed_type),
    "world": accelerator.num_processes,
    "trainable_are_dtensors": all(isinstance(p, DTensor) for p in draft.parameters() if p.requires_grad),
    "fc_local_shape": list(draft.fc.weight.to_local().shape) if isinstance(draft.fc.weight, DTensor) else None,
    "fc_full_shape": list(draft.fc.weight.shape),
    "embedding_shared_with_target": draft.embed_tokens.weight is straight.target.get_input_embeddings().weight,
    "lm_head_shared_with_target": draft.lm_head.weight is straight.target.get_output_embeddings().weight,
    "mixed_precision_policy": str(accelerator.state.fsdp_plugin.mixed_precision_policy),
    "trainable_dtypes": sorted({str(p.dtype) for p in draft.parameters() if p.requires_grad}),
    "frozen_not_sharded": not any(isinstance(p, DTensor) for p in draft.parameters() if not p.requires_grad),
}
save_file(trainable_state(straight.train()), str(out / f"straight{rank}.safetensors"))


def recorded(trainer: Trainer, key: str) -> Trainer:
    """Record in ``facts[key]`` the (0-based) steps ``trainer`` trains on this rank: the training loop
    asks ``step_indices`` for each step's sequences once. (A step hook on the torch optimizer would also
    count the zero-lr step torch.distributed.checkpoint's state-dict helpers take to create the empty
    Adam state before a sharded load.)"""
    facts[key] = []
    step_indices = trainer.step_indices

    def recording(step):
        facts[key].append(step)
        return step_indices(step)

    trainer.step_indices = recording
    return trainer


recorded(Trainer(tiny_target(), tiny_examples(), config("resumed", stop_after=3), accelerator=new_accelerator()),
         "stopped_steps").train()
facts["stopped_checkpoints"] = sorted(p.name for p in (out / "resumed" / "checkpoints").iterdir())
resumed = recorded(Trainer(tiny_target(), tiny_examples(), config("resumed"), accelerator=new_accelerator()),
                   "resumed_steps").train()
save_file(trainable_state(resumed), str(out / f"resumed{rank}.safetensors"))
(out / f"facts{rank}.json").write_text(json.dumps(facts))
end_process_group()
