"""Self-distillation: the target answers the training prompts itself, as the reference recipe does.

Prompts are rendered with the target's chat template (generation prompt added), sorted by length and
generated in left-padded batches (greedy by default, or sampled with the given temperature / top-p /
top-k). Each answer is written as one JSON line holding the chat (``messages``), the exact token ids
(``input_ids``: prompt then generated tokens up to and including the end-of-turn token) and the
``assistant_mask``, so training sees precisely the tokens the target produced. Lines already in the
output file (matched by ``index``) are skipped, so an interrupted run continues where it stopped.

With a :class:`~.target_outputs.FeatureCache`, the target's layer outputs from these very generation
forwards are stored too, so training needs no target forward at all for these sequences.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dspark_hf.training.data import DataError, read_numbered_records, record_messages
from dspark_hf.training.target_outputs import FeatureCache, GenerationRecorder, sequence_key


@dataclass
class SamplingConfig:
    """How the target answers: greedy when ``do_sample`` is False; ``max_new_tokens`` per answer."""

    max_new_tokens: int = 192
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    batch_size: int = 16
    max_prompt_tokens: int = 192


def _done_indices(path: Path) -> set[int]:
    if not path.is_file():
        return set()
    done = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            done.add(int(json.loads(line)["index"]))
    return done


@torch.no_grad()
def self_distill(
    target, tokenizer, prompts_path: str | Path, out_path: str | Path, sampling: SamplingConfig, seed: int = 0,
    feature_cache: FeatureCache | None = None, layer_ids: list[int] | None = None,
) -> Path:
    """Answer every prompt of ``prompts_path`` with ``target`` and write ``out_path`` (JSON Lines).

    Records keep their earlier turns; the last turn must be a user turn. Prompts longer than
    ``sampling.max_prompt_tokens`` are skipped. With ``feature_cache`` (and the draft's ``layer_ids``)
    the generation forwards' features are cached. Returns ``out_path``.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    records = read_numbered_records(prompts_path)
    done = _done_indices(out_path)
    todo = []
    for index, (where, record) in enumerate(records):
        messages = record_messages(record)
        if messages is None:
            raise DataError(f"{where}: self-distillation needs prompt or messages records (this one has {sorted(record)}).")
        if messages[-1]["role"] == "assistant":
            messages = messages[:-1]
        if index in done or not messages:
            continue
        ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        ids = list(ids)
        if len(ids) <= sampling.max_prompt_tokens:
            todo.append((index, messages, ids))
    todo.sort(key=lambda item: len(item[2]))
    eos_ids = target.generation_config.eos_token_id
    eos_ids = set(eos_ids if isinstance(eos_ids, list) else [eos_ids if eos_ids is not None else tokenizer.eos_token_id])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos_ids))
    device = next(target.parameters()).device
    torch.manual_seed(seed)
    target.eval()
    generated_total, start = 0, time.perf_counter()
    recorder = GenerationRecorder(target, layer_ids) if feature_cache is not None else None
    bar = tqdm(total=len(todo), desc="self-distill", unit="prompt", dynamic_ncols=True)
    with out_path.open("a", encoding="utf-8") as out:
        for b in range(0, len(todo), sampling.batch_size):
            batch = todo[b : b + sampling.batch_size]
            width = max(len(ids) for _, _, ids in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (_, _, ids) in enumerate(batch):
                input_ids[row, width - len(ids) :] = torch.tensor(ids)
                attention[row, width - len(ids) :] = 1
            kwargs = dict(max_new_tokens=sampling.max_new_tokens, do_sample=sampling.do_sample, pad_token_id=pad_id)
            if sampling.do_sample:
                kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
            else:
                kwargs.update(temperature=None, top_p=None, top_k=None)
            if recorder is not None:
                recorder.reset()
            output = target.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs)
            lines, entries = [], {}
            for row, (index, messages, ids) in enumerate(batch):
                answer = []
                for token in output[row, width:].tolist():
                    answer.append(token)
                    if token in eos_ids:
                        break
                generated_total += len(answer)
                text = tokenizer.decode([t for t in answer if t not in eos_ids], skip_special_tokens=False)
                line = {
                    "index": index,
                    "messages": messages + [{"role": "assistant", "content": text}],
                    "input_ids": ids + answer,
                    "assistant_mask": [0] * len(ids) + [1] * len(answer),
                }
                lines.append(json.dumps(line, ensure_ascii=False) + "\n")
                if recorder is not None:
                    # every fed position: the prompt and all generated tokens but the last
                    length = len(ids) + len(answer) - 1
                    entries[sequence_key(line["input_ids"])] = recorder.outputs(row, width - len(ids), length)
            if feature_cache is not None:
                feature_cache.write_shard(f"distill-{next(iter(entries))}", entries)
            out.writelines(lines)
            out.flush()
            bar.update(len(batch))
            bar.set_postfix(gen_tok_per_s=f"{generated_total / (time.perf_counter() - start):.1f}")
    bar.close()
    if recorder is not None:
        recorder.close()
    return out_path
