"""A fake Hugging Face Hub on 127.0.0.1 that answers the real huggingface_hub client as huggingface.co does.

It serves what access checks and downloads need (whoami, model_info, auth-check, tree listing, resolve)
and enforces gates with the status / X-Error-Code / X-Error-Message combinations the real Hub sends
(see hub-access.md in the shared reference folder). Pass `endpoint=hub.endpoint` explicitly to the
client: HF_ENDPOINT is read once, when huggingface_hub is imported.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

Gated = Literal[False, "auto", "manual"]
AccessState = Literal["granted", "pending", "rejected", "reset"]
TokenRole = Literal["read", "write", "fineGrained"]

ACCESS_STATES = ("granted", "pending", "rejected", "reset")
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


def git_blob_sha1(data: bytes) -> str:
    """The id git (and the Hub's tree listing) gives a file's content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def refused_endpoint() -> str:
    """An http://127.0.0.1:PORT where nothing listens: connecting is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextmanager
def stalled_endpoint() -> Iterator[str]:
    """An http://127.0.0.1:PORT whose listener is full: a TCP connect to it hangs, unanswered, until the end."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # a backlog of one, never accepted
        host, port = listener.getsockname()
        with socket.create_connection((host, port), timeout=5):  # fills it: later SYNs are dropped
            yield f"http://{host}:{port}"


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, bytes]
    gated: Gated
    private: bool
    sha: str
    access: dict[str, AccessState] = field(default_factory=dict)  # user -> state; absent = never requested

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]


@dataclass(frozen=True)
class FakeToken:
    user: str
    role: TokenRole
    can_read_gated: bool
    orgs: tuple[str, ...]


@dataclass(frozen=True)
class HubError:
    """An error answer: status, X-Error-Code (None when the Hub sends none) and X-Error-Message."""

    status: int
    code: str | None
    message: str


