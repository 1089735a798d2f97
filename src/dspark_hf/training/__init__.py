"""Training DSpark (and DFlash-variant) drafts for any transformers causal LM target.

One module per job:

- :mod:`.data` — read JSON Lines of prompts or chats, or plain text, into token ids with a loss mask;
- :mod:`.self_distill` — regenerate the answers with the target itself (batched, chat template);
- :mod:`.target_outputs` — the target's features and final normed hidden state, computed online or
  read back from a sharded safetensors cache;
- :mod:`.packing` — random anchors on assistant tokens, blocks packed after the context, block mask;
- :mod:`.losses` — per-slot decayed CE + L1(softmax) + confidence BCE;
- :mod:`.trainer` — the loop (accelerate, AdamW, cosine schedule, checkpoints that resume exactly);
- :mod:`.checkpointing` — what a checkpoint holds and how it is restored;
- :mod:`.fsdp` — FSDP2 through accelerate: plugin set-up for a draft, sharded checkpoints, full weights;
- :mod:`.evaluate_acceptance` — tau of a draft on benchmark prompts;
- :mod:`.export` — write a draft in the released DeepSpec layout;
- :mod:`.lora` — LoRA adapters (peft) on a draft's backbone: attach, train, save, load, merge.
"""
