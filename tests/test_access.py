"""vlmkit.access through the real huggingface_hub client, against a fake Hub on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from fakehub import FakeHub, fake_hub, hf_home, refused_endpoint  # noqa: F401 - fixtures
from vlmkit.access import (
    FINE_GRAINED_FIX,
    AccessStatus,
    AccessTarget,
    ModelAccess,
    check_access,
    explain_hub_error,
    find_token,
    inspect_token,
    mask_token,
)
from vlmkit.errors import VlmkitError

TOKEN = "hf_aliceTokenAbcdefghijklmnopqrstuvwxyz"  # alice, a classic read token
GATED = "facebook/dinov3-vitb16-pretrain-lvd1689m"
GATED_URL = f"https://huggingface.co/{GATED}"
PUBLIC = "Qwen/Qwen3-0.6B"
FINE_GRAINED = "hf_fineGrainedNoGatedScope0000"  # alice's, without "read public gated repos"
NEW_TOKEN = "create a new one at https://huggingface.co/settings/tokens."


def target(repo: str, gated: bool = False, key: str | None = None) -> AccessTarget:
    return AccessTarget(key=key or repo.split("/")[-1], repo=repo, kind="encoder", gated=gated)


def check_one(hub: FakeHub, repo: str, token: str | bool, gated: bool = True) -> ModelAccess:
    [result] = check_access([target(repo, gated)], token=token, endpoint=hub.endpoint, timeout=5)
    return result


@pytest.fixture
def hub(fake_hub: FakeHub) -> FakeHub:  # noqa: F811
    """A Hub with one public and one gated repo, and alice's token."""
    fake_hub.add_repo(PUBLIC, files={"config.json": b"{}"})
    fake_hub.add_repo(GATED, files={"config.json": b"{}"}, gated="manual")
    fake_hub.add_token(TOKEN, user="alice")
    fake_hub.add_token(FINE_GRAINED, user="alice", role="fineGrained", can_read_gated=False)
    return fake_hub


# --- every status, as the real client sees it ------------------------------------------------------


def test_public_repo_is_ok_anonymously(hub: FakeHub) -> None:
    result = check_one(hub, PUBLIC, token=False, gated=False)
    assert (result.status, result.detail) == (AccessStatus.OK, "Public: no approval needed.")
    assert (result.key, result.repo, result.kind) == ("Qwen3-0.6B", PUBLIC, "encoder")
    assert result.url is None and not result.gated
    assert hub.requests == [("GET", f"/api/models/{PUBLIC}/auth-check")]


def test_gated_repo_anonymously_needs_login(hub: FakeHub) -> None:
    result = check_one(hub, GATED, token=False)
    assert result.status is AccessStatus.LOGIN_REQUIRED
    assert result.url == GATED_URL
    assert result.detail == f"Gated: log in (`hf auth login` or HF_TOKEN), then request access at {GATED_URL}."


@pytest.mark.parametrize(
    ("state", "status", "detail"),
    [
        (None, AccessStatus.NEEDS_APPROVAL, f"Request access at {GATED_URL} and wait for facebook's review."),
        ("pending", AccessStatus.PENDING, f"Access requested; wait for facebook to review it ({GATED_URL})."),
        ("rejected", AccessStatus.REJECTED,
         f"facebook rejected the access request; only they can change that ({GATED_URL})."),
        ("reset", AccessStatus.NEEDS_APPROVAL,
         f"facebook reset your earlier access request: request access again at {GATED_URL}."),
        ("granted", AccessStatus.OK, "Access granted."),
    ],
)
def test_gate_states(hub: FakeHub, state: str | None, status: AccessStatus, detail: str) -> None:
    hub.set_access(GATED, "alice", state)
    result = check_one(hub, GATED, token=TOKEN)
    assert (result.status, result.detail) == (status, detail)
    assert result.gated and result.url == GATED_URL


@pytest.mark.parametrize("state", [None, "pending", "rejected", "reset", "anonymous", "fine-grained"])
def test_a_refusing_gate_marks_the_repo_gated_even_if_registry_says_public(hub: FakeHub, state: str) -> None:
    token = {"anonymous": False, "fine-grained": FINE_GRAINED}.get(state, TOKEN)
    if state in (None, "pending", "rejected", "reset"):
        hub.set_access(GATED, "alice", state)
    result = check_one(hub, GATED, token=token, gated=False)
    assert result.status is not AccessStatus.OK
    assert result.gated and result.url == GATED_URL


