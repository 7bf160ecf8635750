"""vlmkit.access when the Hub is not there: the one-connection preflight, proxies, stalls and deadlines."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from fakehub import FakeHub, refused_endpoint, stalled_endpoint
from vlmkit.access import (
    AccessStatus,
    AccessTarget,
    _map_with_deadline,
    check_access,
    check_hub_endpoint,
    hub_unreachable,
    inspect_token,
)
from vlmkit.errors import UsageError

PUBLIC = AccessTarget("qwen", "Qwen/Qwen3-0.6B", "llm", False)
PROXY_VARIABLES = ("https_proxy", "http_proxy", "all_proxy", "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True)
def no_proxy(hf_home, monkeypatch: pytest.MonkeyPatch) -> None:
    """A private HF home, online, and no proxy from the machine's environment."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t not in before]


def test_a_refused_hub_is_one_reason_for_every_remote_model(tmp_path) -> None:
    endpoint = refused_endpoint()
    local = AccessTarget("mine", str(tmp_path), "llm", False)
    results = check_access([PUBLIC, local, PUBLIC], token=False, endpoint=endpoint, timeout=5)
    reason = f"Cannot reach {endpoint} (Connection refused)."
    assert [(r.status, r.detail) for r in results] == [
        (AccessStatus.OFFLINE, reason), (AccessStatus.OK, "local directory"), (AccessStatus.OFFLINE, reason)]
    assert hub_unreachable(endpoint, 5) == reason


def test_without_the_preflight_each_check_meets_the_refusal_itself() -> None:
    endpoint = refused_endpoint()
    [result] = check_access([PUBLIC], token="hf_someToken0000000000", endpoint=endpoint, timeout=5, preflight=False)
    assert result.status is AccessStatus.OFFLINE
    assert result.detail.startswith(f"Cannot reach {endpoint} (ConnectError: ") and "refused" in result.detail


def test_a_reason_given_by_the_caller_is_used_without_a_request(fake_hub: FakeHub, tmp_path) -> None:
    fake_hub.add_repo(PUBLIC.repo, files={"config.json": b"{}"})
    local = AccessTarget("mine", str(tmp_path), "llm", False)
    results = check_access([PUBLIC, local], token=False, endpoint=fake_hub.endpoint, unreachable="No network.")
    assert [(r.status, r.detail) for r in results] == [
        (AccessStatus.OFFLINE, "No network."), (AccessStatus.OK, "local directory")]
    assert fake_hub.requests == []


def test_a_reachable_hub_has_no_reason(fake_hub: FakeHub) -> None:
    assert hub_unreachable(fake_hub.endpoint, 5) is None
    assert fake_hub.requests == []  # a TCP connection, no HTTP request


def test_the_default_endpoint_is_huggingface_hubs(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    endpoint = refused_endpoint()
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    assert hub_unreachable() == f"Cannot reach {endpoint} (Connection refused)."


def test_offline_mode_gives_its_own_reason_even_without_a_network(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub_unreachable(refused_endpoint(), 5) is None
    [result] = check_access([PUBLIC], token=False, endpoint=refused_endpoint(), timeout=5)
    assert (result.status, result.detail) == (AccessStatus.OFFLINE, "HF_HUB_OFFLINE is set: unset it to check access.")


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "http_proxy"])
def test_behind_a_proxy_the_hub_is_not_connected_to_directly(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "http://proxy.invalid:3128")
    assert hub_unreachable("http://nonexistent.invalid", 5) is None


@pytest.mark.parametrize(("endpoint", "port"), [("https://127.0.0.1", 443), ("http://127.0.0.1", 80),
                                                ("http://127.0.0.1:1", 1)])
def test_the_port_follows_the_scheme(monkeypatch: pytest.MonkeyPatch, endpoint: str, port: int) -> None:
    addresses, real = [], socket.create_connection

    def recording(address, *args, **kwargs):
        addresses.append(address)
        return real(address, *args, **kwargs)
    monkeypatch.setattr(socket, "create_connection", recording)
    hub_unreachable(endpoint, 2)
    assert addresses == [("127.0.0.1", port)]


