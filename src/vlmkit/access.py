"""Can this token download these models? Asked of the Hub's auth-check route, all models at once.

`model_info` is not an access test: the Hub answers it for gated repos to everyone, including users
whose request is pending or rejected. The gate is enforced on file downloads and on
`/api/models/{id}/auth-check`, so that is what `check_access` asks, for all models concurrently,
each check with its own deadline. Before that, one DNS look-up and one TCP connection tell whether
the Hub can be reached at all: without a network every model gets that one reason at once, instead
of a look-up per model racing the resolver. The checks then share huggingface_hub's one HTTP client,
a few at a time (MAX_CONCURRENT_REQUESTS), so its small pool of connections serves them all.

huggingface_hub is imported inside the functions that use it, so importing vlmkit stays fast.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vlmkit.errors import UsageError, VlmkitError

logger = logging.getLogger(__name__)

HUB_URL = "https://huggingface.co"
MAX_CONCURRENT_REQUESTS = 16  # requests in flight at once, on one shared client: a bounded pool, not a socket per model
PROXY_VARIABLES = ("https_proxy", "http_proxy", "all_proxy")
TOKENS_URL = f"{HUB_URL}/settings/tokens"
FINE_GRAINED_FIX = (
    "This fine-grained token cannot read gated repos: enable 'Read access to contents of all public"
    f" gated repos you can access' at {TOKENS_URL}."
)


class AccessStatus(str, Enum):
    OK = "ok"
    NEEDS_APPROVAL = "needs_approval"
    PENDING = "pending"
    REJECTED = "rejected"
    LOGIN_REQUIRED = "login_required"
    TOKEN_SCOPE = "token_scope"
    NOT_FOUND = "not_found"
    INVALID_TOKEN = "invalid_token"
    OFFLINE = "offline"
    ERROR = "error"


@dataclass(frozen=True)
class AccessTarget:
    key: str
    repo: str  # a Hub repo id, or the path of a local model directory
    kind: str  # "encoder" | "llm" | "vlm"
    gated: bool
    revision: str | None = None


@dataclass(frozen=True)
class ModelAccess:
    key: str
    repo: str
    kind: str
    gated: bool
    status: AccessStatus
    detail: str  # one sentence that names the fix
    url: str | None  # where access is requested, in a browser (gated repos only)
    cached: bool  # the local HF cache holds a snapshot of this repo


@dataclass(frozen=True)
class TokenReport:
    present: bool
    source: str | None  # "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "login", "colab", "oidc", "--token"
    masked: str | None
    user: str | None
    valid: bool | None  # None: not checked (no token, or the Hub could not be reached)
    role: str | None  # "read" | "write" | "fineGrained"
    can_read_gated: bool | None
    detail: str


SOURCE_NAMES = {
    "--token": "--token",
    "HF_TOKEN": "the HF_TOKEN environment variable",
    "HUGGING_FACE_HUB_TOKEN": "the HUGGING_FACE_HUB_TOKEN environment variable",
    "login": "the token saved by `hf auth login`",
    "colab": "the Colab secret HF_TOKEN",
    "oidc": "the OIDC exchange (HF_OIDC_RESOURCE)",
}


# --- the token ------------------------------------------------------------------------------------


def mask_token(token: str) -> str:
    """Enough of a token to recognise it, never the whole: 'hf_ab…wxyz'."""
    if len(token) >= 16:
        return f"{token[:5]}…{token[-4:]}"
    return f"…{token[-2:]}" if len(token) >= 8 else "…"


def check_hub_endpoint() -> None:
    """HF_ENDPOINT as huggingface_hub parses it when it is imported: a bad URL there is a traceback
    from inside the import, so it is refused here first, as the usage error it is."""
    endpoint = os.environ.get("HF_ENDPOINT")
    if not endpoint:
        return
    try:
        parts = urlsplit(endpoint)  # raises for a bad IPv6 address
        parts.port  # noqa: B018 - reading it raises for a port out of range or not a number
    except ValueError as exc:
        why = str(exc)
    else:
        why = "no host" if not parts.hostname else None
        if not why and parts.scheme not in ("http", "https"):
            why = "not http or https"
    if why:
        raise UsageError(f"HF_ENDPOINT={endpoint} is not a URL the Hub client can use: {why}",
                         "Set HF_ENDPOINT to the Hub's or a mirror's URL (https://huggingface.co), or unset it.")


def find_token(explicit: str | None = None) -> tuple[str | None, str | None]:
    """The token huggingface_hub would send, and where it came from.

    Same order as `huggingface_hub.get_token()`: OIDC (when HF_OIDC_RESOURCE is set), HF_TOKEN,
    HUGGING_FACE_HUB_TOKEN, the login file, the Colab secret. An explicit token beats them all.
    HF_TOKEN silently overriding a login is a common confusion, hence the source.
    """
    if explicit is not None and explicit.strip():
        return explicit.strip(), "--token"
    from huggingface_hub import get_token

    try:
        token = get_token()
    except Exception as exc:  # only the OIDC exchange raises
        raise VlmkitError(
            f"Could not get a Hugging Face token through OIDC: {type(exc).__name__}",
            hint="Unset HF_OIDC_RESOURCE to use HF_TOKEN or `hf auth login` instead.",
        ) from None
    return (token, _token_source()) if token else (None, None)


def _token_source() -> str:
    """Which source `get_token()` took its token from: the first one that holds a token."""
    from huggingface_hub import constants

    if os.environ.get("HF_OIDC_RESOURCE"):
        return "oidc"
    # huggingface_hub reads `HF_TOKEN or HUGGING_FACE_HUB_TOKEN`, then strips it
    env_token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if env_token and env_token.strip():
        return "HF_TOKEN" if os.environ.get("HF_TOKEN") else "HUGGING_FACE_HUB_TOKEN"
    try:
        if Path(constants.HF_TOKEN_PATH).read_text().strip():
            return "login"
    except OSError:
        pass
    return "colab"


def inspect_token(
    token: str | None, source: str | None, *, endpoint: str | None = None, timeout: float = 10.0,
    unreachable: str | None = None,
) -> TokenReport:
    """Who the token belongs to and what it may read: one call to the (rate-limited) whoami route."""
    if not token:
        return TokenReport(
            present=False,
            source=None,
            masked=None,
            user=None,
            valid=None,
            role=None,
            can_read_gated=None,
            detail="No token: gated models need one (run `hf auth login` or set HF_TOKEN).",
        )
    from huggingface_hub import HfApi

    report = TokenReport(
        present=True,
        source=source,
        masked=mask_token(token),
        user=None,
        valid=None,
        role=None,
        can_read_gated=None,
        detail="",
    )
    if unreachable:  # `hub_unreachable` said why: no request would get through
        return replace(report, detail=f"Could not check the token: {unreachable}")
    api = HfApi(endpoint=endpoint)
    [outcome] = _map_with_deadline(lambda _: api.whoami(token=token), [None], timeout=timeout, max_workers=1)
    where = SOURCE_NAMES.get(source or "", "the token")
    if not outcome.finished:
        detail = f"Could not check the token: no answer from {api.endpoint} within {timeout:g} s."
        return replace(report, detail=detail)
    if outcome.error is not None:
        return _token_error_report(report, outcome.error, where, api.endpoint, token)
    return _token_ok_report(report, outcome.value, where)


def _token_ok_report(report: TokenReport, whoami: dict, where: str) -> TokenReport:
    access_token = whoami.get("auth", {}).get("accessToken", {})
    role = access_token.get("role")
    can_read_gated = True
    if role == "fineGrained":
        can_read_gated = bool(access_token.get("fineGrained", {}).get("canReadGatedRepos", False))
    user = whoami.get("name")
    detail = f"Logged in as {user} with a {role or 'user'} token from {where}."
    if not can_read_gated:
        detail += f" {FINE_GRAINED_FIX}"
    return replace(report, user=user, valid=True, role=role, can_read_gated=can_read_gated, detail=detail)


def _token_error_report(
    report: TokenReport, error: Exception, where: str, endpoint: str, token: str
) -> TokenReport:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError) and _status_code(error) == 401:
        detail = f"The token from {where} is invalid or expired: create a new one at {TOKENS_URL}."
        if report.source in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
            detail += f" {report.source} overrides `hf auth login`: unset it to use your saved login."
        return replace(report, valid=False, detail=detail)
    if _is_network_error(error):
        detail = f"Could not check the token: cannot reach {endpoint} ({_short(error, token)})."
        return replace(report, detail=detail)
    return replace(report, detail=f"Could not check the token: {_short(error, token)}")


# --- the access check -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    status: AccessStatus
    detail: str
    gated: bool = False  # the Hub said the repo is gated


def check_access(
    targets: Sequence[AccessTarget],
    *,
    token: str | bool | None = None,
    endpoint: str | None = None,
    timeout: float = 10.0,
    max_workers: int = MAX_CONCURRENT_REQUESTS,
    preflight: bool = True,
    unreachable: str | None = None,
) -> list[ModelAccess]:
    """Ask the Hub whether `token` may download each target; results come back in input order.

    token: a token; None looks one up as huggingface_hub does (`find_token`); False checks anonymously.
    timeout: seconds each model's check may take from its start. A check that takes longer is
    reported offline and abandoned, so a stalled Hub cannot hold this function up.
    preflight: first ask `hub_unreachable` (one look-up, one connection); `unreachable` is its answer
    when the caller asked already. Either way an unreachable Hub makes every remote target offline
    with that one reason, and no request is sent.
    """
    from huggingface_hub import HfApi

    resolved = find_token()[0] if token is None or token is True else (token or None)
    api = HfApi(endpoint=endpoint)
    remote = [i for i, target in enumerate(targets) if not _is_local_dir(target.repo)]
    if remote and preflight and unreachable is None:
        unreachable = hub_unreachable(api.endpoint, timeout)
    if unreachable:
        verdict = Verdict(AccessStatus.OFFLINE, unreachable)
        return [_result(target, verdict if i in remote else None) for i, target in enumerate(targets)]
    outcomes = _map_with_deadline(
        lambda i: _ask_hub(api, targets[i], resolved), remote, timeout=timeout,
        max_workers=min(max_workers, MAX_CONCURRENT_REQUESTS),
    )
    verdicts: dict[int, Verdict] = {}
    no_answer = Verdict(AccessStatus.OFFLINE, f"No answer from {api.endpoint} within {timeout:g} s.")
    for i, outcome in zip(remote, outcomes, strict=True):
        if not outcome.finished:
            verdicts[i] = no_answer
        elif outcome.error is not None:
            verdicts[i] = explain_hub_error(outcome.error, targets[i], api.endpoint, resolved)
        else:
            verdicts[i] = outcome.value
        logger.debug("access to %s: %s", targets[i].repo, verdicts[i].status.value)
    return [_result(target, verdicts.get(i)) for i, target in enumerate(targets)]


def hub_unreachable(endpoint: str | None = None, timeout: float = 10.0) -> str | None:
    """Why the Hub cannot be reached, in one sentence; None when a TCP connection to it opens.

    One DNS look-up and one connection (trying each address the name resolves to), within `timeout`.
    Skipped (None) in offline mode, where the client refuses before any I/O with its own reason, and
    behind a proxy (HTTPS_PROXY and friends), where only the proxy is reached directly.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or any(os.environ.get(v) or os.environ.get(v.upper()) for v in PROXY_VARIABLES):
        return None
    endpoint = endpoint or constants.ENDPOINT
    url = urlsplit(endpoint)
    if not url.hostname:
        return None
    port = url.port or (443 if url.scheme == "https" else 80)

    def connect(_: object) -> None:
        socket.create_connection((url.hostname, port), timeout=timeout).close()

    [outcome] = _map_with_deadline(connect, [None], timeout=timeout, max_workers=1)
    if not outcome.finished or isinstance(outcome.error, TimeoutError):  # the connect's own deadline may come first
        return f"No answer from {endpoint} within {timeout:g} s."
    if isinstance(outcome.error, socket.gaierror):
        return f"Cannot reach {endpoint}: cannot resolve {url.hostname} ({outcome.error.strerror})."
    if outcome.error is not None:
        reason = getattr(outcome.error, "strerror", None) or type(outcome.error).__name__
        return f"Cannot reach {endpoint} ({reason})."
    return None