def test_fine_grained_token_without_gated_scope(hub: FakeHub) -> None:
    hub.set_access(GATED, "alice", "granted")
    result = check_one(hub, GATED, token=FINE_GRAINED)
    assert (result.status, result.detail) == (AccessStatus.TOKEN_SCOPE, FINE_GRAINED_FIX)
    assert FINE_GRAINED_FIX.endswith("at https://huggingface.co/settings/tokens.")
    report = inspect_token(FINE_GRAINED, "HF_TOKEN", endpoint=hub.endpoint)
    assert (report.valid, report.role, report.can_read_gated) == (True, "fineGrained", False)
    assert report.detail == (
        f"Logged in as alice with a fineGrained token from the HF_TOKEN environment variable. {FINE_GRAINED_FIX}"
    )


def test_fine_grained_token_with_gated_scope(hub: FakeHub) -> None:
    hub.add_token("hf_fineGrainedWithGatedScope00", user="alice", role="fineGrained", can_read_gated=True)
    hub.set_access(GATED, "alice", "granted")
    assert check_one(hub, GATED, token="hf_fineGrainedWithGatedScope00").status is AccessStatus.OK
    report = inspect_token("hf_fineGrainedWithGatedScope00", "--token", endpoint=hub.endpoint)
    assert (report.valid, report.role, report.can_read_gated) == (True, "fineGrained", True)
    assert report.detail == "Logged in as alice with a fineGrained token from --token."


@pytest.mark.parametrize("source", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "login"])
def test_invalid_token(hub: FakeHub, source: str) -> None:
    results = check_access(
        [target(PUBLIC), target(GATED, gated=True)], token="hf_expired000000000000", endpoint=hub.endpoint
    )
    assert [r.status for r in results] == [AccessStatus.INVALID_TOKEN] * 2
    assert results[0].detail == f"The Hub rejected the token as invalid or expired: {NEW_TOKEN}"
    report = inspect_token("hf_expired000000000000", source, endpoint=hub.endpoint)
    assert report.present and report.valid is False
    if source == "login":  # nothing overrides a saved login
        assert report.detail == f"The token from the token saved by `hf auth login` is invalid or expired: {NEW_TOKEN}"
    else:
        assert report.detail == (
            f"The token from the {source} environment variable is invalid or expired: {NEW_TOKEN}"
            f" {source} overrides `hf auth login`: unset it to use your saved login."
        )


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        (False, "No repo nobody/no-such-model on the Hub; if it is private, log in."),
        (TOKEN, "No repo nobody/no-such-model on the Hub, or it is private and this token cannot see it."),
    ],
    ids=["anonymous", "logged-in"],
)
def test_missing_repo_is_not_found(hub: FakeHub, token: str | bool, detail: str) -> None:
    result = check_one(hub, "nobody/no-such-model", token=token, gated=False)
    assert (result.status, result.detail) == (AccessStatus.NOT_FOUND, detail)


def test_private_repo_is_ok_for_its_owner_only(hub: FakeHub) -> None:
    hub.add_repo("alice/private-model", files={"config.json": b"{}"}, private=True)
    hub.add_token("hf_bobToken000000000000000", user="bob")
    assert check_one(hub, "alice/private-model", TOKEN, gated=False).status is AccessStatus.OK
    bob = check_one(hub, "alice/private-model", "hf_bobToken000000000000000", gated=False)
    assert bob.status is AccessStatus.NOT_FOUND


def test_invalid_repo_id_is_not_found_without_a_request(hub: FakeHub) -> None:
    result = check_one(hub, "not a/valid--repo..id", token=False, gated=False)
    assert result.status is AccessStatus.NOT_FOUND
    assert result.detail == "'not a/valid--repo..id' is neither a local directory nor a Hub repo id."
    assert hub.requests == []


@pytest.mark.parametrize("name", ["a" * 300, "~no-such-user-here/models/qwen"], ids=["too-long", "unknown-user"])
def test_a_name_that_cannot_be_a_path_is_not_a_local_directory(hub: FakeHub, name: str) -> None:
    """Path.is_dir raises for these (File name too long; no home for ~user): a repo id, not a crash."""
    result = check_one(hub, name, token=False, gated=False)
    assert (result.status, result.cached) == (AccessStatus.NOT_FOUND, False)
    assert result.detail.endswith("is neither a local directory nor a Hub repo id.")


