"""cProfile of one 128-token DSpark call (default policy, float32 target, bf16 draft, one thread) on a code prompt of
our own (not a benchmark prompt): where a call's time goes. Run from the repository root."""
import cProfile, pstats, time, torch
torch.set_num_threads(1)
import dspark_hf
from transformers import GenerationConfig
from dspark_hf.loading import load_target, load_draft
target, tok = load_target(None)
draft = load_draft("src/dspark_hf/bundled/default_draft", target, dtype=torch.bfloat16)
msgs = [{"role": "user", "content": "Write a Python function that returns the n-th Fibonacci number, with a docstring and tests."}]
ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
cfg = GenerationConfig(max_new_tokens=128, dspark_policy="hardware", do_sample=False)
target.generate(ids, assistant_model=draft, generation_config=GenerationConfig(max_new_tokens=8, dspark_policy="hardware", do_sample=False))
pr = cProfile.Profile(); t = time.perf_counter(); pr.enable()
out = target.generate(ids, assistant_model=draft, generation_config=cfg)
pr.disable(); print("seconds", time.perf_counter() - t, draft.last_telemetry.summary())
st = pstats.Stats(pr); st.sort_stats("tottime").print_stats(25)
