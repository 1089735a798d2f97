"""The training loop: a DSpark (or DFlash-variant, or EAGLE-3) draft trained against a frozen target.

Everything that decides what a step sees is derived from ``seed`` and the step number: the epoch's
order of sequences (a permutation seeded by ``seed`` and the epoch) and each sequence's anchors (seeded
by ``seed``, the epoch and the sequence index). Two runs with the same data and seed therefore see the
same sequences and anchors whatever their method or head (an EAGLE-3 run on sampled positions trains
the chain drafting from those anchors), and a run resumed from a checkpoint continues
exactly where the killed one was.

Multi-process training goes through accelerate (``accelerate launch``, DDP; on CPU with
``ACCELERATE_USE_CPU=1`` and the gloo backend): each optimizer step takes ``batch_size * num_processes`` sequences, and
process ``p`` handles every ``num_processes``-th of them; gradients are averaged by DDP.
Under FSDP2 (``accelerate launch --use_fsdp --fsdp_version 2``, see :mod:`.fsdp`) the same steps run
with the draft's trainable weights sharded; checkpoints are then saved sharded and the final draft is
gathered into a full, unsharded one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dspark_hf.errors import DSparkError
from dspark_hf.models.dspark.modeling_dspark import DSparkDraft
from dspark_hf.training.checkpointing import (
    SHARDED_DIR,
    commit_checkpoint,
    is_sharded,
    latest_checkpoint,
    load_checkpoint,
    load_training_position,
    save_checkpoint,
    stage_checkpoint,
    staging_path,
    write_training_state,
)
from dspark_hf.training.data import Example
from dspark_hf.training.draft_objective import DraftObjective
from dspark_hf.training.drafts import EAGLE3, bind_target_embeddings, build_draft, copy_trainable_weights, save_draft
from dspark_hf.training.eagle3_objective import Eagle3Objective
from dspark_hf.training.fsdp import (
    check_fsdp_setup,
    configure_fsdp_plugin,
    full_trainable_state,
    load_sharded,
    save_sharded,
    trainable_names,
    uses_fsdp,
)
from dspark_hf.training.packing import chain_rows, pack_blocks, sample_anchors, valid_anchors
from dspark_hf.training.target_outputs import FeatureCache, OnlineTargetOutputs, target_logits

METHODS = ("dspark", "dflash", EAGLE3)
EAGLE3_POSITIONS = ("all", "anchors")

__all__ = ["METHODS", "TrainConfig", "Trainer", "build_draft", "draft_from_checkpoint", "save_draft"]


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (defaults: the reference recipe, scaled down where it is per-run)."""

    output_dir: str
    method: str = "dspark"
    markov_head: str = "vanilla"
    markov_rank: int = 64
    num_hidden_layers: int = 2
    block_size: int = 7
    target_layer_ids: list[int] | None = None
    num_anchors: int = 64
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 4
    learning_rate: float = 6e-4
    warmup_ratio: float = 0.04
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    save_every: int = 100
    keep_checkpoints: int = 2
    feature_cache: str | None = None
    save_dtype: str = "float32"
    bf16: bool = True  # autocast on GPU only
    cpu_bf16: bool = False  # bf16 autocast on CPU too (for CPUs with AVX512-BF16 / AMX; weights stay float32)
    stop_after: int | None = None  # end the run after this step, as a kill would (tests)
    progress: bool = True
    draft_vocab: int | None = None  # K: a reduced output vocabulary of the K most frequent answer tokens
    draft_vocab_ids: list[int] | None = None  # filled from the training answers when draft_vocab is set
    ttt_length: int = 7  # eagle3: chain steps (tokens drafted per round)
    step_loss_decay: float = 0.8  # eagle3: weight of chain step k is step_loss_decay ** k
    eagle3_positions: str = "all"  # eagle3: "all" rows (DeepSpec's loss) or the sampled "anchors" (CPU-scaled)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise DSparkError(f"--method must be one of {METHODS}, got {self.method!r}.")
        if self.eagle3_positions not in EAGLE3_POSITIONS:
            raise DSparkError(f"--eagle3-positions must be one of {EAGLE3_POSITIONS}, got {self.eagle3_positions!r}.")
        if self.method == EAGLE3 and self.draft_vocab:
            raise DSparkError("--draft-vocab is for DSpark and DFlash drafts; an EAGLE-3 draft covers the whole target vocabulary.")