@pytest.mark.parametrize(
    ("status", "message", "detail"),
    [
        (500, "Internal Error - We're working hard to fix this as soon as possible!",
         "The Hub answered 500: Internal Error - We're working hard to fix this as soon as possible!"),
        (403, "This repository is disabled.", "The Hub answered 403: This repository is disabled."),
        (500, "", f"The Hub answered 500: Server error '500 Internal Server Error' for url '{{endpoint}}"
                  f"/api/models/{PUBLIC}/auth-check'"),
        (503, "x" * 200, "The Hub answered 503: " + "x" * 159 + "…"),
        (503, "y" * 160, "The Hub answered 503: " + "y" * 160),
    ],
    ids=["outage", "forbidden-not-a-gate", "no-message", "long-message", "160-characters"],
)
def test_other_hub_errors_are_errors_with_the_hubs_words(hub: FakeHub, status: int, message: str, detail: str) -> None:
    """An answer that is no gate, no missing repo and no bad token: what the Hub said, first line, cut at 160."""
    hub.fail(PUBLIC, status, message)
    result = check_one(hub, PUBLIC, token=TOKEN, gated=False)
    assert (result.status, result.detail) == (AccessStatus.ERROR, detail.format(endpoint=hub.endpoint))


@pytest.mark.parametrize("text", ["", "  \n"])
def test_an_error_without_text_is_named_by_its_type(text: str) -> None:
    verdict = explain_hub_error(RuntimeError(text), target(PUBLIC), "https://huggingface.co", TOKEN)
    assert (verdict.status, verdict.detail) == (AccessStatus.ERROR, "RuntimeError")


def test_refused_connection_is_offline() -> None:
    endpoint = refused_endpoint()
    [result] = check_access([target(PUBLIC)], token=False, endpoint=endpoint, timeout=5)
    assert result.status is AccessStatus.OFFLINE
    assert endpoint in result.detail