class FakeHub:
    """A Hub on 127.0.0.1:<free port>; use as a context manager or call start() / stop()."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.tokens: dict[str, FakeToken] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path without query), in arrival order
        self.latency = 0.0  # seconds added to every request
        self.in_flight = 0  # requests being answered now
        self.max_in_flight = 0  # the most answered at once since start
        self._stalled: set[str] = set()
        self._failing: dict[str, HubError] = {}
        self._oidc: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- configuration -------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes] | None = None,
        directory: Path | None = None,
        gated: Gated = False,
        private: bool = False,
    ) -> str:
        """Add (or replace) a model repo; returns its commit sha. A directory is read in, recursively."""
        if gated not in (False, "auto", "manual"):
            raise ValueError(f"gated must be False, 'auto' or 'manual', not {gated!r}")
        content = dict(_read_directory(directory)) if directory is not None else {}
        content.update(files or {})
        content.setdefault(".gitattributes", b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
        digest = hashlib.sha1(repo_id.encode())
        for path in sorted(content):
            digest.update(f"{path}\0{git_blob_sha1(content[path])}\0".encode())
        sha = digest.hexdigest()
        with self._lock:
            old = self.repos.get(repo_id)
            access = old.access if old else {}
            self.repos[repo_id] = FakeRepo(repo_id, content, gated, private, sha, access)
        return sha

    def add_token(
        self,
        token: str,
        user: str = "alice",
        role: TokenRole = "read",
        can_read_gated: bool = True,
        orgs: tuple[str, ...] = (),
    ) -> None:
        """Register a valid token; `can_read_gated` only matters for fine-grained tokens."""
        if role not in ("read", "write", "fineGrained"):
            raise ValueError(f"role must be 'read', 'write' or 'fineGrained', not {role!r}")
        self.tokens[token] = FakeToken(user, role, can_read_gated, tuple(orgs))

    def set_access(self, repo_id: str, user: str, state: AccessState | None) -> None:
        """Record `user`'s access request on a gated repo; None removes it (never requested)."""
        if state is not None and state not in ACCESS_STATES:
            raise ValueError(f"state must be one of {ACCESS_STATES} or None, not {state!r}")
        access = self.repos[repo_id].access
        if state is None:
            access.pop(user, None)
        else:
            access[user] = state

    def stall(self, repo_id: str) -> None:
        """Requests about this repo hang, unanswered, until the Hub stops."""
        self._stalled.add(repo_id)

    def fail(self, repo_id: str, status: int, message: str) -> None:
        """Requests about this repo get this error answer (an outage, a rate limit), without X-Error-Code."""
        self._failing[repo_id] = HubError(status, None, message)

    def add_oidc_exchange(self, id_token: str, token: str) -> None:
        """POST /oauth/token trades this CI id token (HF_OIDC_ID_TOKEN) for `token`, as Trusted Publishers do."""
        self._oidc[id_token] = token

    def paths_requested(self, method: str | None = None) -> list[str]:
        return [path for m, path in self.requests if method is None or m == method]

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeHub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.hub = self
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="fakehub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; stalled requests are released and open connections closed, so this never hangs."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- what the Hub decides --------------------------------------------------------------------

    def caller(self, authorization: str | None) -> FakeToken | None | HubError:
        """The token's owner, None when anonymous, or the error an unknown token gets on every route."""
        if not authorization:
            return None
        token = authorization.removeprefix("Bearer ").strip()
        known = self.tokens.get(token)
        return known if known is not None else HubError(401, None, INVALID_CREDENTIALS)

    def find_repo(self, repo_id: str, caller: FakeToken | None) -> FakeRepo | HubError:
        """The repo if this caller can see it: private repos are visible to their owners only."""
        repo = self.repos.get(repo_id)
        if repo is not None and (not repo.private or _owns(caller, repo)):
            return repo
        if caller is None:
            return HubError(401, "RepoNotFound", "Repository not found")
        return HubError(404, "RepoNotFound", "Repository not found")

    def gate(self, repo: FakeRepo, caller: FakeToken | None) -> HubError | None:
        """None when the caller may download the repo's files, else the error the Hub answers."""
        if not repo.gated or _owns(caller, repo):
            return None
        name = repo.repo_id
        if caller is None:
            return HubError(
                401,
                "GatedRepo",
                f"Access to model {name} is restricted. You must have access to it and be authenticated "
                "to access it. Please log in.",
            )
        if caller.role == "fineGrained" and not caller.can_read_gated:
            return HubError(
                403,
                None,
                f"Access to model {name} is restricted. Please enable access to public gated repositories "
                "in your fine-grained token settings to view this repository.",
            )
        state = repo.access.get(caller.user)
        if state == "granted":
            return None
        ask = f"Visit https://huggingface.co/{name} to ask for access."
        messages = {
            "pending": f"Your request to access model {name} is awaiting a review from the repo authors.",
            "rejected": f"Your request to access model {name} has been rejected by the repo's authors.",
            "reset": f"Your request to access model {name} has been reset by the repo's authors. {ask}",
            None: f"Access to model {name} is restricted and you are not in the authorized list. {ask}",
        }
        return HubError(403, "GatedRepo", messages[state])


def _owns(caller: FakeToken | None, repo: FakeRepo) -> bool:
    return caller is not None and repo.namespace in (caller.user, *caller.orgs)


def _read_directory(directory: Path):
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file():
            yield path.relative_to(directory).as_posix(), path.read_bytes()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's default of 5 drops bursts of connects: 1 s SYN retries
    hub: FakeHub


