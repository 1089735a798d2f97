"""Runs Hub client steps in a fresh process, so ``HF_ENDPOINT`` / ``HF_HUB_CACHE`` / ``HF_HUB_OFFLINE``
/ ``HF_TOKEN`` take effect exactly as they do for a user (huggingface_hub reads them at import).

Usage: ``python hub_worker.py '<json list of steps>'``; prints one JSON list of results. A step is
``{"op": ..., **args}``; a result is ``{"ok": true, ...}`` or ``{"ok": false, "error": <class name>,
"message": <str(err)>, "dspark": <is a DSparkError>}``.

The ``hf_*`` ops call huggingface_hub directly (no torch import), to look at the protocol itself.
Tests call :func:`run_steps`, which runs this script with the environment of a user of the loopback Hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path


def run_steps(steps: list[dict], *, endpoint: str, cache: Path, token: str | None = None, offline: bool = False) -> list[dict]:
    """Run ``steps`` in a fresh process whose huggingface_hub talks to ``endpoint`` and caches in ``cache``.

    ``HF_HUB_DISABLE_XET=1``: the loopback Hub speaks the LFS protocol (huggingface_hub's path when
    hf_xet is not installed), not Xet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(cache), HF_HOME=str(cache.parent / "hf_home"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_ETAG_TIMEOUT="5",
               HF_HUB_DOWNLOAD_TIMEOUT="10", HF_HUB_DISABLE_XET="1", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    if token:
        env["HF_TOKEN"] = token
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run([sys.executable, __file__, json.dumps(steps)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == len(steps)
    return results


def _file_info(f) -> dict:
    if not hasattr(f, "blob_id"):  # a RepoFolder
        return {"path": f.path, "folder": True}
    lfs = getattr(f, "lfs", None)
    return {"path": getattr(f, "path", None) or getattr(f, "rfilename", None), "size": f.size, "blob_id": f.blob_id,
            "lfs": None if lfs is None else {"sha256": lfs.sha256, "size": lfs.size, "pointer_size": lfs.pointer_size}}


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

        from dspark_hf.loading import load_draft

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
    if op == "hf_download":
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(step.pop("repo_id"), step.pop("filename"), **step)
        data = Path(path).read_bytes()
        return {"path": path, "blob": os.path.basename(os.path.realpath(path)), "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest()}
    if op == "hf_metadata":
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        meta = get_hf_file_metadata(hf_hub_url(step.pop("repo_id"), step.pop("filename"), revision=step.pop("revision", None)))
        return {"commit_hash": meta.commit_hash, "etag": meta.etag, "location": meta.location, "size": meta.size}
    if op == "hf_listing":
        from huggingface_hub import HfApi

        api, repo_id, revision = HfApi(), step.pop("repo_id"), step.pop("revision", None)
        return {"tree": [_file_info(f) for f in api.list_repo_tree(repo_id, recursive=True, revision=revision)],
                "top": sorted(f.path for f in api.list_repo_tree(repo_id, revision=revision)),
                "paths_info": [_file_info(f) for f in api.get_paths_info(repo_id, step.pop("paths"), revision=revision)],
                "siblings": [_file_info(f) for f in api.model_info(repo_id, revision=revision, files_metadata=True).siblings]}
    if op == "hf_upload_folder":
        from huggingface_hub import HfApi

        api, repo_id = HfApi(), step.pop("repo_id")
        api.create_repo(repo_id, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=step.pop("folder"), **step)
        return {"commit": info.oid, "commit_url": str(info.commit_url)}
    raise ValueError(f"unknown op {op}")


def main() -> None:
    results = []
    for step in json.loads(sys.argv[1]):
        try:
            results.append({"ok": True, **_run(dict(step))})
        except Exception as err:  # noqa: BLE001 - reported to the test
            dspark = False
            if "dspark_hf" in sys.modules:  # the hf_* ops never import it (nor torch)
                from dspark_hf.errors import DSparkError

                dspark = isinstance(err, DSparkError)
            results.append({"ok": False, "error": type(err).__name__, "message": str(err), "dspark": dspark})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