def end_process_group() -> None:
    """Tear down the process group of a multi-process run (no-op otherwise), every rank together. Left to
    interpreter exit, gloo's threads can be destroyed while still joinable and abort a rank ("terminate called
    without an active exception", seen once in a two-process CPU test after its work was done)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def mixed_precision(bf16: bool, cpu_bf16: bool) -> str:
    """accelerate's ``mixed_precision``: bf16 autocast on a GPU unless ``bf16`` is off, on a CPU only
    when ``cpu_bf16`` asks for it."""
    on_gpu = torch.cuda.is_available()
    return "bf16" if ((bf16 and on_gpu) or (cpu_bf16 and not on_gpu)) else "no"


def epoch_order(num_examples: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def anchor_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 10_000_019 + index)


class Trainer:
    """Runs :class:`TrainConfig` on ``examples`` against ``target``; :meth:`train` returns the draft."""

    def __init__(self, target, examples: list[Example], cfg: TrainConfig, accelerator=None, initial_draft=None) -> None:
        from accelerate import Accelerator

        self.cfg = cfg
        self.accelerator = accelerator or Accelerator(
            mixed_precision=mixed_precision(cfg.bf16, cfg.cpu_bf16)
        )
        check_fsdp_setup(self.accelerator)
        self.fsdp = uses_fsdp(self.accelerator)
        self.target = target.to(self.accelerator.device).eval()
        self.examples = [e for e in examples if valid_anchors(torch.tensor(e.assistant_mask)).numel() > 0]
        if not self.examples:
            raise DSparkError("No training sequence has two consecutive assistant tokens to anchor a block on.")
        if cfg.draft_vocab and not cfg.draft_vocab_ids:
            cfg.draft_vocab_ids = self._draft_vocabulary(cfg.draft_vocab)
        self.draft = self._new_draft()
        if initial_draft is not None:  # warm start: cfg carries initial_draft's shape (warm_start_fields)
            copy_trainable_weights(self.draft, initial_draft, (cfg.extra or {}).get("init_from", "given"))
        self.layer_ids = self.draft.config.target_layer_ids
        world = self.accelerator.num_processes
        self.global_batch = cfg.batch_size * world
        self.steps_per_epoch = len(self.examples) // self.global_batch
        if self.steps_per_epoch == 0:
            raise DSparkError(
                f"{len(self.examples)} sequences are fewer than one global batch ({self.global_batch}); lower --batch-size."
            )
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        params = [p for p in self.draft.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        from transformers import get_cosine_schedule_with_warmup

        self.scheduler = get_cosine_schedule_with_warmup(
            self.optimizer, math.ceil(cfg.warmup_ratio * self.total_steps), self.total_steps
        )
        if self.fsdp:
            configure_fsdp_plugin(self.accelerator, self.draft, layer_units=cfg.method != EAGLE3)  # see eagle3_chain
        objective = Eagle3Objective(self.draft) if cfg.method == EAGLE3 else DraftObjective(self.draft)
        self.objective, self.optimizer = self.accelerator.prepare(objective, self.optimizer)
        self.online = OnlineTargetOutputs(self.target, self.layer_ids)
        self.cache = FeatureCache(cfg.feature_cache, self.layer_ids) if cfg.feature_cache else None

    # -- data ---------------------------------------------------------------------------------------

    def outputs_for(self, index: int):
        ids = self.examples[index].input_ids
        if self.cache is not None and self.cache.has(ids):
            return self.cache.get(ids)
        return self.online(ids)

    def fill_cache(self) -> None:
        """Compute the feature cache for every sequence (main process), so all epochs read it."""
        if self.cache is None:
            return
        if self.accelerator.is_main_process:
            self.cache.fill(self.online, [e.input_ids for e in self.examples], progress=self.cfg.progress)
        self.accelerator.wait_for_everyone()
        self.cache.refresh()

    def step_indices(self, step: int) -> list[int]:
        """The sequences this process trains on at ``step``."""
        epoch, in_epoch = divmod(step, self.steps_per_epoch)
        order = epoch_order(len(self.examples), self.cfg.seed, epoch)
        chosen = order[in_epoch * self.global_batch : (in_epoch + 1) * self.global_batch].tolist()
        acc = self.accelerator
        return chosen[acc.process_index :: acc.num_processes]

    def packed_sequence(self, step: int, index: int):
        example = self.examples[index]
        ids = torch.tensor(example.input_ids)
        mask = torch.tensor(example.assistant_mask)
        epoch = step // self.steps_per_epoch
        anchors = sample_anchors(mask, self.cfg.num_anchors, anchor_generator(self.cfg.seed, epoch, index))
        cfg = self.draft.config
        if self.cfg.method == EAGLE3:  # the same anchors, as chain rows (all rows for DeepSpec's own loss)
            return chain_rows(ids, mask, cfg.ttt_length, anchors if self.cfg.eagle3_positions == "anchors" else None)
        return pack_blocks(ids, mask, anchors, cfg.block_size, cfg.mask_token_id)

    # -- loop ---------------------------------------------------------------------------------------

    def train(self) -> DSparkDraft:
        cfg, acc = self.cfg, self.accelerator
        out = Path(cfg.output_dir)
        ckpt_dir = out / "checkpoints"
        start = 0
        latest = latest_checkpoint(ckpt_dir)
        if latest is not None:
            start = self.load_checkpoint(latest)
            acc.print(f"Resuming from {latest} (step {start} of {self.total_steps}).")
        self.fill_cache()
        log_path = out / "train_log.jsonl"
        if acc.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            # num_processes: the global batch is batch_size x num_processes (read by the learning curve)
            (out / "train_config.json").write_text(json.dumps({**asdict(cfg), "num_processes": acc.num_processes}, indent=1))
        bar = tqdm(
            total=self.total_steps, initial=start, desc=f"train {cfg.method}", unit="step",
            disable=not (cfg.progress and acc.is_main_process), dynamic_ncols=True,
        )
        tokens, t0 = 0, time.perf_counter()
        for step in range(start, self.total_steps):
            indices = self.step_indices(step)
            totals = {"loss": 0.0, "ce": 0.0, "l1": 0.0, "conf": 0.0, "acc": 0.0}
            self.objective.train()
            for j, index in enumerate(indices):
                outputs = self.outputs_for(index)
                packed = self.packed_sequence(step, index)
                with torch.no_grad(), acc.autocast():  # bf16 under mixed precision, as the reference's targets
                    tgt = target_logits(self.target, outputs.final_hidden[packed.target_positions].to(acc.device)).float()
                # DDP all-reduces once, after the last sequence; FSDP reduce-scatters after every
                # sequence into sharded gradients (no_sync would keep the full gradients meanwhile).
                sync = self.fsdp or j == len(indices) - 1
                context = acc.no_sync(self.objective) if not sync else _null()
                with context, acc.autocast():
                    parts = self.objective(outputs.features, packed, tgt)
                    acc.backward(parts.total / len(indices))
                tokens += len(self.examples[index].input_ids)
                totals["loss"] += float(parts.total.detach()) / len(indices)
                totals["ce"] += float(parts.ce.detach()) / len(indices)
                totals["l1"] += float(parts.l1.detach()) / len(indices)
                totals["conf"] += float(parts.confidence.detach()) / len(indices) if parts.confidence is not None else 0.0
                totals["acc"] += float(parts.accuracy) / len(indices)
            if cfg.grad_clip:
                acc.clip_grad_norm_(self.objective.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            done = step + 1
            elapsed = time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix(loss=f"{totals['loss']:.3f}", acc=f"{totals['acc']:.2f}", tok_s=f"{tokens * acc.num_processes / elapsed:.0f}")
            if acc.is_main_process:
                with log_path.open("a") as log:
                    log.write(json.dumps({"step": done, "lr": self.scheduler.get_last_lr()[0], **totals, "elapsed_s": round(elapsed, 2)}) + "\n")
            if done % cfg.save_every == 0 or done == self.total_steps:
                self.save_checkpoint(ckpt_dir, done)
            if cfg.stop_after is not None and done >= cfg.stop_after:
                bar.close()
                self.online.close()
                return self.trained_draft()
        bar.close()
        draft = self.trained_draft()
        if acc.is_main_process:
            save_draft(draft, out / "draft", cfg.save_dtype)
            counts = out / "token_counts.json"
            if cfg.draft_vocab and counts.is_file():  # the counts the draft vocabulary was chosen from
                (out / "draft" / counts.name).write_bytes(counts.read_bytes())
        acc.wait_for_everyone()
        self.online.close()
        return draft

    def _draft_vocabulary(self, k: int) -> list[int]:
        """The ``k`` most frequent answer tokens (assistant-masked) of the training sequences, the target's
        end-of-turn ids always in; their counts are written to ``OUTPUT_DIR/token_counts.json``."""
        from dspark_hf.models.dspark.draft_vocab import TOKEN_COUNTS_NAME, count_tokens, end_of_turn_ids, top_tokens, write_token_counts

        counts = count_tokens([t for t, m in zip(e.input_ids, e.assistant_mask) if m] for e in self.examples)
        required = end_of_turn_ids(self.target)
        if self.accelerator.is_main_process:
            out = Path(self.cfg.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            write_token_counts(counts, out / TOKEN_COUNTS_NAME)
        return top_tokens(counts, k, required)

    # -- state ---------------------------------------------------------------------------------------

    def _new_draft(self) -> DSparkDraft:
        """A fresh draft on the accelerator's device, sharing (not copying) the target's embedding and
        LM head there (built on CPU, it first holds copies of them when the target is on a GPU)."""
        draft = build_draft(self.target, self.cfg).to(self.accelerator.device)
        bind_target_embeddings(draft, self.target)
        return draft

    def trained_draft(self) -> DSparkDraft:
        """The draft being trained as a plain draft (``DSparkDraft`` or ``Eagle3Draft``) on every process:
        under FSDP a new draft bound to the target and holding the gathered full weights (collective),
        else the draft itself."""
        if not self.fsdp:
            return self.accelerator.unwrap_model(self.objective).draft
        draft = self._new_draft()
        state = full_trainable_state(self.objective)
        missing, unexpected = draft.load_state_dict(state, strict=False)
        if unexpected or set(missing) & set(trainable_names(draft, prefix="")):
            raise RuntimeError(f"Gathered FSDP weights do not fit the draft (missing {missing}, unexpected {unexpected}).")
        return draft

    def save_checkpoint(self, directory: Path, step: int) -> None:
        """Checkpoint ``step`` into ``directory`` (every process calls it; see :mod:`.checkpointing`)."""
        acc, keep = self.accelerator, self.cfg.keep_checkpoints
        if not self.fsdp:
            if acc.is_main_process:
                save_checkpoint(directory, step, acc.unwrap_model(self.objective).draft, self.optimizer, self.scheduler, keep=keep)
            acc.wait_for_everyone()
            return
        if acc.is_main_process:
            stage_checkpoint(directory, step)
        acc.wait_for_everyone()
        staged = staging_path(directory, step)
        save_sharded(staged / SHARDED_DIR, self.objective, self.optimizer.optimizer)
        state = full_trainable_state(self.objective, rank0_only=True)
        if acc.is_main_process:
            write_training_state(staged, step, self.scheduler, draft_state=state, extra={"sharded": True})
            commit_checkpoint(directory, step, keep)
        acc.wait_for_everyone()

    def load_checkpoint(self, path: Path) -> int:
        """Restore checkpoint ``path`` (weights, optimizer, scheduler, RNGs); returns its step."""
        if not self.fsdp:
            return load_checkpoint(path, self.accelerator.unwrap_model(self.objective).draft, self.optimizer, self.scheduler)
        if not is_sharded(path):
            from dspark_hf.errors import CheckpointError

            raise CheckpointError(f"Checkpoint {path} was not written under FSDP: resume it without --use_fsdp.")
        load_sharded(path / SHARDED_DIR, self.objective, self.optimizer.optimizer)
        return load_training_position(path, self.scheduler)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def draft_from_checkpoint(target, checkpoint: str | Path) -> DSparkDraft:
    """The draft of a training checkpoint (``OUTPUT_DIR/checkpoints/checkpoint-N``), bound to ``target``;
    the run's ``train_config.json`` (next to ``checkpoints/``) gives its shape."""
    from safetensors.torch import load_file

    checkpoint = Path(checkpoint)
    stored = json.loads((checkpoint.parent.parent / "train_config.json").read_text())
    cfg = TrainConfig(**{k: v for k, v in stored.items() if k in TrainConfig.__dataclass_fields__})
    draft = build_draft(target, cfg)
    state = load_file(str(checkpoint / "draft.safetensors"))
    draft.load_state_dict(state, strict=False)
    return draft.eval()
