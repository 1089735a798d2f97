"""The large-file (LFS) path of the loopback Hub (tests/hub_server.py), through the real huggingface_hub
client, as the Hugging Face Hub serves and takes weights: ``*.safetensors`` are LFS files whose bytes
live on a separate storage server (the Hub's CDN / bucket, another origin) reached through signed URLs.

- Download: HEAD ``/resolve`` answers 302 with the LFS metadata (``X-Linked-Etag`` / ``X-Linked-Size``
  / ``Location``); the client GETs the bytes from the storage, without its token.
- Listings (tree, paths-info, model_info with blobs) carry ``lfs: {oid, size, pointerSize}``.
- Upload (``HfApi.upload_folder``, the call ``push_draft_to_hub`` makes): preupload says ``lfs``, the LFS
  batch API hands out storage URLs (single PUT + verify, or multipart + completion), the commit carries
  ``lfsFile`` entries. Re-pushing uploads nothing.

Client code runs in fresh processes (tests/hub_worker.py, ``hf_*`` ops: huggingface_hub alone, no
torch), with ``HF_HUB_DISABLE_XET=1`` (the loopback Hub speaks LFS, not Xet). Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request

import pytest
import torch
from safetensors.torch import save

from hub_server import LoopbackHub, git_blob_oid, lfs_pointer
from hub_worker import run_steps

WRITER_TOKEN = "hf_test_writer"
PRIVATE = "someone/lfs_weights"  # private: the token goes to the Hub, never to the storage
PUSHED = "me/lfs_pushed"
CHUNK = 64 * 1024  # multipart part size: the big shard below goes up in 4 parts

SHARD_1 = "model-00001-of-00002.safetensors"
SHARD_2 = "model-00002-of-00002.safetensors"
NESTED = "sub/extra.safetensors"
WEIGHTS = (SHARD_1, SHARD_2, NESTED)


def _weights(seed: int, n: int) -> bytes:
    g = torch.Generator().manual_seed(seed)
    return save({"w": torch.randn(n, generator=g), "b": torch.randn(16, generator=g)})


def _repo_files() -> dict[str, bytes]:
    files = {SHARD_1: _weights(1, 50_000), SHARD_2: _weights(2, 12_000), NESTED: _weights(3, 4_000)}
    files["model.safetensors.index.json"] = json.dumps({"metadata": {}, "weight_map": {"w": SHARD_1, "b": SHARD_2}}).encode()
    files["config.json"] = json.dumps({"model_type": "dspark", "hidden_size": 64}).encode()
    files["README.md"] = b"---\nlicense: apache-2.0\n---\n# LFS test repo\n"
    return files


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _ok(result: dict) -> dict:
    assert result["ok"], result
    return result


@pytest.fixture(scope="module")
def hub():
    server = LoopbackHub(lifetime_s=240, multipart_chunk_size=CHUNK)
    server.files = _repo_files()
    server.add_repo(PRIVATE, server.files, readers=(WRITER_TOKEN,))
    yield server
    server.close()


@pytest.fixture(scope="module")
def downloaded(hub, tmp_path_factory):
    """One client session (with a token) reading PRIVATE: metadata, downloads, listings; results by name."""
    steps = {
        "meta_weights": {"op": "hf_metadata", "repo_id": PRIVATE, "filename": SHARD_1},
        "meta_config": {"op": "hf_metadata", "repo_id": PRIVATE, "filename": "config.json"},
        **{name: {"op": "hf_download", "repo_id": PRIVATE, "filename": name}
           for name in ("config.json", "model.safetensors.index.json", *WEIGHTS)},
        "listing": {"op": "hf_listing", "repo_id": PRIVATE, "paths": ["config.json", SHARD_1, "sub"]},
    }
    before = len(hub.log)
    results = run_steps(list(steps.values()), endpoint=hub.endpoint, cache=tmp_path_factory.mktemp("lfs_cache"), token=WRITER_TOKEN)
    return dict(zip(steps, results)), hub.log[before:]


def test_weights_download_through_the_lfs_redirect(hub, downloaded):
    """HEAD /resolve of a weight answers 302 + LFS metadata; the client reads X-Linked-Etag / X-Linked-Size /
    Location, GETs the bytes from the storage without its token, and caches them as blobs/<sha256>;
    the Hub itself only ever sends regular files.

    Fails when the Hub serves weights directly instead of redirecting: in ``_HubHandler._dispatch``,
    replace ``if repo.is_lfs(filename, len(data)):`` by ``if False:`` (metadata location is the Hub,
    etag the git blob id, and the storage log is empty)."""
    results, log = downloaded
    files, head = hub.files, hub.repos[PRIVATE].refs["main"]
    meta = _ok(results["meta_weights"])
    assert meta["etag"] == _sha256(files[SHARD_1]) and meta["size"] == len(files[SHARD_1]) and meta["commit_hash"] == head
    assert meta["location"].startswith(hub.storage_endpoint + "/repos/") and "signature=" in meta["location"]
    config = _ok(results["meta_config"])
    assert config["etag"] == git_blob_oid(files["config.json"]) and config["location"] == f"{hub.endpoint}/{PRIVATE}/resolve/main/config.json"
    for name in ("config.json", "model.safetensors.index.json", *WEIGHTS):
        got = _ok(results[name])
        assert got["sha256"] == _sha256(files[name]), name  # bit-identical
        assert got["blob"] == (_sha256(files[name]) if name.endswith(".safetensors") else git_blob_oid(files[name])), name
    redirects = {r.filename for r in log if r.server == "hub" and r.method == "HEAD" and r.status == 302}
    assert redirects == set(WEIGHTS)
    assert not [r for r in log if r.server == "hub" and r.method == "GET" and r.filename in WEIGHTS]
    storage_gets = [(r.filename, r.status) for r in log if r.server == "storage" and r.method == "GET"]
    assert sorted(storage_gets) == sorted((name, 200) for name in WEIGHTS)
    assert not [r for r in log if r.server == "storage" and r.authorization]  # the token never left the Hub
    assert all(r.authorization for r in log if r.server == "hub")  # ...which needed it (private repo)
    assert sorted(hub.served_by_hub(PRIVATE)) == ["config.json", "model.safetensors.index.json"]
    assert sorted(hub.fetched(PRIVATE)) == sorted(["config.json", "model.safetensors.index.json", *WEIGHTS])


def test_listings_carry_the_lfs_pointer_metadata(hub, downloaded):
    """list_repo_tree, get_paths_info and model_info(files_metadata=True) give, for each weight, the LFS
    oid (sha256), size and pointer size, and as blob id the git id of the pointer file; regular files
    have no lfs and their own git id.

    Fails without the LFS entry: in ``Repo.entry``, replace ``if self.is_lfs(path, len(data)):`` by
    ``if False:`` (weights listed as regular blobs, ``lfs`` None)."""
    results, _ = downloaded
    listing = _ok(results["listing"])
    files = hub.files

    def expected(path: str) -> dict:
        data = files[path]
        if path.endswith(".safetensors"):
            pointer = lfs_pointer(data)
            return {"path": path, "size": len(data), "blob_id": git_blob_oid(pointer),
                    "lfs": {"sha256": _sha256(data), "size": len(data), "pointer_size": len(pointer)}}
        return {"path": path, "size": len(data), "blob_id": git_blob_oid(data), "lfs": None}

    assert sorted(listing["tree"], key=lambda f: f["path"]) == sorted([expected(p) for p in files] + [{"path": "sub", "folder": True}],
                                                                      key=lambda f: f["path"])
    assert sorted(listing["siblings"], key=lambda f: f["path"]) == [expected(p) for p in sorted(files)]
    assert listing["paths_info"] == [expected("config.json"), expected(SHARD_1), {"path": "sub", "folder": True}]
    assert listing["top"] == sorted([p for p in files if "/" not in p] + ["sub"])  # not recursive: the folder, not its file


def test_storage_only_honours_urls_the_hub_signed(hub):
    """The storage answers a signed URL (and a Range of it), refuses a tampered or unsigned one, and
    refuses a PUT whose bytes do not have the announced sha256.

    Fails when the storage stops checking: make ``LoopbackHub.check_signature`` return True."""
    data = hub.files[SHARD_2]
    oid = _sha256(data)
    url = hub.lfs_download_url(PRIVATE, oid, SHARD_2)
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=100-199"}), timeout=5) as r:
        assert r.status == 206 and r.read() == data[100:200]
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200 and r.read() == data
    for bad in (url.replace("signature=", "signature=0"), url.split("?")[0],
                url.replace(oid, _sha256(hub.files[SHARD_1]))):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=5)
        assert err.value.code == 403, bad
    put = urllib.request.Request(hub.lfs_upload_url(PRIVATE, "0" * 64, 5), data=b"12345", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(put, timeout=5)
    assert err.value.code == 400 and "BadDigest" in err.value.read().decode()


@pytest.fixture(scope="module")
def pushed(hub, tmp_path_factory):
    """One client session (writer token): upload_folder of a fresh folder to PUSHED, the same folder again,
    then the weights downloaded back into an empty cache."""
    folder = tmp_path_factory.mktemp("push_src")
    for name, data in hub.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    steps = [{"op": "hf_upload_folder", "repo_id": PUSHED, "folder": str(folder), "commit_message": "weights"},
             {"op": "hf_upload_folder", "repo_id": PUSHED, "folder": str(folder), "commit_message": "again"},
             *({"op": "hf_download", "repo_id": PUSHED, "filename": name} for name in WEIGHTS)]
    before = len(hub.log)
    results = run_steps(steps, endpoint=hub.endpoint, cache=tmp_path_factory.mktemp("push_cache"), token=WRITER_TOKEN)
    return results, hub.log[before:]


def test_push_uploads_weights_through_lfs(hub, pushed):
    """upload_folder: preupload answers lfs for the weights, the batch API hands out storage URLs, the
    bytes go to the storage (the big shard in CHUNK-sized parts + completion, the others in one PUT +
    verify), then the commit names them as lfsFile entries; the Hub never receives weight bytes, and
    the committed and re-downloaded weights are bit-identical to the local files.

    Fails when the Hub takes weights inline (the old protocol): in ``_HubHandler._preupload``, answer
    ``"regular"`` for every file (the commit then carries the weights base64-inline, and is refused)."""
    results, log = pushed
    first = _ok(results[0])
    repo = hub.repos[PUSHED]
    files = hub.files
    tree = repo.commits[first["commit"]]
    assert {p: tree[p] for p in files} == files  # bit-identical, every file
    commit_entries = dict((path, key) for key, path in repo.api_commits[0])
    assert commit_entries == {p: "lfsFile" if p.endswith(".safetensors") else "file" for p in files}

    mine = [r for r in log if r.repo_id == PUSHED or r.what == "lfs-complete"]
    i_commit = next(i for i, r in enumerate(mine) if r.what == "commit")
    first_push, later = mine[:i_commit + 1], mine[i_commit + 1:]
    order = [r.what for r in first_push if r.what in ("preupload", "lfs-batch", "lfs-put", "lfs-part", "lfs-verify", "lfs-complete", "commit")]
    assert order[:2] == ["preupload", "lfs-batch"] and order[-1] == "commit"
    n_parts = -(-len(files[SHARD_1]) // CHUNK)
    assert n_parts == 4 and sorted(order[2:-1]) == sorted(["lfs-part"] * n_parts + ["lfs-complete"] + ["lfs-put", "lfs-verify"] * 2)
    assert all(r.status == 200 for r in first_push if r.what.startswith("lfs-"))
    puts = {r.filename: r.received for r in first_push if r.what == "lfs-put"}
    assert puts == {_sha256(files[SHARD_2]): len(files[SHARD_2]), _sha256(files[NESTED]): len(files[NESTED])}
    assert sum(r.received for r in first_push if r.what == "lfs-part") == len(files[SHARD_1])
    hub_received = sum(r.received for r in first_push if r.server == "hub")
    assert hub_received < min(len(files[w]) for w in WEIGHTS)  # not one weight's bytes went to the Hub
    assert not [r for r in mine if r.server == "storage" and r.authorization]
    assert all(repo.lfs_objects[_sha256(files[w])] == files[w] for w in WEIGHTS)

    again = _ok(results[1])  # same folder: the batch API says the storage has every object => no upload, no commit
    assert again["commit"] == first["commit"] and len(repo.api_commits) == 1
    assert "lfs-batch" in [r.what for r in later]
    assert [r.what for r in later if r.what in ("lfs-put", "lfs-part", "lfs-verify", "lfs-complete", "commit")] == []
    for name, result in zip(WEIGHTS, results[2:]):
        assert _ok(result)["sha256"] == _sha256(files[name]), name
    assert sorted(hub.fetched(PUSHED)) == sorted(WEIGHTS) and hub.served_by_hub(PUSHED) == []


def _post(hub: LoopbackHub, path: str, body: bytes, content_type: str) -> tuple[int, str]:
    request = urllib.request.Request(f"{hub.endpoint}{path}", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {WRITER_TOKEN}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_commit_refuses_weights_that_did_not_come_through_lfs(hub):
    """A commit naming an LFS object the storage does not hold is refused (422), and so is a weight sent
    inline as a regular file (400); the LFS batch API hands out no upload for an object already stored.

    Fails when the commit trusts the client's pointer: in ``_HubHandler._commit``, take an unknown
    ``lfsFile`` oid as empty content (``data = repo.lfs_objects.get(value.get("oid"), b"")``) and check
    only the ``algo`` (drop the ``data is None`` and size conditions)."""
    repo = hub.add_repo("someone/strict", {"config.json": b"{}", SHARD_2: hub.files[SHARD_2]})
    head = repo.refs["main"]

    def commit(*entries: dict) -> tuple[int, str]:
        lines = [{"key": "header", "value": {"summary": "x"}}, *entries]
        return _post(hub, "/api/models/someone/strict/commit/main", "".join(json.dumps(x) + "\n" for x in lines).encode(),
                     "application/x-ndjson")

    status, text = commit({"key": "lfsFile", "value": {"path": "w.safetensors", "algo": "sha256", "oid": "ab" * 32, "size": 3}})
    assert status == 422 and "not in storage" in text
    inline = {"key": "file", "value": {"path": "w.safetensors", "encoding": "base64", "content": "AAEC"}}
    status, text = commit(inline)
    assert status == 400 and "through LFS" in text
    assert repo.refs["main"] == head
    known = {"oid": _sha256(hub.files[SHARD_2]), "size": len(hub.files[SHARD_2])}
    status, text = _post(hub, "/someone/strict.git/info/lfs/objects/batch",
                         json.dumps({"operation": "upload", "transfers": ["basic"], "objects": [known, {"oid": "cd" * 32, "size": 7}]}).encode(),
                         "application/vnd.git-lfs+json")
    objects = json.loads(text)["objects"]
    assert status == 200 and objects[0] == known and set(objects[1]["actions"]) == {"upload", "verify"}
    status, _ = commit({"key": "lfsFile", "value": {"path": "copy.safetensors", "algo": "sha256", **known}})
    assert status == 200 and repo.commits[repo.refs["main"]]["copy.safetensors"] == hub.files[SHARD_2]