_MODEL_API = re.compile(r"^/api/models/(?P<ns>[^/]+)/(?P<name>[^/]+)(?P<rest>(/.*)?)$")
_RESOLVE = re.compile(r"^/(?P<ns>[^/]+)/(?P<name>[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_DATE = "2025-01-01T00:00:00.000Z"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's pooled connections expect
    timeout = 30  # idle keep-alive connections end on their own
    server: _Server

    @property
    def hub(self) -> FakeHub:
        return self.server.hub

    def setup(self) -> None:
        super().setup()
        with self.hub._lock:
            self.hub._connections.add(self.connection)

    def finish(self) -> None:
        with self.hub._lock:
            self.hub._connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence stderr logging
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch()

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    # --- routing ---------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        hub = self.hub
        with hub._lock:
            hub.requests.append((self.command, path))
            hub.in_flight += 1
            hub.max_in_flight = max(hub.max_in_flight, hub.in_flight)
        try:
            self._answer(path, query)
        finally:
            with hub._lock:
                hub.in_flight -= 1

    def _answer(self, path: str, query: dict) -> None:
        if self.hub.latency and self.hub._stopping.wait(self.hub.latency):
            return self._hang_up()
        if path == "/oauth/token" and self.command == "POST":
            return self._oidc_exchange()
        caller = self.hub.caller(self.headers.get("Authorization"))
        if isinstance(caller, HubError):
            return self._send_error(caller)

        if path == "/api/whoami-v2" and self.command == "GET":
            return self._whoami(caller)
        if (match := _MODEL_API.match(path)) and self.command == "GET":
            repo_id = f"{unquote(match['ns'])}/{unquote(match['name'])}"
            return self._model_api(repo_id, match["rest"], query, caller)
        if match := _RESOLVE.match(path):
            repo_id = f"{unquote(match['ns'])}/{unquote(match['name'])}"
            return self._resolve(repo_id, unquote(match["rev"]), unquote(match["path"]), caller)
        self._send_error(HubError(404, None, "Sorry, we can't find the page you are looking for."))

    def _whoami(self, caller: FakeToken | None) -> None:
        if caller is None:
            return self._send_error(HubError(401, None, "Invalid username or password."))
        access_token: dict = {"displayName": "vlmkit-test", "role": caller.role, "createdAt": _DATE}
        if caller.role == "fineGrained":
            access_token["fineGrained"] = {
                "canReadGatedRepos": caller.can_read_gated,
                "global": [],
                "scoped": [],
            }
        self._send_json(
            {
                "type": "user",
                "id": hashlib.sha1(caller.user.encode()).hexdigest()[:24],
                "name": caller.user,
                "fullname": caller.user.title(),
                "isPro": False,
                "orgs": [{"type": "org", "name": org} for org in caller.orgs],
                "auth": {"type": "access_token", "accessToken": access_token},
            }
        )

    def _oidc_exchange(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        token = self.hub._oidc.get(body.get("subject_token", ""))
        if token is None:
            return self._send_error(HubError(401, None, "Invalid OIDC token"))
        self._send_json({"access_token": token, "token_type": "bearer", "expires_in": 3600})

    def _model_api(self, repo_id: str, rest: str, query: dict, caller: FakeToken | None) -> None:
        if self._stall_if_asked(repo_id):
            return
        if error := self.hub._failing.get(repo_id):
            return self._send_error(error)
        repo = self.hub.find_repo(repo_id, caller)
        if isinstance(repo, HubError):
            return self._send_error(repo)
        parts = [unquote(part) for part in rest.split("/")[1:]]
        if not parts:
            return self._send_json(_model_info(repo, blobs="blobs" in query))
        if parts == ["auth-check"]:
            error = self.hub.gate(repo, caller)
            return self._send_error(error) if error else self._send_text("OK")
        if parts[0] == "revision" and len(parts) == 2:
            if error := _check_revision(repo, parts[1]):
                return self._send_error(error)
            return self._send_json(_model_info(repo, blobs="blobs" in query))
        if parts[0] == "tree" and len(parts) >= 2:
            if error := _check_revision(repo, parts[1]):
                return self._send_error(error)
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            return self._send_json(_tree(repo, "/".join(parts[2:]), recursive))
        self._send_error(HubError(404, None, "Sorry, we can't find the page you are looking for."))

    def _resolve(self, repo_id: str, revision: str, filename: str, caller: FakeToken | None) -> None:
        if self._stall_if_asked(repo_id):
            return
        if error := self.hub._failing.get(repo_id):
            return self._send_error(error)
        repo = self.hub.find_repo(repo_id, caller)
        if isinstance(repo, HubError):
            return self._send_error(repo)
        if error := self.hub.gate(repo, caller) or _check_revision(repo, revision):
            return self._send_error(error)
        data = repo.files.get(filename)
        if data is None:
            return self._send_error(HubError(404, "EntryNotFound", "Entry not found"), commit=repo.sha)
        headers = {
            "X-Repo-Commit": repo.sha,
            "ETag": f'"{git_blob_sha1(data)}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        status, body = self._apply_range(data, headers)
        self._send(status, body, headers)

    def _apply_range(self, data: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        requested = self.headers.get("Range")
        match = _RANGE.match(requested.strip()) if requested else None
        if match is None:
            return 200, data
        first, last = match.groups()
        size = len(data)
        if first:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
        else:  # "bytes=-N": the last N bytes
            start, end = max(size - int(last or 0), 0), size - 1
        if start >= size or start > end:
            headers["Content-Range"] = f"bytes */{size}"
            return 416, b""
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return 206, data[start : end + 1]

    def _stall_if_asked(self, repo_id: str) -> bool:
        """Hold a stalled repo's request until the Hub stops, then hang up without an answer."""
        if repo_id not in self.hub._stalled:
            return False
        self.hub._stopping.wait()
        self._hang_up()
        return True

    # --- answering -------------------------------------------------------------------------------

    def _hang_up(self) -> None:
        self.close_connection = True

    def _send_error(self, error: HubError, commit: str | None = None) -> None:
        headers = {"X-Error-Message": error.message, "Content-Type": "application/json; charset=utf-8"}
        if error.code:
            headers["X-Error-Code"] = error.code
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(error.status, json.dumps({"error": error.message}).encode(), headers)

    def _send_json(self, payload: object) -> None:
        self._send(200, json.dumps(payload).encode(), {"Content-Type": "application/json; charset=utf-8"})

    def _send_text(self, text: str) -> None:
        self._send(200, text.encode(), {"Content-Type": "text/plain; charset=utf-8"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        """Send a complete answer; HEAD gets the same headers (Content-Length included) and no body."""
        self.send_response(status, HTTPStatus(status).phrase)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Date", formatdate(time.time(), usegmt=True))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _check_revision(repo: FakeRepo, revision: str) -> HubError | None:
    if revision in ("main", repo.sha):
        return None
    return HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")


def _model_info(repo: FakeRepo, blobs: bool) -> dict:
    siblings = []
    for path, data in sorted(repo.files.items()):
        sibling: dict = {"rfilename": path}
        if blobs:
            sibling.update(size=len(data), blobId=git_blob_sha1(data))
        siblings.append(sibling)
    return {
        "_id": repo.sha[:24],
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "author": repo.namespace,
        "sha": repo.sha,
        "lastModified": _DATE,
        "createdAt": _DATE,
        "private": repo.private,
        "gated": repo.gated,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
    }


def _tree(repo: FakeRepo, folder: str, recursive: bool) -> list[dict]:
    """The tree listing: files and folders under `folder`, the whole subtree when recursive."""
    prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
    entries: dict[str, dict] = {}
    for path, data in sorted(repo.files.items()):
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")
        folder_depths = range(1, len(parts)) if recursive else range(1, min(2, len(parts)))
        for depth in folder_depths:
            folder_path = prefix + "/".join(parts[:depth])
            folder_entry = {"type": "directory", "oid": "0" * 40, "size": 0, "path": folder_path}
            entries.setdefault(folder_path, folder_entry)
        if recursive or len(parts) == 1:
            entries[path] = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path}
    return list(entries.values())


# --- pytest fixtures (tests/conftest.py imports them) -----------------------------------------------


_HF_STATE_VARIABLES = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_OIDC_RESOURCE",
)


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HF home for one test: no token, an empty cache, online.

    huggingface_hub reads HF_HOME, HF_HUB_CACHE, HF_TOKEN_PATH and HF_HUB_OFFLINE when it is imported,
    so the environment variables (for subprocesses) and its constants (for this process) are both set.
    """
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    cache = home / "hub"
    token_path = home / "token"
    for name in _HF_STATE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_TOKEN_PATH", str(token_path))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_path))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return home


@pytest.fixture
def fake_hub(hf_home: Path):
    """A started FakeHub, stopped after the test; the test also gets a private HF home (`hf_home`)."""
    with FakeHub() as hub:
        yield hub
