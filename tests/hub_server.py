"""A loopback Hugging Face Hub for tests: the file and LFS protocol huggingface_hub 2.4 speaks, nothing more.

Two servers on ``127.0.0.1`` (ephemeral ports, daemon threads; :meth:`LoopbackHub.close` or the
context manager stops both, and they stop by themselves after ``lifetime_s``):

- the **Hub** (``hub.endpoint``, what ``HF_ENDPOINT`` should be set to): API, git metadata, small files;
- the **LFS storage** (``hub.storage_endpoint``, the CDN / S3 bucket of the real Hub): large-file bytes,
  reached only through signed URLs that the Hub hands out. It is another origin (another port), so the
  client drops its ``Authorization`` header when it follows them, as it does for the real CDN.

Large files are the ones matching ``Repo.lfs_patterns`` (``*.safetensors``, as the Hub's default
``.gitattributes``), non-empty. Everything else (config.json, index json, README) is a regular git blob.

Hub endpoints:

- ``HEAD|GET /{repo}/resolve/{revision}/{path}``. Regular file: 200 with the bytes, ``X-Repo-Commit``,
  ``ETag`` (the git blob id) and ``Content-Length``; ``Range: bytes=a-b`` answered with 206. LFS file:
  302 to a signed storage URL (``Location``), with ``X-Repo-Commit``, ``ETag`` and ``X-Linked-Etag``
  (the sha256 of the content) and ``X-Linked-Size`` (its size); the Hub never sends LFS bytes.
- ``GET /api/models/{repo}[/revision/{revision}]``: repo info (sha, siblings; ``?blobs=true`` adds
  size, blobId and ``lfs: {sha256, size, pointerSize}``).
- ``GET /api/models/{repo}/tree/{revision}[/{path}]`` (``?recursive=true``) and ``POST
  /api/models/{repo}/paths-info/{revision}`` (form ``paths=...``): entries with ``oid`` (git blob id: of
  the LFS pointer for LFS files), ``size`` and ``lfs: {oid, size, pointerSize}``.
- ``POST /api/repos/create``, ``POST /api/validate-yaml`` (accepts).
- ``POST /api/models/{repo}/preupload/{revision}``: ``uploadMode`` ``"lfs"`` for LFS files, ``"regular"``
  otherwise, and the ``oid`` of the file already at that path (sha256 for LFS, git blob id otherwise).
- ``POST /{repo}.git/info/lfs/objects/batch`` (git-lfs batch API, ``operation: upload``): per object,
  no actions when the storage already holds it, else an ``upload`` action (signed storage PUT URL) and a
  ``verify`` action (``POST /{repo}.git/info/lfs/objects/verify``). With ``multipart_chunk_size`` set,
  objects larger than it get the Hub's multipart form instead: ``header: {chunk_size, "1": url, ...}``
  (signed storage part URLs) and an ``href`` to ``POST /api/complete_multipart?...`` (signed).
- ``POST /api/models/{repo}/commit/{revision}``: NDJSON header + ``file`` (base64; refused for an LFS
  path: it must come through LFS) + ``lfsFile`` ``{path, algo, oid, size}`` (refused, 422, unless the
  storage holds that object) + ``deletedFile`` / ``deletedFolder``.
- ``GET /api/models/{repo}/xet-{read,write}-token/...``: 501; this loopback Hub speaks LFS, not Xet
  (clients set ``HF_HUB_DISABLE_XET=1``).

Storage endpoints (signed, expiring URLs; 403 otherwise): ``GET|HEAD /repos/{repo}/{oid}`` (``Range``
answered with 206), ``PUT /repos/{repo}/{oid}`` (the bytes must have that sha256 and the announced size),
``PUT /multipart/{upload_id}/{part}`` (answers the part's ``ETag``).

Errors as the Hub gives them (status + ``X-Error-Code``): unknown repo 404 ``RepoNotFound``, gated repo
without an accepted token 401 ``GatedRepo``, private repo with a token lacking the right 403, unknown
revision 404 ``RevisionNotFound``, unknown file 404 ``EntryNotFound``.

Logs: ``hub.requests``, every Hub request as ``(method, path)``; ``hub.log``, every request to either
server in arrival order as a :class:`Logged` (server, method, status, repo, file, bytes in and out,
whether it carried ``Authorization``). :meth:`LoopbackHub.fetched` lists the files whose bytes were
downloaded (from either server), :meth:`LoopbackHub.storage_log` the storage's requests.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

LFS_PATTERNS = ("*.safetensors",)
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
URL_LIFETIME_S = 3600


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob holding ``data`` (what the Hub reports for regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    """The git-lfs pointer file git stores in place of ``data``."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256_hex(data)}\nsize {len(data)}\n".encode()