def test_a_host_name_that_is_no_name_is_unreachable_with_the_error_named() -> None:
    assert hub_unreachable("http://a..b", 5) == "Cannot reach http://a..b (UnicodeError)."  # an empty IDNA label


@pytest.mark.timeout(30)
def test_a_stalled_connection_is_no_answer_by_the_deadline_and_leaves_no_thread() -> None:
    with stalled_endpoint() as endpoint:
        before = set(threading.enumerate())
        assert hub_unreachable(endpoint, 0.2) == f"No answer from {endpoint} within 0.2 s."
        for thread in new_threads(before):
            thread.join(2)  # the connect attempt has the same deadline: it gives up too
        assert new_threads(before) == []


@pytest.mark.timeout(30)
def test_a_stalled_hub_stalls_neither_the_check_nor_the_token_report(tmp_path) -> None:
    with stalled_endpoint() as endpoint:
        results = check_access([PUBLIC, PUBLIC], token=False, endpoint=endpoint, timeout=0.3)
        assert {r.detail for r in results} == {f"No answer from {endpoint} within 0.3 s."}
        before, started = set(threading.enumerate()), time.monotonic()
        report = inspect_token("hf_someToken0000000000", "HF_TOKEN", endpoint=endpoint, timeout=0.3)
        assert time.monotonic() - started < 0.9  # the wait ends at the deadline, not at a later wake-up
        assert (report.valid, report.masked) == (None, "hf_so…0000")
        assert report.detail == f"Could not check the token: no answer from {endpoint} within 0.3 s."
        [abandoned] = new_threads(before)  # the client has no timeout: its request hangs on, in a daemon thread
        assert abandoned.name == "vlmkit-hub-check" and abandoned.daemon
        started = time.monotonic()
        local = AccessTarget("mine", str(tmp_path), "llm", False)
        assert check_access([local], token=False, endpoint=endpoint, timeout=2)[0].status is AccessStatus.OK
        assert time.monotonic() - started < 1  # only local directories: the Hub is not even tried


def test_max_workers_bounds_the_requests_in_flight(fake_hub: FakeHub) -> None:
    targets = [AccessTarget(f"m{i}", f"org/model-{i}", "llm", False) for i in range(4)]
    for target in targets:
        fake_hub.add_repo(target.repo, files={"config.json": b"{}"})
    fake_hub.latency = 0.1
    results = check_access(targets, token=False, endpoint=fake_hub.endpoint, max_workers=1)
    assert {r.status for r in results} == {AccessStatus.OK}
    assert fake_hub.max_in_flight == 1


def test_a_late_answer_from_an_abandoned_call_does_not_end_the_wait_for_the_others() -> None:
    """One worker: the first call (0.8 s) is abandoned at 0.6 s and answers while the second (0.4 s) runs."""
    outcomes = _map_with_deadline(lambda s: time.sleep(s) or s, [0.8, 0.4], timeout=0.6, max_workers=1)
    assert [(o.finished, o.value) for o in outcomes] == [(False, None), (True, 0.4)]


@pytest.mark.parametrize("endpoint, why", [
    ("http://127.0.0.1:99999", "Port out of range 0-65535"),
    ("http://127.0.0.1:port", "Port could not be cast to integer value as 'port'"),
    ("http://[::1", "Invalid IPv6 URL"),
    ("ftp://mirror.example", "not http or https"),
    ("huggingface.co", "no host"),
    ("https://", "no host"),
])
def test_an_hf_endpoint_the_hub_client_cannot_parse_is_a_usage_error(monkeypatch, endpoint, why):
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with pytest.raises(UsageError) as info:
        check_hub_endpoint()
    assert info.value.message == f"HF_ENDPOINT={endpoint} is not a URL the Hub client can use: {why}"
    assert info.value.hint == "Set HF_ENDPOINT to the Hub's or a mirror's URL (https://huggingface.co), or unset it."


@pytest.mark.parametrize("endpoint", [None, "", "https://huggingface.co", "http://127.0.0.1:8080", "https://hf-mirror.com/"])
def test_a_usable_or_unset_hf_endpoint_passes(monkeypatch, endpoint):
    if endpoint is None:
        monkeypatch.delenv("HF_ENDPOINT", raising=False)
    else:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
    check_hub_endpoint()