def _ask_hub(api: Any, target: AccessTarget, token: str | None) -> Verdict:
    """Runs in a worker thread. Raises what auth_check raises; the caller maps it to a verdict."""
    from huggingface_hub.utils import validate_repo_id

    validate_repo_id(target.repo)
    api.auth_check(target.repo, token=token or False)
    if target.gated:
        return Verdict(AccessStatus.OK, "Access granted.", gated=True)
    return Verdict(AccessStatus.OK, "Public: no approval needed.")


def _result(target: AccessTarget, verdict: Verdict | None) -> ModelAccess:
    if verdict is None:  # not asked: a local directory
        verdict = Verdict(AccessStatus.OK, "local directory")
        return _model_access(target, verdict, gated=False, cached=True)
    gated = target.gated or verdict.gated
    return _model_access(target, verdict, gated=gated, cached=_is_cached(target))


def _model_access(target: AccessTarget, verdict: Verdict, *, gated: bool, cached: bool) -> ModelAccess:
    return ModelAccess(
        key=target.key,
        repo=target.repo,
        kind=target.kind,
        gated=gated,
        status=verdict.status,
        detail=verdict.detail,
        url=f"{HUB_URL}/{target.repo}" if gated else None,
        cached=cached,
    )


def explain_hub_error(error: Exception, target: AccessTarget, endpoint: str, token: str | None) -> Verdict:
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        RepositoryNotFoundError,
    )

    repo, status, said = target.repo, _status_code(error), _said(error).lower()
    if isinstance(error, GatedRepoError):  # a subclass of RepositoryNotFoundError: first
        return _gated_verdict(said, status, repo)
    if isinstance(error, HFValidationError):
        return Verdict(AccessStatus.NOT_FOUND, f"'{repo}' is neither a local directory nor a Hub repo id.")
    if isinstance(error, HfHubHTTPError) and status == 401 and "invalid credentials" in said:
        detail = f"The Hub rejected the token as invalid or expired: create a new one at {TOKENS_URL}."
        return Verdict(AccessStatus.INVALID_TOKEN, detail)
    if isinstance(error, RepositoryNotFoundError):
        if token is None:
            return Verdict(AccessStatus.NOT_FOUND, f"No repo {repo} on the Hub; if it is private, log in.")
        detail = f"No repo {repo} on the Hub, or it is private and this token cannot see it."
        return Verdict(AccessStatus.NOT_FOUND, detail)
    if isinstance(error, HfHubHTTPError) and status == 403 and "fine-grained" in said:
        return Verdict(AccessStatus.TOKEN_SCOPE, FINE_GRAINED_FIX, gated=True)
    if _is_network_error(error):
        return Verdict(AccessStatus.OFFLINE, _offline_detail(error, endpoint, token))
    if isinstance(error, HfHubHTTPError):
        said_first_line = _first_line(_mask_in(_said(error), token))
        return Verdict(AccessStatus.ERROR, f"The Hub answered {status}: {said_first_line}")
    return Verdict(AccessStatus.ERROR, _short(error, token))