def _commit_sha(parent: str, files: dict[str, bytes], message: str) -> str:
    digest = hashlib.sha1(parent.encode() + message.encode())
    for path in sorted(files):
        digest.update(path.encode() + hashlib.sha1(files[path]).digest())
    return digest.hexdigest()


@dataclass
class Logged:
    """One request to either server."""

    server: str  # "hub" or "storage"
    method: str
    path: str
    status: int = 0
    what: str = ""  # "file", "redirect", "lfs-object", "lfs-put", "lfs-part", "lfs-batch", "lfs-verify", "commit", ...
    repo_id: str | None = None
    filename: str | None = None  # the repo path a download was for
    received: int = 0  # request body bytes
    sent: int = 0  # response body bytes
    authorization: bool = False  # the request carried an Authorization header


@dataclass
class Repo:
    """One repo: commits (sha -> files) and refs (branch or tag -> sha); its LFS objects (sha256 ->
    bytes) as the storage holds them (every LFS file committed, plus objects uploaded but not committed)."""

    repo_id: str
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool = False
    readers: tuple[str, ...] | None = None  # tokens allowed to read; None: public
    lfs_patterns: tuple[str, ...] = LFS_PATTERNS
    lfs_objects: dict[str, bytes] = field(default_factory=dict)
    api_commits: list[list[tuple[str, str]]] = field(default_factory=list)  # per commit API call: (entry key, path)

    def is_lfs(self, path: str, size: int) -> bool:
        name = path.rsplit("/", 1)[-1]
        return size > 0 and any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(path, p) for p in self.lfs_patterns)

    def commit(self, files: dict[str, bytes], branch: str = "main", message: str = "commit",
               deleted: tuple[str, ...] = ()) -> str:
        parent = self.refs.get(branch, "")
        tree = {p: d for p, d in self.commits.get(parent, {}).items() if not any(p == x or p.startswith(x.rstrip("/") + "/") for x in deleted)}
        tree.update(files)
        for path, data in files.items():
            if self.is_lfs(path, len(data)):
                self.lfs_objects.setdefault(sha256_hex(data), data)
        sha = _commit_sha(parent, tree, message)
        self.commits[sha] = tree
        self.refs[branch] = sha
        return sha

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        if revision in self.commits:
            return revision
        return None

    def entry(self, path: str, data: bytes) -> dict:
        """The tree / paths-info entry of a file."""
        if self.is_lfs(path, len(data)):
            pointer = lfs_pointer(data)
            return {"type": "file", "oid": git_blob_oid(pointer), "size": len(data), "path": path,
                    "lfs": {"oid": sha256_hex(data), "size": len(data), "pointerSize": len(pointer)}}
        return {"type": "file", "oid": git_blob_oid(data), "size": len(data), "path": path}


