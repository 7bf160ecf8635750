"""vlmkit.access through the real huggingface_hub client, against a fake Hub on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import asdict

import pytest

from fakehub import FakeHub, fake_hub, hf_home, refused_endpoint  # noqa: F401 - fixtures
from vlmkit.access import (
    AccessStatus,
    AccessTarget,
    ModelAccess,
    check_access,
    find_token,
    inspect_token,
    mask_token,
)

TOKEN = "hf_aliceTokenAbcdefghijklmnopqrstuvwxyz"  # alice, a classic read token
GATED = "facebook/dinov3-vitb16-pretrain-lvd1689m"
PUBLIC = "Qwen/Qwen3-0.6B"


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
    return fake_hub


# --- every status, as the real client sees it ------------------------------------------------------


def test_public_repo_is_ok_anonymously(hub: FakeHub) -> None:
    result = check_one(hub, PUBLIC, token=False, gated=False)
    assert result.status is AccessStatus.OK
    assert result.url is None and not result.gated
    assert hub.requests == [("GET", f"/api/models/{PUBLIC}/auth-check")]


def test_gated_repo_anonymously_needs_login(hub: FakeHub) -> None:
    result = check_one(hub, GATED, token=False)
    assert result.status is AccessStatus.LOGIN_REQUIRED
    assert result.url == f"https://huggingface.co/{GATED}"
    assert "log in" in result.detail


@pytest.mark.parametrize(
    ("state", "status", "words"),
    [
        (None, AccessStatus.NEEDS_APPROVAL, "request access at https://huggingface.co/"),
        ("pending", AccessStatus.PENDING, "wait for facebook"),
        ("rejected", AccessStatus.REJECTED, "rejected"),
        ("reset", AccessStatus.NEEDS_APPROVAL, "reset your earlier access request"),
        ("granted", AccessStatus.OK, "granted"),
    ],
)
def test_gate_states(hub: FakeHub, state: str | None, status: AccessStatus, words: str) -> None:
    hub.set_access(GATED, "alice", state)
    result = check_one(hub, GATED, token=TOKEN)
    assert result.status is status
    assert words in result.detail.lower()
    assert result.gated and result.url == f"https://huggingface.co/{GATED}"


def test_gated_repo_found_gated_even_if_registry_says_public(hub: FakeHub) -> None:
    result = check_one(hub, GATED, token=TOKEN, gated=False)
    assert result.status is AccessStatus.NEEDS_APPROVAL
    assert result.gated and result.url == f"https://huggingface.co/{GATED}"


def test_fine_grained_token_without_gated_scope(hub: FakeHub) -> None:
    hub.add_token("hf_fineGrainedNoGatedScope0000", user="alice", role="fineGrained", can_read_gated=False)
    hub.set_access(GATED, "alice", "granted")
    result = check_one(hub, GATED, token="hf_fineGrainedNoGatedScope0000")
    assert result.status is AccessStatus.TOKEN_SCOPE
    assert "settings/tokens" in result.detail
    report = inspect_token("hf_fineGrainedNoGatedScope0000", "HF_TOKEN", endpoint=hub.endpoint)
    assert (report.valid, report.role, report.can_read_gated) == (True, "fineGrained", False)


def test_invalid_token(hub: FakeHub) -> None:
    results = check_access(
        [target(PUBLIC), target(GATED, gated=True)], token="hf_expired000000000000", endpoint=hub.endpoint
    )
    assert [r.status for r in results] == [AccessStatus.INVALID_TOKEN] * 2
    report = inspect_token("hf_expired000000000000", "HF_TOKEN", endpoint=hub.endpoint)
    assert report.present and report.valid is False
    assert "HF_TOKEN overrides `hf auth login`" in report.detail


@pytest.mark.parametrize("token", [False, TOKEN], ids=["anonymous", "logged-in"])
def test_missing_repo_is_not_found(hub: FakeHub, token: str | bool) -> None:
    result = check_one(hub, "nobody/no-such-model", token=token, gated=False)
    assert result.status is AccessStatus.NOT_FOUND
    assert "nobody/no-such-model" in result.detail


def test_private_repo_is_ok_for_its_owner_only(hub: FakeHub) -> None:
    hub.add_repo("alice/private-model", files={"config.json": b"{}"}, private=True)
    hub.add_token("hf_bobToken000000000000000", user="bob")
    assert check_one(hub, "alice/private-model", TOKEN, gated=False).status is AccessStatus.OK
    bob = check_one(hub, "alice/private-model", "hf_bobToken000000000000000", gated=False)
    assert bob.status is AccessStatus.NOT_FOUND


def test_invalid_repo_id_is_not_found_without_a_request(hub: FakeHub) -> None:
    result = check_one(hub, "not a/valid--repo..id", token=False, gated=False)
    assert result.status is AccessStatus.NOT_FOUND
    assert hub.requests == []


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
    assert hub.requests == []


def test_cached_is_true_once_a_snapshot_is_downloaded(hub: FakeHub) -> None:
    from huggingface_hub import snapshot_download

    assert not check_one(hub, PUBLIC, token=False, gated=False).cached
    snapshot_download(PUBLIC, endpoint=hub.endpoint, token=False)
    assert check_one(hub, PUBLIC, token=False, gated=False).cached


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
    assert "hf auth login" in report.detail
    assert hub.requests == [("GET", "/api/whoami-v2")]


def test_inspect_token_without_a_token_asks_nothing(hub: FakeHub) -> None:
    report = inspect_token(None, None, endpoint=hub.endpoint)
    assert not report.present and report.valid is None
    assert hub.requests == []


def test_inspect_token_offline() -> None:
    report = inspect_token(TOKEN, "HF_TOKEN", endpoint=refused_endpoint())
    assert report.present and report.valid is None
    assert "cannot reach" in report.detail


def test_token_source_precedence(hf_home, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    assert find_token() == (None, None)
    (hf_home / "token").parent.mkdir(parents=True, exist_ok=True)
    (hf_home / "token").write_text("hf_fromLoginFile\n")
    assert find_token() == ("hf_fromLoginFile", "login")
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "hf_fromLegacyVariable")
    assert find_token() == ("hf_fromLegacyVariable", "HUGGING_FACE_HUB_TOKEN")
    monkeypatch.setenv("HF_TOKEN", "hf_fromEnvironment")
    assert find_token() == ("hf_fromEnvironment", "HF_TOKEN")
    assert find_token("hf_explicit") == ("hf_explicit", "--token")


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