def _gated_verdict(said: str, status: int | None, repo: str) -> Verdict:
    """Pending, rejected and reset are told apart only by the Hub's message text (phrases with spaces,
    which a repo id cannot contain)."""
    url, owner = f"{HUB_URL}/{repo}", repo.split("/")[0]
    if status == 401:
        return Verdict(
            AccessStatus.LOGIN_REQUIRED,
            f"Gated: log in (`hf auth login` or HF_TOKEN), then request access at {url}.",
            gated=True,
        )
    if "is awaiting a review" in said:
        return Verdict(
            AccessStatus.PENDING, f"Access requested; wait for {owner} to review it ({url}).", gated=True
        )
    if "has been rejected" in said:
        return Verdict(
            AccessStatus.REJECTED,
            f"{owner} rejected the access request; only they can change that ({url}).",
            gated=True,
        )
    if "has been reset" in said:
        return Verdict(
            AccessStatus.NEEDS_APPROVAL,
            f"{owner} reset your earlier access request: request access again at {url}.",
            gated=True,
        )
    return Verdict(
        AccessStatus.NEEDS_APPROVAL, f"Request access at {url} and wait for {owner}'s review.", gated=True
    )


def _offline_detail(error: Exception, endpoint: str, token: str | None) -> str:
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(error, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set: unset it to check access."
    return f"Cannot reach {endpoint} ({_short(error, token)})."


# --- small helpers --------------------------------------------------------------------------------


def _is_network_error(error: Exception) -> bool:
    from huggingface_hub.errors import OfflineModeIsEnabled
    from huggingface_hub.utils import httpx

    offline = (OfflineModeIsEnabled, httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
    return isinstance(error, offline)


def _status_code(error: Exception) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _said(error: Exception) -> str:
    """What the Hub said (X-Error-Message or the body's error), else the exception's text."""
    return getattr(error, "server_message", None) or str(error)


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _short(error: Exception, token: str | None) -> str:
    """A one-line description of an exception, with the token (should it appear) masked."""
    message = _first_line(_mask_in(str(error), token))  # masked before it is cut, so no part is left whole
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _mask_in(text: str, token: str | None) -> str:
    """The text with the token masked, also where it is quoted escaped: httpx refuses a header with a
    newline in it and shows the header's bytes (b'Bearer hf_ab\\ncd')."""
    if not token:
        return text
    for shown in (token, repr(token.encode())[2:-1]):
        text = text.replace(shown, mask_token(token))
    return text


def _is_local_dir(repo: str) -> bool:
    """A path that exists as a directory; transformers loads such a path before asking the Hub."""
    try:
        return Path(repo).expanduser().is_dir()
    except (OSError, RuntimeError):  # a name too long for a path; `~user` for a user that does not exist
        return False


def _is_cached(target: AccessTarget) -> bool:
    """Does the local HF cache hold a snapshot of this repo (at this revision)? No network."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    try:
        storage = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=target.repo, repo_type="model")
        snapshots = storage / "snapshots"
        if target.revision is None:
            return snapshots.is_dir() and any(snapshots.iterdir())
        if (snapshots / target.revision).is_dir():
            return True
        ref = storage / "refs" / target.revision
        return ref.is_file() and (snapshots / ref.read_text().strip()).is_dir()
    except (OSError, ValueError):
        return False


# --- running calls with a deadline ----------------------------------------------------------------


@dataclass
class _Outcome:
    finished: bool = False
    value: Any = None
    error: Exception | None = None


def _map_with_deadline(
    fn: Callable[[Any], Any], items: Sequence[Any], *, timeout: float, max_workers: int
) -> list[_Outcome]:
    """Call fn on each item from up to max_workers threads; each call gets `timeout` s from its start.

    A call past its deadline is abandoned, not interrupted (huggingface_hub's requests have no timeout
    of their own). The threads are daemons: a stuck ThreadPoolExecutor worker would be joined at
    interpreter exit and hang the CLI. An abandoned thread's slot goes to a fresh thread.
    """
    if not items:
        return []
    pending: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(items)):
        pending.put(index)
    events: queue.SimpleQueue[tuple[str, int, Any]] = queue.SimpleQueue()

    def work() -> None:
        while True:
            try:
                index = pending.get_nowait()
            except queue.Empty:
                return
            events.put(("started", index, time.monotonic()))
            try:
                outcome = _Outcome(finished=True, value=fn(items[index]))
            except Exception as exc:
                outcome = _Outcome(finished=True, error=exc)
            events.put(("finished", index, outcome))

    def spawn() -> None:
        threading.Thread(target=work, name="vlmkit-hub-check", daemon=True).start()

    for _ in range(max(1, min(max_workers, len(items)))):
        spawn()
    results: dict[int, _Outcome] = {}
    started: dict[int, float] = {}
    while len(results) < len(items):
        now = time.monotonic()
        for index in [i for i, t0 in started.items() if now - t0 >= timeout]:
            del started[index]
            results[index] = _Outcome(finished=False)
            spawn()
        if len(results) == len(items):
            break
        next_deadline = min(started.values(), default=now) + timeout
        try:
            kind, index, payload = events.get(timeout=max(next_deadline - now, 0.001))
        except queue.Empty:
            continue
        if index in results:  # a late answer from an abandoned call
            continue
        if kind == "started":
            started[index] = payload
        else:
            started.pop(index, None)
            results[index] = payload
    return [results[index] for index in range(len(items))]