class LoopbackHub:
    """The Hub and its LFS storage. ``endpoint`` is what ``HF_ENDPOINT`` should be set to.

    ``multipart_chunk_size``: LFS uploads larger than this go through the multipart form (parts of
    this size); None: always a single PUT."""

    def __init__(self, lifetime_s: float = 300.0, tokens: tuple[str, ...] = ("hf_test_writer",),
                 multipart_chunk_size: int | None = None) -> None:
        self.repos: dict[str, Repo] = {}
        self.tokens = set(tokens)
        self.multipart_chunk_size = multipart_chunk_size
        self.requests: list[tuple[str, str]] = []
        self.log: list[Logged] = []
        self._multipart: dict[str, dict] = {}
        self._secret = secrets.token_bytes(16)
        self._lock = threading.Lock()
        hub = self

        class HubHandler(_HubHandler):
            server_hub = hub

        class StorageHandler(_StorageHandler):
            server_hub = hub

        self._servers = []
        for handler in (HubHandler, StorageHandler):
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            thread.start()
            self._servers.append((server, thread))
        self.endpoint = f"http://127.0.0.1:{self._servers[0][0].server_address[1]}"
        self.storage_endpoint = f"http://127.0.0.1:{self._servers[1][0].server_address[1]}"
        self._timer = threading.Timer(lifetime_s, self.close)
        self._timer.daemon = True
        self._timer.start()

    # -- repos ------------------------------------------------------------------------------------

    def add_repo(self, repo_id: str, files: dict[str, bytes], *, gated: bool = False, readers: tuple[str, ...] | None = None) -> Repo:
        repo = Repo(repo_id, gated=gated, readers=readers)
        repo.commit(files, message="initial")
        self.repos[repo_id] = repo
        return repo

    def add_folder(self, repo_id: str, folder: Path, **kwargs) -> Repo:
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return self.add_repo(repo_id, files, **kwargs)

    # -- what happened ----------------------------------------------------------------------------

    def fetched(self, repo_id: str) -> list[str]:
        """Repo paths of ``repo_id`` whose bytes were GET-downloaded, from the Hub (regular files) or the
        storage (LFS files), in order."""
        return [r.filename for r in list(self.log) if r.repo_id == repo_id and r.method == "GET" and r.what in ("file", "lfs-object")
                and r.status in (200, 206)]

    def served_by_hub(self, repo_id: str) -> list[str]:
        """Repo paths of ``repo_id`` whose bytes the Hub itself sent (never an LFS file)."""
        return [r.filename for r in list(self.log) if r.server == "hub" and r.repo_id == repo_id and r.what == "file" and r.sent]

    def storage_log(self, repo_id: str | None = None) -> list[Logged]:
        return [r for r in list(self.log) if r.server == "storage" and (repo_id is None or r.repo_id == repo_id)]

    # -- signed storage URLs ----------------------------------------------------------------------

    def _sign(self, *fields: object) -> str:
        return hmac.new(self._secret, "\n".join(map(str, fields)).encode(), hashlib.sha256).hexdigest()

    def _signed(self, base: str, kind: str, *fields: object, **query: object) -> str:
        expires = int(time.time()) + URL_LIFETIME_S
        query = {**query, "expires": expires, "signature": self._sign(kind, *fields, *query.values(), expires)}
        return f"{base}?{urlencode(query)}"

    def check_signature(self, kind: str, fields: tuple, query: dict[str, str], names: tuple[str, ...]) -> bool:
        try:
            expires = int(query["expires"])
            given = query["signature"]
            values = [query[n] for n in names]
        except (KeyError, ValueError):
            return False
        return expires >= time.time() and hmac.compare_digest(given, self._sign(kind, *fields, *values, expires))

    def lfs_download_url(self, repo_id: str, oid: str, filename: str) -> str:
        return self._signed(f"{self.storage_endpoint}/repos/{quote(repo_id)}/{oid}", "GET", repo_id, oid, filename=filename)

    def lfs_upload_url(self, repo_id: str, oid: str, size: int) -> str:
        return self._signed(f"{self.storage_endpoint}/repos/{quote(repo_id)}/{oid}", "PUT", repo_id, oid, size=size)

    # -- lifecycle --------------------------------------------------------------------------------

    def close(self) -> None:
        self._timer.cancel()
        for server, thread in self._servers:
            if thread.is_alive():
                server.shutdown()
            server.server_close()

    def __enter__(self) -> "LoopbackHub":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    server_hub: LoopbackHub
    server_name = "?"
    protocol_version = "HTTP/1.1"
    rec: Logged

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    # -- plumbing -------------------------------------------------------------------------------

    def _start(self, method: str) -> tuple[str, dict[str, str]]:
        """Log the request; its unquoted path and query."""
        url = urlsplit(self.path)
        self.rec = Logged(self.server_name, method, unquote(url.path), authorization="Authorization" in self.headers)
        hub = self.server_hub
        with hub._lock:
            hub.log.append(self.rec)
            if self.server_name == "hub":
                hub.requests.append((method, unquote(url.path)))
        return url.path, {k: v[-1] for k, v in parse_qs(url.query).items()}

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.rec.status = status
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
            self.rec.sent = len(body)

    def _json(self, status: int, obj, headers: dict[str, str] | None = None, head: bool = False) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})}, head)

    def _error(self, status: int, code: str | None, message: str, head: bool = False) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers, head)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(chunks)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        self.rec.received = len(body)
        return body

    @staticmethod
    def _range(byte_range: str, size: int) -> tuple[int, int]:
        start_text, _, end_text = byte_range[6:].partition("-")
        if not start_text:  # suffix range: the last N bytes
            return max(size - int(end_text), 0), size - 1
        return int(start_text), min(int(end_text), size - 1) if end_text else size - 1

    def _send_bytes(self, data: bytes, headers: dict[str, str], head: bool) -> None:
        """``data`` (200) or the asked ``Range`` of it (206)."""
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream", **headers}
        byte_range = self.headers.get("Range")
        if byte_range and byte_range.startswith("bytes=") and not head:
            start, end = self._range(byte_range, len(data))
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return self._send(206, data[start:end + 1], headers)
        return self._send(200, data, headers, head)


