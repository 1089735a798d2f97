"""Worker of test_training_ddp: trains the tiny target's draft (method ``argv[2]``, default dspark) for 3
steps in whatever process group accelerate set up and saves this rank's initial and final trainable weights."""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dspark_hf.training.checkpointing import trainable_state  # noqa: E402
from dspark_hf.training.trainer import Trainer, TrainConfig, end_process_group  # noqa: E402
from training_tiny import tiny_examples, tiny_target  # noqa: E402

torch.set_num_threads(1)
out = Path(sys.argv[1])
method = sys.argv[2] if len(sys.argv) > 2 else "dspark"
eagle3 = method == "eagle3"  # five target layers within [0, layers - 2]: a 6-layer target
trainer = Trainer(tiny_target(layers=6 if eagle3 else 4), tiny_examples(), TrainConfig(
    output_dir=str(out / "run"), method=method, num_anchors=3, batch_size=2, max_steps=3, save_every=100, block_size=4,
    markov_rank=8, target_layer_ids=None if eagle3 else [0, 2], ttt_length=3, eagle3_positions="anchors", progress=False))
rank = trainer.accelerator.process_index
save_file(trainable_state(trainer.draft), str(out / f"init{rank}.safetensors"))
draft = trainer.train()
save_file(trainable_state(draft), str(out / f"final{rank}.safetensors"))
(out / f"world{rank}.txt").write_text(str(trainer.accelerator.num_processes))
end_process_group()