def test_offline_mode_is_offline_without_a_request(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    result = check_one(hub, PUBLIC, token=False)
    assert result.status is AccessStatus.OFFLINE
    assert "HF_HUB_OFFLINE" in result.detail
    assert hub.requests == []


def test_local_directory_is_ok_without_a_request(hub: FakeHub, tmp_path) -> None:
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    [result] = check_access([target(str(model_dir), gated=True)], token=False, endpoint=hub.endpoint)
    assert (result.status, result.detail, result.cached) == (AccessStatus.OK, "local directory", True)
    assert (result.gated, result.url) == (False, None)  # no gate between a user and their own files
    assert hub.requests == []


def test_cached_is_true_once_a_snapshot_is_downloaded(hub: FakeHub) -> None:
    from huggingface_hub import snapshot_download

    assert not check_one(hub, PUBLIC, token=False, gated=False).cached
    snapshot_download(PUBLIC, endpoint=hub.endpoint, token=False)
    assert check_one(hub, PUBLIC, token=False, gated=False).cached


def test_cached_at_a_revision(hub: FakeHub, hf_home) -> None:  # noqa: F811
    """A branch is cached when its ref names a snapshot that is there; a commit when its snapshot is."""
    import shutil

    from huggingface_hub import snapshot_download

    def cached(revision: str) -> bool:
        [result] = check_access([AccessTarget("k", PUBLIC, "llm", False, revision)], token=False,
                                endpoint=hub.endpoint)
        return result.cached

    sha = hub.repos[PUBLIC].sha
    assert not cached("main") and not cached(sha)
    snapshot = Path(snapshot_download(PUBLIC, endpoint=hub.endpoint, token=False))
    assert snapshot.name == sha
    assert cached("main") and cached(sha) and not cached("v2")
    shutil.rmtree(snapshot)  # refs/main left pointing at a snapshot that is gone
    assert not cached("main") and not cached(sha)


def test_an_empty_snapshots_folder_is_not_cached(hub: FakeHub, hf_home) -> None:  # noqa: F811
    from huggingface_hub import constants

    (Path(constants.HF_HUB_CACHE) / "models--Qwen--Qwen3-0.6B" / "snapshots").mkdir(parents=True)
    assert not check_one(hub, PUBLIC, token=False, gated=False).cached


# --- time: concurrency and deadlines ---------------------------------------------------------------


@pytest.mark.timeout(30)  # a deadline that never fires must fail this test, not hang the suite
def test_stalled_repo_is_offline_in_bounded_time_while_others_answer(hub: FakeHub) -> None:
    hub.add_repo("slow/stalled-model", files={"config.json": b"{}"})
    hub.stall("slow/stalled-model")
    targets = [target(PUBLIC), target("slow/stalled-model"), target(GATED, gated=True)]
    timeout = 1.0
    started = time.monotonic()
    results = check_access(targets, token=TOKEN, endpoint=hub.endpoint, timeout=timeout)
    elapsed = time.monotonic() - started
    assert elapsed < timeout + 2
    assert [r.status for r in results] == [AccessStatus.OK, AccessStatus.OFFLINE, AccessStatus.NEEDS_APPROVAL]
    assert "within 1 s" in results[1].detail


def test_process_exits_while_a_stalled_request_still_hangs(hub: FakeHub) -> None:
    """An abandoned check must not hold the interpreter open (ThreadPoolExecutor workers would)."""
    hub.add_repo("slow/stalled-model", files={"config.json": b"{}"})
    hub.stall("slow/stalled-model")
    script = (
        "from vlmkit.access import AccessTarget, check_access\n"
        "t = AccessTarget('k', 'slow/stalled-model', 'llm', False)\n"
        f"print(check_access([t], token=False, endpoint={hub.endpoint!r}, timeout=0.5)[0].status.value)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20)
    assert done.stdout.strip() == "offline", done.stderr


def test_twenty_models_are_checked_concurrently(hub: FakeHub) -> None:
    repos = [f"org/model-{i:02d}" for i in range(20)]
    for repo in repos:
        hub.add_repo(repo, files={"config.json": b"{}"})
    hub.latency = 0.2
    started = time.monotonic()
    results = check_access([target(r, key=r) for r in repos], token=TOKEN, endpoint=hub.endpoint)
    elapsed = time.monotonic() - started
    sequential = len(repos) * hub.latency
    assert elapsed < 0.5 * sequential
    assert [r.key for r in results] == repos  # input order
    assert all(r.status is AccessStatus.OK for r in results)


# --- the token -------------------------------------------------------------------------------------


def test_mask_token_keeps_little_of_short_tokens() -> None:
    assert [mask_token("x" * 7 + "yz"[:n]) for n in range(3)] == ["…", "…xy", "…yz"]  # 7, 8, 9 characters
    assert mask_token("hf_abcdefghijkl") == "…kl"  # 15 characters
    assert mask_token("hf_abcdefghijklm") == "hf_ab…jklm"  # 16


@pytest.mark.parametrize(
    "bad", ["hf_aliceTokenAbc\ndefghijklmnop", "hf_" + "secretsecret" * 15 + "\n" + "ending"],
    ids=["newline-inside", "newline-past-the-cut"],
)
def test_a_token_with_a_newline_is_masked_where_the_client_quotes_it(hub: FakeHub, bad: str) -> None:
    """httpx refuses the header and quotes it escaped (b'Bearer hf_...\\n...'): that text is masked too."""
    [result] = check_access([target(PUBLIC)], token=bad, endpoint=hub.endpoint)
    report = inspect_token(bad, "--token", endpoint=hub.endpoint)
    assert result.status is AccessStatus.ERROR and report.valid is None
    assert result.detail == f"LocalProtocolError: Illegal header value b'Bearer {mask_token(bad)}'"
    assert report.detail == f"Could not check the token: {result.detail}"


def test_token_never_appears_whole(hub: FakeHub) -> None:
    hub.set_access(GATED, "alice", "pending")
    targets = [target(PUBLIC), target(GATED, gated=True), target("nobody/missing")]
    results = check_access(targets, token=TOKEN, endpoint=hub.endpoint)
    results += check_access(targets, token=TOKEN + "x", endpoint=hub.endpoint)  # invalid
    results += check_access(targets, token=TOKEN, endpoint=refused_endpoint())
    reports = [
        inspect_token(TOKEN, "HF_TOKEN", endpoint=hub.endpoint),
        inspect_token(TOKEN + "x", "HF_TOKEN", endpoint=hub.endpoint),
        inspect_token(TOKEN, "HF_TOKEN", endpoint=refused_endpoint()),
    ]
    for item in [*results, *reports]:
        assert TOKEN not in repr(item) and TOKEN not in str(asdict(item))
    assert reports[0].masked == "hf_al…wxyz" == mask_token(TOKEN)


def test_inspect_token_reports_the_user(hub: FakeHub) -> None:
    report = inspect_token(TOKEN, "login", endpoint=hub.endpoint)
    assert (report.user, report.valid, report.role, report.can_read_gated) == ("alice", True, "read", True)
    assert report.detail == "Logged in as alice with a read token from the token saved by `hf auth login`."
    assert hub.requests == [("GET", "/api/whoami-v2")]
    assert inspect_token(TOKEN, None, endpoint=hub.endpoint).detail == (
        "Logged in as alice with a read token from the token."  # a source it does not know
    )


def test_inspect_token_without_a_token_asks_nothing(hub: FakeHub) -> None:
    report = inspect_token(None, None, endpoint=hub.endpoint)
    assert report.present is False and report.valid is None
    assert report.detail == "No token: gated models need one (run `hf auth login` or set HF_TOKEN)."
    assert hub.requests == []


def test_inspect_token_offline() -> None:
    endpoint = refused_endpoint()
    report = inspect_token(TOKEN, "HF_TOKEN", endpoint=endpoint)
    assert report.present and report.valid is None
    assert report.detail.startswith(f"Could not check the token: cannot reach {endpoint} (ConnectError: ")


def test_inspect_token_told_the_hub_is_unreachable_asks_nothing(hub: FakeHub) -> None:
    report = inspect_token(TOKEN, "HF_TOKEN", endpoint=hub.endpoint, unreachable="Cannot reach X (reason).")
    assert (report.present, report.masked, report.valid) == (True, mask_token(TOKEN), None)
    assert report.detail == "Could not check the token: Cannot reach X (reason)."
    assert hub.requests == []


def test_token_source_precedence(hf_home, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    assert find_token() == (None, None)
    (hf_home / "token").parent.mkdir(parents=True, exist_ok=True)
    (hf_home / "token").write_text("hf_fromLoginFile\n")
    assert find_token() == ("hf_fromLoginFile", "login")
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "hf_fromLegacyVariable")
    assert find_token() == ("hf_fromLegacyVariable", "HUGGING_FACE_HUB_TOKEN")
    monkeypatch.setenv("HF_TOKEN", "hf_fromEnvironment")
    assert find_token() == ("hf_fromEnvironment", "HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN")
    assert find_token() == ("hf_fromEnvironment", "HF_TOKEN")
    assert find_token("hf_explicit") == ("hf_explicit", "--token")


def test_an_oidc_token_beats_the_others_and_says_so(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """In CI (Trusted Publishers) huggingface_hub trades HF_OIDC_ID_TOKEN for a token at the Hub's /oauth/token."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    hub.add_oidc_exchange("ci-id-token", TOKEN)
    monkeypatch.setenv("HF_TOKEN", "hf_fromEnvironment")
    monkeypatch.setenv("HF_OIDC_ID_TOKEN", "ci-id-token")
    monkeypatch.setenv("HF_OIDC_RESOURCE", f"alice-{time.monotonic_ns()}")  # huggingface_hub caches per resource
    assert find_token() == (TOKEN, "oidc")
    monkeypatch.setenv("HF_OIDC_ID_TOKEN", "a-bad-id-token")
    monkeypatch.setenv("HF_OIDC_RESOURCE", f"alice-{time.monotonic_ns()}")
    with pytest.raises(VlmkitError) as failed:
        find_token()
    assert str(failed.value) == "Could not get a Hugging Face token through OIDC: HfHubHTTPError"
    assert failed.value.hint == "Unset HF_OIDC_RESOURCE to use HF_TOKEN or `hf auth login` instead."


def test_token_none_uses_the_same_lookup_as_huggingface_hub(hub: FakeHub, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub.set_access(GATED, "alice", "granted")
    assert check_one(hub, GATED, token=None).status is AccessStatus.OK
    assert check_one(hub, GATED, token=False).status is AccessStatus.LOGIN_REQUIRED


# --- the bug this module fixes ---------------------------------------------------------------------


def test_design_doc_model_info_loop_says_ok_for_a_gated_repo_we_cannot_download(hub: FakeHub) -> None:
    """seed/model-approval-list.md tests access with model_info, which the Hub answers for gated repos."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    printed = []
    for model_id in (GATED,):  # the design doc's loop, minus Colab
        try:
            api.model_info(model_id)
            printed.append(f"[OK] {model_id}")
        except Exception:
            printed.append(f"[NEED APPROVAL] {model_id}")
    assert printed == [f"[OK] {GATED}"]
    assert check_one(hub, GATED, token=TOKEN).status is AccessStatus.NEEDS_APPROVAL
