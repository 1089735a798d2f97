"""Runs Hub client steps in a fresh process, so ``HF_ENDPOINT`` / ``HF_HUB_CACHE`` / ``HF_HUB_OFFLINE``
/ ``HF_TOKEN`` take effect exactly as they do for a user (huggingface_hub reads them at import).

Usage: ``python hub_worker.py '<json list of steps>'``; prints one JSON list of results. A step is
``{"op": ..., **args}``; a result is ``{"ok": true, ...}`` or ``{"ok": false, "error": <class name>,
"message": <str(err)>, "dspark": <is a DSparkError>}``.
"""

from __future__ import annotations

import json
import sys


def _run(step: dict) -> dict:
    op = step.pop("op")
    if op == "resolve":
        from dspark_hf.hub import resolve_draft

        target = step.pop("target", None)
        target_config = None
        if target is not None:
            from transformers import Qwen3Config

            target_config = Qwen3Config(**target)
        r = resolve_draft(step.pop("repo_id"), target_config=target_config, **step)
        return {"folder": str(r.folder), "commit": r.commit, "kind": r.kind, "files": list(r.files)}
    if op == "load":
        import torch

        from dspark_hf.hub import load_draft

        draft = load_draft(step.pop("repo_id"), **step)
        state = draft.state_dict()
        return {"policy": repr(draft.verification_policy), "checksum": float(sum(v.double().sum() for v in state.values())),
                "n_params": int(sum(v.numel() for v in state.values())), "dtype": str(next(iter(state.values())).dtype),
                "torch": torch.__version__}
    if op == "from_pretrained":
        from dspark_hf import DSparkDraft

        draft = DSparkDraft.from_pretrained(step.pop("repo_id"), **step)
        return {"checksum": float(sum(v.double().sum() for v in draft.state_dict().values()))}
    if op == "v4_state_dict":
        from dspark_hf.hub import load_v4_drafter_state_dict

        tensors = load_v4_drafter_state_dict(step.pop("repo_id"), **step)
        return {"names": sorted(tensors), "sums": {k: float(v.double().sum()) for k, v in tensors.items()}}
    if op == "push":
        from dspark_hf.hub.push import push_draft_to_hub

        from dspark_hf import DSparkDraft

        draft = DSparkDraft.from_pretrained(step.pop("folder"))
        figures = step.pop("figures", None)
        url = push_draft_to_hub(draft, step.pop("repo_id"), figures=figures, **step)
        return {"commit_url": str(url)}
    if op == "cli":
        import contextlib
        import io

        from dspark_hf.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(step["argv"])
        return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
    raise ValueError(f"unknown op {op}")


def main() -> None:
    from dspark_hf.errors import DSparkError

    results = []
    for step in json.loads(sys.argv[1]):
        try:
            results.append({"ok": True, **_run(dict(step))})
        except Exception as err:  # noqa: BLE001 - reported to the test
            results.append({"ok": False, "error": type(err).__name__, "message": str(err), "dspark": isinstance(err, DSparkError)})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