class _StorageHandler(_Handler):
    """The LFS storage (CDN / bucket): signed URLs only."""

    server_name = "storage"

    def do_HEAD(self) -> None:
        self._get(head=True)

    def do_GET(self) -> None:
        self._get(head=False)

    def _object_route(self, path: str) -> tuple[str, str] | None:
        parts = [unquote(p) for p in path.split("/")]
        # /repos/{owner}/{name}/{oid}
        if len(parts) == 5 and parts[1] == "repos":
            return f"{parts[2]}/{parts[3]}", parts[4]
        return None

    def _get(self, head: bool) -> None:
        hub = self.server_hub
        path, query = self._start("HEAD" if head else "GET")
        route = self._object_route(path)
        if route is None:
            return self._error(404, None, "NoSuchKey", head)
        repo_id, oid = route
        self.rec.what, self.rec.repo_id, self.rec.filename = "lfs-object", repo_id, query.get("filename")
        if not hub.check_signature("GET", (repo_id, oid), query, ("filename",)):
            return self._error(403, None, "SignatureDoesNotMatch: not a URL this Hub signed", head)
        repo = hub.repos.get(repo_id)
        data = repo.lfs_objects.get(oid) if repo else None
        if data is None:
            return self._error(404, None, "NoSuchKey", head)
        name = query["filename"].rsplit("/", 1)[-1]
        headers = {"ETag": f'"{hashlib.md5(data).hexdigest()}"',
                   "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";"}
        return self._send_bytes(data, headers, head)

    def do_PUT(self) -> None:
        hub = self.server_hub
        path, query = self._start("PUT")
        body = self._body()
        parts = [unquote(p) for p in path.split("/")]
        # /multipart/{upload_id}/{part}
        if len(parts) == 4 and parts[1] == "multipart":
            upload_id, part = parts[2], parts[3]
            self.rec.what = "lfs-part"
            if not hub.check_signature("PART", (upload_id, part), query, ()):
                return self._error(403, None, "SignatureDoesNotMatch: not a URL this Hub signed")
            with hub._lock:
                upload = hub._multipart.get(upload_id)
                if upload is None:
                    return self._error(404, None, "NoSuchUpload")
                upload["parts"][int(part)] = body
            self.rec.repo_id, self.rec.filename = upload["repo_id"], upload["oid"]
            return self._send(200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
        route = self._object_route(path)
        if route is None:
            return self._error(404, None, "NoSuchKey")
        repo_id, oid = route
        self.rec.what, self.rec.repo_id, self.rec.filename = "lfs-put", repo_id, oid
        if not hub.check_signature("PUT", (repo_id, oid), query, ("size",)):
            return self._error(403, None, "SignatureDoesNotMatch: not a URL this Hub signed")
        if len(body) != int(query["size"]) or sha256_hex(body) != oid:
            return self._error(400, None, f"BadDigest: got {len(body)} bytes with sha256 {sha256_hex(body)}, "
                                          f"announced {query['size']} bytes with sha256 {oid}")
        repo = hub.repos.get(repo_id)
        if repo is None:
            return self._error(404, None, "NoSuchBucket")
        repo.lfs_objects[oid] = body
        return self._send(200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})


class _HubHandler(_Handler):
    server_name = "hub"

    def _commit_for_read(self, repo_id: str, revision: str, head: bool) -> tuple[Repo, str] | None:
        """The readable repo and the commit ``revision`` names, or None once the error is sent."""
        repo = self._repo_for_read(repo_id, head)
        if repo is None:
            return None
        sha = repo.resolve(revision)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
            return None
        return repo, sha

    def _repo_for_read(self, repo_id: str, head: bool) -> Repo | None:
        hub = self.server_hub
        repo = hub.repos.get(repo_id)
        token = self._token()
        if repo is None:
            self._error(404 if token is None or token in hub.tokens else 401, "RepoNotFound", "Repository not found", head)
            return None
        if repo.readers is not None and token not in repo.readers:
            if token is None:
                self._error(401, "RepoNotFound", "Repository not found", head)
            else:
                self._error(403, None, "You do not have permission to access this repository", head)
            return None
        if repo.gated and token not in hub.tokens:
            self._error(401, "GatedRepo", "Access to this model is restricted: you must accept its conditions", head)
            return None
        return repo

    def _repo_for_write(self, repo_id: str) -> Repo | None:
        """The repo a writer token may push to, or None once the error is sent."""
        if self._token() not in self.server_hub.tokens:
            self._error(401, None, "Invalid credentials in Authorization header")
            return None
        repo = self.server_hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
        return repo

    # -- verbs ----------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_POST(self) -> None:
        hub = self.server_hub
        raw_path, query = self._start("POST")
        path = unquote(raw_path)
        body = self._body()
        parts = path.split("/")
        # /{owner}/{name}.git/info/lfs/objects/{batch|verify}
        if len(parts) == 7 and parts[2].endswith(".git") and parts[3:6] == ["info", "lfs", "objects"]:
            repo = self._repo_for_write(f"{parts[1]}/{parts[2][:-4]}")
            if repo is None:
                return None
            if parts[6] == "batch":
                return self._lfs_batch(repo, body)
            if parts[6] == "verify":
                return self._lfs_verify(repo, body)
        if path == "/api/complete_multipart":  # signed: the client sends no token here
            return self._complete_multipart(query, body)
        if self._token() not in hub.tokens:
            return self._error(401, None, "Invalid credentials in Authorization header")
        if path == "/api/validate-yaml":  # README metadata check before a commit: accept
            return self._json(200, {"errors": [], "warnings": []})
        if path == "/api/repos/create":
            payload = json.loads(body or b"{}")
            repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
            url = {"url": f"{hub.endpoint}/{repo_id}"}
            if repo_id in hub.repos:
                return self._json(409, {"error": "You already created this model repo", **url})
            hub.add_repo(repo_id, {".gitattributes": GITATTRIBUTES})
            return self._json(200, url)
        # /api/models/{owner}/{name}/{preupload|commit|paths-info}/{revision...}
        if len(parts) >= 7 and parts[1] == "api" and parts[2] == "models" and parts[5] in ("preupload", "commit", "paths-info"):
            repo_id, action, revision = f"{parts[3]}/{parts[4]}", parts[5], "/".join(parts[6:])
            if action == "paths-info":
                return self._paths_info(repo_id, revision, body)
            repo = self._repo_for_write(repo_id)
            if repo is None:
                return None
            if action == "preupload":
                return self._preupload(repo, revision, body)
            return self._commit(repo, revision, body)
        return self._error(404, None, f"No route for POST {path}")

    # -- uploads --------------------------------------------------------------------------------

    def _preupload(self, repo: Repo, revision: str, body: bytes) -> None:
        self.rec.what, self.rec.repo_id = "preupload", repo.repo_id
        sha = repo.resolve(revision)
        tree = repo.commits.get(sha, {}) if sha else {}
        answer = []
        for f in json.loads(body)["files"]:
            lfs = repo.is_lfs(f["path"], int(f["size"]))
            existing = tree.get(f["path"])
            oid = None if existing is None else (sha256_hex(existing) if repo.is_lfs(f["path"], len(existing)) else git_blob_oid(existing))
            answer.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        return self._json(200, {"files": answer})

    def _lfs_batch(self, repo: Repo, body: bytes) -> None:
        hub = self.server_hub
        self.rec.what, self.rec.repo_id = "lfs-batch", repo.repo_id
        payload = json.loads(body)
        if payload.get("operation") != "upload":
            return self._error(400, None, "loopback hub: only the upload operation of the LFS batch API")
        objects, transfer = [], "basic"
        for obj in payload["objects"]:
            oid, size = obj.get("oid"), obj.get("size")
            if not (isinstance(oid, str) and len(oid) == 64 and all(c in "0123456789abcdef" for c in oid)) or not isinstance(size, int):
                objects.append({"oid": str(oid), "size": size if isinstance(size, int) else 0,
                                "error": {"code": 422, "message": "Invalid oid or size"}})
                continue
            if oid in repo.lfs_objects:  # already in storage: nothing to upload
                objects.append({"oid": oid, "size": size})
                continue
            chunk = hub.multipart_chunk_size
            if chunk and size > chunk:
                transfer = "multipart"
                upload_id = uuid.uuid4().hex
                n_parts = -(-size // chunk)
                with hub._lock:
                    hub._multipart[upload_id] = {"repo_id": repo.repo_id, "oid": oid, "size": size, "parts": {}}
                header = {"chunk_size": str(chunk)}
                for n in range(1, n_parts + 1):
                    header[str(n)] = hub._signed(f"{hub.storage_endpoint}/multipart/{upload_id}/{n}", "PART", upload_id, n)
                href = hub._signed(f"{hub.endpoint}/api/complete_multipart", "COMPLETE", uploadId=upload_id)
                objects.append({"oid": oid, "size": size, "authenticated": True,
                                "actions": {"upload": {"href": href, "header": header, "expires_in": URL_LIFETIME_S}}})
                continue
            objects.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                "upload": {"href": hub.lfs_upload_url(repo.repo_id, oid, size), "expires_in": URL_LIFETIME_S},
                "verify": {"href": f"{hub.endpoint}/{repo.repo_id}.git/info/lfs/objects/verify", "expires_in": URL_LIFETIME_S},
            }})
        body = json.dumps({"transfer": transfer, "objects": objects, "hash_algo": "sha256"}).encode()
        return self._send(200, body, {"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_verify(self, repo: Repo, body: bytes) -> None:
        self.rec.what, self.rec.repo_id = "lfs-verify", repo.repo_id
        payload = json.loads(body)
        data = repo.lfs_objects.get(payload.get("oid"))
        if data is None or len(data) != payload.get("size"):
            return self._error(404, None, f"LFS object {payload.get('oid')} of size {payload.get('size')} is not in storage")
        return self._json(200, {"success": True})

    def _complete_multipart(self, query: dict[str, str], body: bytes) -> None:
        hub = self.server_hub
        self.rec.what = "lfs-complete"
        upload_id = query.get("uploadId", "")
        if not hub.check_signature("COMPLETE", (), query, ("uploadId",)):
            return self._error(403, None, "Invalid signature")
        with hub._lock:
            upload = hub._multipart.pop(upload_id, None)
        if upload is None:
            return self._error(404, None, f"No multipart upload {upload_id}")
        self.rec.repo_id = upload["repo_id"]
        payload = json.loads(body)
        stored = upload["parts"]
        listed = [(p["partNumber"], p["etag"]) for p in payload.get("parts", [])]
        if [n for n, _ in listed] != sorted(stored) or any(etag != f'"{hashlib.md5(stored[n]).hexdigest()}"' for n, etag in listed):
            return self._error(400, None, "InvalidPart: the parts listed are not the parts uploaded")
        data = b"".join(stored[n] for n in sorted(stored))
        if payload.get("oid") != upload["oid"] or sha256_hex(data) != upload["oid"] or len(data) != upload["size"]:
            return self._error(400, None, "BadDigest: the assembled parts do not have the announced sha256 and size")
        hub.repos[upload["repo_id"]].lfs_objects[upload["oid"]] = data
        return self._json(200, {"success": True})

    def _commit(self, repo: Repo, revision: str, body: bytes) -> None:
        self.rec.what, self.rec.repo_id = "commit", repo.repo_id
        files: dict[str, bytes] = {}
        deleted: list[str] = []
        entries: list[tuple[str, str]] = []
        message = "commit"
        for line in body.decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value.get("summary", message)
                continue
            entries.append((key, value["path"]))
            if key == "file":
                content = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else value["content"].encode()
                if repo.is_lfs(value["path"], len(content)):
                    return self._error(400, None, f"{value['path']} is tracked by LFS (.gitattributes): upload it through LFS, "
                                                  "not inline in the commit")
                files[value["path"]] = content
            elif key == "lfsFile":
                data = repo.lfs_objects.get(value.get("oid"))
                if value.get("algo", "sha256") != "sha256" or data is None or ("size" in value and value["size"] != len(data)):
                    return self._error(422, None, f"LFS file {value['path']} (oid {value.get('oid')}) is not in storage: "
                                                  "upload it through the LFS batch API first")
                files[value["path"]] = data
            elif key in ("deletedFile", "deletedFolder"):
                deleted.append(value["path"])
            else:
                return self._error(400, None, f"loopback hub does not support commit entries of kind {key}")
        branch = revision if revision != "main" or "main" in repo.refs else "main"
        sha = repo.commit(files, branch=branch, message=message, deleted=tuple(deleted))
        repo.api_commits.append(entries)
        self._json(200, {"commitUrl": f"{self.server_hub.endpoint}/{repo.repo_id}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None})

    # -- reads ----------------------------------------------------------------------------------

    def _paths_info(self, repo_id: str, revision: str, body: bytes) -> None:
        found = self._commit_for_read(repo_id, revision, False)
        if found is None:
            return None
        repo, sha = found
        tree = repo.commits[sha]
        out = []
        for path in parse_qs(body.decode()).get("paths", []):
            path = path.strip("/")
            if path in tree:
                out.append(repo.entry(path, tree[path]))
            elif any(p.startswith(path + "/") for p in tree):
                out.append({"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path})
        return self._json(200, out)

    def _tree(self, repo: Repo, sha: str, path: str, recursive: bool, head: bool) -> None:
        tree = repo.commits[sha]
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in tree):
            return self._error(404, "EntryNotFound", f"{path} does not exist on {sha}", head)
        out, folders = [], set()
        for name in sorted(tree):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix):].split("/")
            for depth in range(1, len(rest) if recursive else min(len(rest), 2)):
                folder = prefix + "/".join(rest[:depth])
                if folder not in folders:
                    folders.add(folder)
                    out.append({"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0, "path": folder})
            if recursive or len(rest) == 1:
                out.append(repo.entry(name, tree[name]))
        return self._json(200, out, head=head)

    def _dispatch(self, head: bool) -> None:
        hub = self.server_hub
        path, query = self._start("HEAD" if head else "GET")
        parts = [unquote(p) for p in path.split("/")]
        # /api/models/{owner}/{name}[/revision/{rev} | /tree/{rev}[/{path}] | /xet-*-token/...]
        if len(parts) >= 5 and parts[1] == "api" and parts[2] == "models":
            repo_id = f"{parts[3]}/{parts[4]}"
            if len(parts) > 5 and parts[5].startswith("xet-"):
                return self._error(501, None, "The loopback Hub speaks LFS, not Xet: set HF_HUB_DISABLE_XET=1", head)
            if len(parts) > 6 and parts[5] == "tree":
                found = self._commit_for_read(repo_id, parts[6], head)
                if found is None:
                    return None
                return self._tree(*found, "/".join(parts[7:]), query.get("recursive", "").lower() == "true", head)
            revision = "/".join(parts[6:]) if len(parts) > 6 and parts[5] == "revision" else "main"
            found = self._commit_for_read(repo_id, revision, head)
            if found is None:
                return None
            repo, sha = found
            blobs = query.get("blobs", "").lower() == "true"
            siblings = []
            for name, data in sorted(repo.commits[sha].items()):
                sibling = {"rfilename": name, "size": len(data)}
                if blobs:
                    entry = repo.entry(name, data)
                    sibling["blobId"] = entry["oid"]
                    if "lfs" in entry:
                        sibling["lfs"] = {"sha256": entry["lfs"]["oid"], "size": entry["lfs"]["size"], "pointerSize": entry["lfs"]["pointerSize"]}
                siblings.append(sibling)
            info = {"id": repo_id, "modelId": repo_id, "sha": sha, "private": repo.readers is not None,
                    "gated": "auto" if repo.gated else False, "disabled": False, "siblings": siblings, "tags": []}
            return self._json(200, info, head=head)
        # /{owner}/{name}/resolve/{revision}/{path...}
        if len(parts) >= 6 and parts[3] == "resolve":
            repo_id, revision, filename = f"{parts[1]}/{parts[2]}", parts[4], "/".join(parts[5:])
            self.rec.repo_id, self.rec.filename = repo_id, filename
            found = self._commit_for_read(repo_id, revision, head)
            if found is None:
                return None
            repo, sha = found
            data = repo.commits[sha].get(filename)
            if data is None:
                return self._error(404, "EntryNotFound", f"{filename} does not exist on {revision}", head)
            if repo.is_lfs(filename, len(data)):
                oid = sha256_hex(data)
                location = hub.lfs_download_url(repo_id, oid, filename)
                self.rec.what = "redirect"
                headers = {"X-Repo-Commit": sha, "ETag": f'"{oid}"', "X-Linked-Etag": f'"{oid}"', "X-Linked-Size": str(len(data)),
                           "Location": location, "Accept-Ranges": "bytes", "Content-Type": "text/plain; charset=utf-8"}
                return self._send(302, f"Found. Redirecting to {location}".encode(), headers, head)
            self.rec.what = "file"
            return self._send_bytes(data, {"X-Repo-Commit": sha, "ETag": f'"{git_blob_oid(data)}"'}, head)
        return self._error(404, None, f"No route for {path}", head)


def wait_until_serving(hub: LoopbackHub, timeout_s: float = 5.0) -> None:
    """Block until the server answers (it normally does at once)."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"{hub.endpoint}/api/models/none/none", timeout=1)
        except Exception as err:  # noqa: BLE001 - any HTTP answer means it is up
            if getattr(err, "code", None):
                return
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        else:
            return
