"""Downloads through the real huggingface_hub client against a loopback Hub (tests/hub_server.py) and
against the Hub cache it leaves behind, with ``HF_HUB_OFFLINE=1``.

Client code runs in fresh processes (tests/hub_worker.py) so ``HF_ENDPOINT`` / ``HF_HUB_CACHE`` /
``HF_TOKEN`` / ``HF_HUB_OFFLINE`` act as they do for a user. Only 127.0.0.1 is ever contacted. The
loopback Hub serves ``*.safetensors`` through LFS (a redirect to its storage server) and takes them the
same way on push; tests/test_hub_lfs.py checks that protocol itself.
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import FIXTURES_DIR
from dspark_hf import DSparkDraft
from hub_server import LoopbackHub
from hub_worker import run_steps
from v4_repo import RAW_CONFIG as V4_CONFIG
from v4_repo import drafter_tensors, write_v4_repo

WRITER_TOKEN = "hf_test_writer"

DSPARK = "deepseek-ai/dspark_qwen3_4b_block7"
DFLASH = "deepseek-ai/dflash_qwen3_4b_block7"
PINNED = "someone/pinned_draft"
SHARDED = "someone/sharded_draft"
V4 = "deepseek-ai/DeepSeek-V4-Flash-DSpark"
GATED = "someone/gated_draft"
PRIVATE = "someone/private_draft"
TARGET_ONLY = "Qwen/Qwen3-0.6B-lookalike"
NO_CONFIG = "someone/empty_repo"
PUSHED = "me/pushed_draft"

pytestmark = pytest.mark.skipif(not (FIXTURES_DIR / "qwen3_dspark_gated").is_dir(), reason="shared fixtures absent")


def _checksum(folder: Path) -> float:
    return float(sum(v.double().sum() for v in DSparkDraft.from_pretrained(folder).state_dict().values()))


def _fixture_files(name: str) -> dict[str, bytes]:
    folder = FIXTURES_DIR / name
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _v4_repo(tmp: Path) -> tuple[dict[str, bytes], dict[str, float]]:
    """A V4 repo (tests/v4_repo.py: tiny V4 config with its dspark_* keys, a drafter in the released
    mtp.* layout) sharded in four: the mtp.* tensors sit in shards 3 and 4 only (shard 3 also holds
    target tensors). Also written, differently sharded, as a local folder ``tmp / "v4_local"``."""
    drafter = drafter_tensors(seed=3)
    write_v4_repo(tmp / "v4_local", drafter)
    g = torch.Generator().manual_seed(0)
    stage0 = {k: v for k, v in drafter.items() if k.startswith("mtp.0.")}
    shards = {
        "model-00001-of-00004.safetensors": {"embed.weight": torch.randn(64, 16, generator=g),
                                              "layers.0.attn.wq_a.weight": torch.randn(8, 16, generator=g)},
        "model-00002-of-00004.safetensors": {"layers.1.attn.wq_a.weight": torch.randn(8, 16, generator=g)},
        "model-00003-of-00004.safetensors": {"layers.2.ffn.gate.weight": torch.randn(4, 16, generator=g), **stage0},
        "model-00004-of-00004.safetensors": {**{k: v for k, v in drafter.items() if k not in stage0},
                                              "head.weight": torch.randn(64, 16, generator=g)},
    }
    files: dict[str, bytes] = {}
    weight_map = {}
    for shard, tensors in shards.items():
        save_file(tensors, tmp / shard)
        files[shard] = (tmp / shard).read_bytes()
        weight_map.update({name: shard for name in tensors})
    files["model.safetensors.index.json"] = json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}).encode()
    files["config.json"] = json.dumps(V4_CONFIG).encode()
    files["README.md"] = b"# V4\n"
    sums = {name: float(t.double().sum()) for tensors in shards.values() for name, t in tensors.items() if name.startswith("mtp.")}
    return files, sums


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hub_repos")
    server = LoopbackHub(lifetime_s=240)
    server.add_repo(DSPARK, _fixture_files("qwen3_dspark_gated"))
    server.add_repo(DFLASH, _fixture_files("qwen3_dflash"))
    pinned = server.add_repo(PINNED, _fixture_files("qwen3_dspark_vanilla"))
    first = pinned.refs["main"]
    pinned.refs["v1"] = first
    pinned.commit({"model.safetensors": (FIXTURES_DIR / "qwen3_dspark_rnn" / "model.safetensors").read_bytes(),
                   "config.json": (FIXTURES_DIR / "qwen3_dspark_rnn" / "config.json").read_bytes()}, message="rnn head")
    sharded = tmp / "sharded"
    DSparkDraft.from_pretrained(FIXTURES_DIR / "qwen3_dspark_vanilla").save_pretrained(sharded, max_shard_size="200KB")
    server.add_folder(SHARDED, sharded)
    v4_files, v4_sums = _v4_repo(tmp)
    server.add_repo(V4, v4_files)
    server.add_repo(GATED, _fixture_files("qwen3_dflash"), gated=True)
    server.add_repo(PRIVATE, _fixture_files("qwen3_dflash"), readers=(WRITER_TOKEN,))
    server.add_repo(TARGET_ONLY, {"config.json": json.dumps({"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"]}).encode(),
                                  "model.safetensors": b"not used"})
    server.add_repo(NO_CONFIG, {"README.md": b"# nothing here\n"})
    server.first_pinned_commit = first
    server.v4_sums = v4_sums
    server.v4_local = tmp / "v4_local"
    server.cache = tmp_path_factory.mktemp("hf_cache")
    yield server
    server.close()


def _ok(result: dict) -> dict:
    assert result["ok"], result
    return result


def _fails(result: dict, error: str, *fragments: str) -> None:
    assert not result["ok"], result
    assert result["error"] == error and result["dspark"], result
    assert "\n" not in result["message"], result["message"]
    for fragment in fragments:
        assert fragment in result["message"], result["message"]


@pytest.fixture(scope="module")
def online(hub):
    """One online session (no token) through every download path and error; results by name."""
    steps = {
        "dspark": {"op": "load", "repo_id": DSPARK},
        "dflash": {"op": "load", "repo_id": DFLASH},
        "plain_from_pretrained": {"op": "from_pretrained", "repo_id": DSPARK},
        "pinned_sha": {"op": "resolve", "repo_id": PINNED, "revision": hub.first_pinned_commit},
        "pinned_tag": {"op": "resolve", "repo_id": PINNED, "revision": "v1"},
        "pinned_main": {"op": "resolve", "repo_id": PINNED},
        "sharded": {"op": "load", "repo_id": SHARDED},
        "v4": {"op": "v4_state_dict", "repo_id": V4},
        "v4_as_draft": {"op": "load", "repo_id": V4},
        "v4_from_pretrained": {"op": "from_pretrained", "repo_id": V4},
        "unknown_repo": {"op": "resolve", "repo_id": "deepseek-ai/no_such_draft"},
        "gated": {"op": "resolve", "repo_id": GATED},
        "private_wrong_token": {"op": "resolve", "repo_id": PRIVATE, "token": "hf_reader_without_rights"},
        "unknown_revision": {"op": "resolve", "repo_id": DSPARK, "revision": "v9"},
        "not_a_draft": {"op": "resolve", "repo_id": TARGET_ONLY},
        "no_config": {"op": "resolve", "repo_id": NO_CONFIG},
        "misfit": {"op": "resolve", "repo_id": DFLASH, "target": {"vocab_size": 384, "hidden_size": 128, "intermediate_size": 256,
                                                                    "num_hidden_layers": 8, "num_attention_heads": 4}},
        "fits": {"op": "resolve", "repo_id": DFLASH, "target": {"vocab_size": 384, "hidden_size": 64, "intermediate_size": 128,
                                                                  "num_hidden_layers": 8, "num_attention_heads": 4}},
        "cli_download": {"op": "cli", "argv": ["hub", "download", DSPARK]},
        "cli_error": {"op": "cli", "argv": ["hub", "download", "deepseek-ai/no_such_draft"]},
    }
    before = len(hub.requests)
    results = run_steps(list(steps.values()), endpoint=hub.endpoint, cache=hub.cache)
    return dict(zip(steps, results)), hub.requests[before:]


def test_registry_draft_downloads_only_what_it_needs_and_matches_local(hub, online):
    results, _ = online
    r = _ok(results["dspark"])
    assert r["checksum"] == pytest.approx(_checksum(FIXTURES_DIR / "qwen3_dspark_gated"), rel=0, abs=0)
    assert r["policy"] == "ConfidenceThreshold(0.5)"  # the registry's recommendation
    assert _ok(results["dflash"])["policy"] == "WholeBlock()"
    assert _ok(results["plain_from_pretrained"])["checksum"] == r["checksum"]
    assert set(hub.fetched(DSPARK)) == {"config.json", "model.safetensors"}  # never reference.safetensors
    assert "model.safetensors" not in hub.served_by_hub(DSPARK)  # its bytes came from the LFS storage
    sharded = _ok(results["sharded"])
    assert sharded["checksum"] == pytest.approx(_checksum(FIXTURES_DIR / "qwen3_dspark_vanilla"), rel=1e-12)
    assert "model.safetensors.index.json" in hub.fetched(SHARDED)
    assert sum(f.startswith("model-000") for f in hub.fetched(SHARDED)) >= 2


def test_revision_pinning(hub, online):
    results, _ = online
    sha, tag, main = (_ok(results[k]) for k in ("pinned_sha", "pinned_tag", "pinned_main"))
    assert sha["commit"] == tag["commit"] == hub.first_pinned_commit
    assert main["commit"] == hub.repos[PINNED].refs["main"] != hub.first_pinned_commit
    assert _checksum(Path(sha["folder"])) == _checksum(FIXTURES_DIR / "qwen3_dspark_vanilla")
    assert _checksum(Path(main["folder"])) == _checksum(FIXTURES_DIR / "qwen3_dspark_rnn")


def test_v4_repo_fetches_only_the_shards_holding_mtp(hub, online):
    results, _ = online
    r = _ok(results["v4"])
    assert r["names"] == sorted(hub.v4_sums)
    assert r["sums"] == pytest.approx(hub.v4_sums, rel=1e-12)
    assert set(hub.fetched(V4)) == {"config.json", "model.safetensors.index.json",
                                    "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"}


def test_v4_drafter_loads_end_to_end_from_the_hub(hub, online):
    """load_draft and DSparkDraft.from_pretrained on a V4 Hub id give the drafter, equal to the one the
    same tensors give from a local folder, with only the mtp shards downloaded."""
    from dspark_hf.models.deepseek_v4 import load_v4_drafter_from_folder

    results, _ = online
    local = load_v4_drafter_from_folder(hub.v4_local)
    local_sum = float(sum(v.double().sum() for v in local.state_dict().values()))
    loaded = _ok(results["v4_as_draft"])
    assert loaded["checksum"] == local_sum and loaded["n_params"] == sum(v.numel() for v in local.state_dict().values())
    assert loaded["policy"] == "ConfidenceThreshold(0.5)"  # the registry's recommendation for V4
    assert _ok(results["v4_from_pretrained"])["checksum"] == local_sum
    assert set(hub.fetched(V4)) == {"config.json", "model.safetensors.index.json",
                                    "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"}


def test_every_hub_error_is_one_clear_line(hub, online):
    results, _ = online
    _fails(results["unknown_repo"], "RepoNotFoundError", "deepseek-ai/no_such_draft", "404")
    _fails(results["gated"], "RepoAccessError", GATED, "gated", "log in")
    _fails(results["private_wrong_token"], "RepoAccessError", PRIVATE, "403")
    _fails(results["unknown_revision"], "RevisionNotFoundError", "'v9'")
    _fails(results["not_a_draft"], "CheckpointError", "not a DSpark draft", "qwen3")
    _fails(results["no_config"], "CheckpointError", "no config.json", "not a DSpark draft")
    _fails(results["misfit"], "CompatibilityError", "hidden size is 64", "is 128")
    _ok(results["fits"])
    assert hub.fetched(TARGET_ONLY) == ["config.json"]  # refused before any weight was fetched


def test_cli_download(online):
    results, _ = online
    ok = _ok(results["cli_download"])
    assert ok["code"] == 0 and DSPARK in ok["stdout"] and "config.json, model.safetensors" in ok["stdout"]
    err = _ok(results["cli_error"])
    assert err["code"] == 2 and err["stderr"].count("\n") == 1 and "404" in err["stderr"]


def test_offline_cache_as_the_client_laid_it_out(hub, online):
    results, _ = online
    repo_dir = hub.cache / f"models--{DSPARK.replace('/', '--')}"
    assert (repo_dir / "refs" / "main").is_file() and (repo_dir / "blobs").is_dir()
    before = len(hub.log)
    offline = run_steps(
        [{"op": "load", "repo_id": DSPARK},
         {"op": "resolve", "repo_id": PINNED, "revision": "v1"},
         {"op": "resolve", "repo_id": SHARDED},
         {"op": "v4_state_dict", "repo_id": V4},
         {"op": "resolve", "repo_id": "deepseek-ai/dspark_qwen3_8b_block7"},
         {"op": "resolve", "repo_id": GATED},
         {"op": "load", "repo_id": V4}],
        endpoint=hub.endpoint, cache=hub.cache, offline=True,
    )
    assert len(hub.log) == before  # nothing went to the network (Hub or LFS storage)
    assert _ok(offline[0])["checksum"] == results["dspark"]["checksum"]
    assert _ok(offline[1])["commit"] == hub.first_pinned_commit
    _ok(offline[2])
    assert _ok(offline[3])["sums"] == pytest.approx(hub.v4_sums, rel=1e-12)
    _fails(offline[4], "OfflineNotCachedError", "HF_HUB_OFFLINE=1", "deepseek-ai/dspark_qwen3_8b_block7")
    _fails(offline[5], "OfflineNotCachedError", "HF_HUB_OFFLINE=1")
    assert _ok(offline[6])["checksum"] == results["v4_as_draft"]["checksum"]


@pytest.mark.slow  # about 25 s: the client retries a refused connection 5 times with backoff before giving up
def test_no_network_and_nothing_cached(tmp_path):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    (result,) = run_steps([{"op": "resolve", "repo_id": DSPARK}], endpoint=dead, cache=tmp_path / "cache")
    _fails(result, "OfflineNotCachedError", "cannot be reached", DSPARK)


def test_token_from_environment_and_push_round_trip(hub, tmp_path):
    figures = [{"benchmark": "gsm8k", "tau": 3.25, "acceptance_rate": 0.375, "source": "test run"}]
    results = run_steps(
        [{"op": "resolve", "repo_id": GATED},
         {"op": "resolve", "repo_id": PRIVATE},
         {"op": "push", "folder": str(FIXTURES_DIR / "qwen3_dspark_gated"), "repo_id": PUSHED, "figures": figures,
          "base_model": "Qwen/Qwen3-4B"},
         {"op": "load", "repo_id": PUSHED},
         {"op": "push", "folder": str(FIXTURES_DIR / "qwen3_dspark_gated"), "repo_id": "me/other", "token": "hf_bad"}],
        endpoint=hub.endpoint, cache=tmp_path / "cache", token=WRITER_TOKEN,
    )
    _ok(results[0])
    _ok(results[1])
    _ok(results[2])
    repo = hub.repos[PUSHED]
    assert results[2]["commit_url"].endswith(repo.refs["main"])
    files = repo.commits[repo.refs["main"]]
    assert {"config.json", "model.safetensors", "README.md"} <= set(files)
    readme = files["README.md"].decode()
    assert "library_name: dspark_hf" in readme and "base_model: Qwen/Qwen3-4B" in readme
    assert "| gsm8k | 3.25 | 0.375 | - | - | test run |" in readme
    assert _ok(results[3])["checksum"] == _checksum(FIXTURES_DIR / "qwen3_dspark_gated")
    # the weights went up through LFS (batch, PUT to the storage) and came back down from it
    oid = hashlib.sha256(files["model.safetensors"]).hexdigest()
    assert [("lfsFile", "model.safetensors")] == [e for e in repo.api_commits[-1] if e[1].endswith(".safetensors")]
    assert [(r.method, r.status) for r in hub.storage_log(PUSHED) if r.what == "lfs-put"] == [("PUT", 200)]
    assert repo.lfs_objects[oid] == files["model.safetensors"]
    assert "model.safetensors" in hub.fetched(PUSHED) and "model.safetensors" not in hub.served_by_hub(PUSHED)
    _fails(results[4], "RepoAccessError", "me/other", "401")
