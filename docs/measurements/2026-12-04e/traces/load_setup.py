"""What the trace scripts share: the bundled target and shipped draft in the load bench's dtypes (target
float32, draft bf16 where bf16 is fast), and the load bench's 18 prompts (6 each of mt-bench, gsm8k and
humaneval from index 40), one thread."""
import torch

from dspark_hf.benchmarks.prompt_sets import encode_prompts, load_prompt_set
from dspark_hf.cli.bench_concurrency import serving_dtypes
from dspark_hf.loading import load_draft, load_target


def load():
    torch.set_num_threads(1)
    dtype, draft_dtype = serving_dtypes(None, torch.device("cpu"))
    target, tokenizer = load_target(None)
    target = target.to(dtype=dtype).eval()
    draft = load_draft("src/dspark_hf/bundled/default_draft", target).to(dtype=draft_dtype).eval()
    prompts = []
    for name in ["mt-bench", "gsm8k", "humaneval"]:
        _, texts = load_prompt_set(name, 6, None, start=40)
        prompts += [ids[0].tolist() for ids in encode_prompts(tokenizer, texts)]
    return target, draft, prompts
