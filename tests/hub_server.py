"""A loopback Hugging Face Hub for tests: the file protocol huggingface_hub 2.4 speaks, nothing more.

Serves in-memory repos on ``127.0.0.1`` (ephemeral port, daemon thread; :meth:`LoopbackHub.close` or
the context manager stops it, and it stops by itself after ``lifetime_s``). Endpoints:

- ``HEAD|GET /{repo}/resolve/{revision}/{path}``: the file, with ``X-Repo-Commit``, ``ETag`` and
  ``Content-Length``; ``Range: bytes=a-b`` answered with 206.
- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{revision}``: repo info (sha, siblings).
- ``POST /api/repos/create``, ``POST /api/validate-yaml`` (accepts), ``POST /api/models/{repo}/preupload/{revision}`` (every file "regular"),
  ``POST /api/models/{repo}/commit/{revision}`` (NDJSON header + base64 files): a push.

Errors as the Hub gives them (status + ``X-Error-Code``): unknown repo 404 ``RepoNotFound``, gated repo
without an accepted token 401 ``GatedRepo``, private repo with a token lacking the right 403, unknown
revision 404 ``RevisionNotFound``, unknown file 404 ``EntryNotFound``. Every request is logged in
``hub.requests`` as ``(method, path)`` so tests can assert what was (not) fetched.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


def _commit_sha(parent: str, files: dict[str, bytes], message: str) -> str:
    digest = hashlib.sha1(parent.encode() + message.encode())
    for path in sorted(files):
        digest.update(path.encode() + hashlib.sha1(files[path]).digest())
    return digest.hexdigest()


@dataclass
class Repo:
    """One repo: commits (sha -> files) and refs (branch or tag -> sha)."""

    repo_id: str
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool = False
    readers: tuple[str, ...] | None = None  # tokens allowed to read; None: public

    def commit(self, files: dict[str, bytes], branch: str = "main", message: str = "commit") -> str:
        parent = self.refs.get(branch, "")
        tree = dict(self.commits.get(parent, {}))
        tree.update(files)
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


class LoopbackHub:
    """The server. ``endpoint`` is what ``HF_ENDPOINT`` should be set to."""

    def __init__(self, lifetime_s: float = 300.0, tokens: tuple[str, ...] = ("hf_test_writer",)) -> None:
        self.repos: dict[str, Repo] = {}
        self.tokens = set(tokens)
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
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

    def fetched(self, repo_id: str) -> list[str]:
        """Repo paths GET-downloaded from ``repo_id`` (in order)."""
        prefix = f"/{repo_id}/resolve/"
        out = []
        for method, path in self.requests:
            if method == "GET" and path.startswith(prefix):
                out.append(path[len(prefix):].split("/", 1)[1])
        return out

    # -- lifecycle --------------------------------------------------------------------------------

    def close(self) -> None:
        self._timer.cancel()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "LoopbackHub":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    server_hub: LoopbackHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    # -- plumbing -------------------------------------------------------------------------------

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, obj, headers: dict[str, str] | None = None, head: bool = False) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})}, head)

    def _error(self, status: int, code: str | None, message: str, head: bool = False) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers, head)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

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

    # -- verbs ----------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_POST(self) -> None:
        hub = self.server_hub
        path = unquote(urlsplit(self.path).path)
        with hub._lock:
            hub.requests.append(("POST", path))
        body = self._body()
        token = self._token()
        if token not in hub.tokens:
            return self._error(401, None, "Invalid credentials in Authorization header")
        if path == "/api/validate-yaml":  # README metadata check before a commit: accept
            return self._json(200, {"errors": [], "warnings": []})
        if path == "/api/repos/create":
            payload = json.loads(body or b"{}")
            repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
            url = {"url": f"{hub.endpoint}/{repo_id}"}
            if repo_id in hub.repos:
                return self._json(409, {"error": "You already created this model repo", **url})
            hub.add_repo(repo_id, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
            return self._json(200, url)
        parts = path.split("/")
        # /api/models/{owner}/{name}/{preupload|commit}/{revision...}
        if len(parts) >= 7 and parts[1] == "api" and parts[2] == "models" and parts[5] in ("preupload", "commit"):
            repo_id, action, revision = f"{parts[3]}/{parts[4]}", parts[5], "/".join(parts[6:])
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found")
            if action == "preupload":
                files = json.loads(body)["files"]
                return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in files]})
            return self._commit(repo, revision, body)
        return self._error(404, None, f"No route for POST {path}")

    def _commit(self, repo: Repo, revision: str, body: bytes) -> None:
        files: dict[str, bytes] = {}
        message = "commit"
        for line in body.decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            if item["key"] == "header":
                message = item["value"].get("summary", message)
            elif item["key"] == "file":
                value = item["value"]
                files[value["path"]] = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else value["content"].encode()
            else:
                return self._error(400, None, f"loopback hub does not support commit entries of kind {item['key']}")
        branch = revision if revision != "main" or "main" in repo.refs else "main"
        sha = repo.commit(files, branch=branch, message=message)
        self._json(200, {"commitUrl": f"{self.server_hub.endpoint}/{repo.repo_id}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None})

    def _dispatch(self, head: bool) -> None:
        hub = self.server_hub
        path = urlsplit(self.path).path
        with hub._lock:
            hub.requests.append(("HEAD" if head else "GET", unquote(path)))
        parts = [unquote(p) for p in path.split("/")]
        # /api/models/{owner}/{name}[/revision/{rev}]
        if len(parts) >= 5 and parts[1] == "api" and parts[2] == "models":
            repo_id = f"{parts[3]}/{parts[4]}"
            revision = "/".join(parts[6:]) if len(parts) > 6 and parts[5] == "revision" else "main"
            found = self._commit_for_read(repo_id, revision, head)
            if found is None:
                return
            repo, sha = found
            siblings = [{"rfilename": name, "size": len(data)} for name, data in sorted(repo.commits[sha].items())]
            info = {"id": repo_id, "modelId": repo_id, "sha": sha, "private": repo.readers is not None,
                    "gated": "auto" if repo.gated else False, "disabled": False, "siblings": siblings, "tags": []}
            return self._json(200, info, head=head)
        # /{owner}/{name}/resolve/{revision}/{path...}
        if len(parts) >= 6 and parts[3] == "resolve":
            repo_id, revision, filename = f"{parts[1]}/{parts[2]}", parts[4], "/".join(parts[5:])
            found = self._commit_for_read(repo_id, revision, head)
            if found is None:
                return
            repo, sha = found
            data = repo.commits[sha].get(filename)
            if data is None:
                return self._error(404, "EntryNotFound", f"{filename} does not exist on {revision}", head)
            headers = {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha1(data).hexdigest()}"', "Accept-Ranges": "bytes",
                       "Content-Type": "application/octet-stream"}
            byte_range = self.headers.get("Range")
            if byte_range and byte_range.startswith("bytes=") and not head:
                start_text, _, end_text = byte_range[6:].partition("-")
                start = int(start_text or 0)
                end = int(end_text) if end_text else len(data) - 1
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                return self._send(206, data[start:end + 1], headers)
            return self._send(200, data, headers, head)
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
