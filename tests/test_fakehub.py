"""The fake Hub itself: it must answer the real client as huggingface.co does."""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from fakehub import FakeHub, fake_hub, hf_home, refused_endpoint  # noqa: F401 - fixtures

GATED = "meta/gated-model"


@pytest.fixture
def hub(fake_hub: FakeHub, tmp_path: Path) -> FakeHub:  # noqa: F811
    model_dir = tmp_path / "saved-model"
    (model_dir / "nested" / "deeper").mkdir(parents=True)
    (model_dir / "config.json").write_text('{"model_type": "tiny"}')
    (model_dir / "nested" / "deeper" / "weights.bin").write_bytes(bytes(range(256)) * 4)
    fake_hub.add_repo("org/saved-model", directory=model_dir)
    fake_hub.add_repo(GATED, files={"config.json": b"{}"}, gated="auto")
    fake_hub.add_token("hf_alice", user="alice")
    return fake_hub


def connect(hub: FakeHub) -> http.client.HTTPConnection:
    url = urlsplit(hub.endpoint)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=5)


def ask(hub: FakeHub, method: str, path: str, token: str | None = None) -> http.client.HTTPResponse:
    """One request on a fresh connection, its body read."""
    conn = connect(hub)
    conn.request(method, path, headers={"Authorization": f"Bearer {token}"} if token else {})
    response = conn.getresponse()
    response.read()
    return response


def test_snapshot_download_serves_a_directory_recursively(hub: FakeHub, tmp_path: Path) -> None:
    from huggingface_hub import snapshot_download

    local = Path(snapshot_download("org/saved-model", endpoint=hub.endpoint, token=False))
    assert (local / "config.json").read_text() == '{"model_type": "tiny"}'
    assert (local / "nested" / "deeper" / "weights.bin").read_bytes() == bytes(range(256)) * 4


def test_downloads_are_gated_until_access_is_granted(hub: FakeHub) -> None:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import GatedRepoError

    assert HfApi(endpoint=hub.endpoint).model_info(GATED, token="hf_alice").gated == "auto"
    with pytest.raises(GatedRepoError):
        hf_hub_download(GATED, "config.json", endpoint=hub.endpoint, token="hf_alice")
    hub.set_access(GATED, "alice", "granted")
    path = hf_hub_download(GATED, "config.json", endpoint=hub.endpoint, token="hf_alice")
    assert Path(path).read_bytes() == b"{}"


@pytest.mark.parametrize(
    ("token", "state", "status", "code", "message"),
    [
        (None, None, 401, "GatedRepo", "Please log in."),
        ("hf_alice", None, 403, "GatedRepo", "not in the authorized list"),
        ("hf_alice", "pending", 403, "GatedRepo", "is awaiting a review from the repo authors."),
        ("hf_alice", "rejected", 403, "GatedRepo", "has been rejected by the repo's authors."),
        ("hf_alice", "reset", 403, "GatedRepo", "has been reset by the repo's authors"),
        ("hf_fine", "granted", 403, None, "Please enable access to public gated repositories"),
        ("hf_wrong", None, 401, None, "Invalid credentials in Authorization header"),
        ("hf_alice", "granted", 200, None, None),
    ],
)
def test_gate_answers_match_the_hub(hub, token, state, status, code, message) -> None:
    hub.add_token("hf_fine", user="alice", role="fineGrained", can_read_gated=False)
    hub.set_access(GATED, "alice", state)
    for method, path in [
        ("GET", f"/api/models/{GATED}/auth-check"),
        ("HEAD", f"/{GATED}/resolve/main/config.json"),
    ]:
        response = ask(hub, method, path, token)
        assert response.status == status
        assert response.getheader("X-Error-Code") == code
        assert message is None or message in response.getheader("X-Error-Message")


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("hf_alice", 404)])
def test_missing_repo(hub: FakeHub, token: str | None, status: int) -> None:
    response = ask(hub, "GET", "/api/models/nobody/nothing/auth-check", token)
    assert (response.status, response.getheader("X-Error-Code")) == (status, "RepoNotFound")


def test_resolve_headers_range_and_keep_alive(hub: FakeHub) -> None:
    conn = connect(hub)  # one connection for all three requests
    conn.request("HEAD", "/org/saved-model/resolve/main/nested/deeper/weights.bin")
    head = conn.getresponse()
    assert head.read() == b""
    assert head.getheader("Content-Length") == "1024"
    assert len(head.getheader("X-Repo-Commit")) == 40 and head.getheader("ETag").startswith('"')
    conn.request(
        "GET", "/org/saved-model/resolve/main/nested/deeper/weights.bin", headers={"Range": "bytes=2-5"}
    )
    ranged = conn.getresponse()
    assert (ranged.status, ranged.read()) == (206, bytes([2, 3, 4, 5]))
    assert ranged.getheader("Content-Range") == "bytes 2-5/1024"
    conn.request("GET", "/org/saved-model/resolve/main/missing.txt")
    missing = conn.getresponse()
    missing.read()
    assert (missing.status, missing.getheader("X-Error-Code")) == (404, "EntryNotFound")


def test_request_log_and_latency(hub: FakeHub) -> None:
    from huggingface_hub import HfApi

    hub.latency = 0.2
    started = time.monotonic()
    HfApi(endpoint=hub.endpoint).auth_check("org/saved-model", token=False)
    assert time.monotonic() - started >= 0.2
    assert hub.requests == [("GET", "/api/models/org/saved-model/auth-check")]


def test_whoami(hub: FakeHub) -> None:
    from huggingface_hub import HfApi

    hub.add_token("hf_fine", user="bob", role="fineGrained", can_read_gated=True, orgs=("lab",))
    info = HfApi(endpoint=hub.endpoint).whoami(token="hf_fine")
    assert info["name"] == "bob" and [org["name"] for org in info["orgs"]] == ["lab"]
    assert info["auth"]["accessToken"]["role"] == "fineGrained"
    assert info["auth"]["accessToken"]["fineGrained"]["canReadGatedRepos"] is True


def test_stop_does_not_hang_on_a_stalled_request(hf_home: Path) -> None:  # noqa: F811
    hub = FakeHub().start()
    hub.add_repo("slow/model", files={"config.json": b"{}"})
    hub.stall("slow/model")
    conn = connect(hub)
    waiter = threading.Thread(target=lambda: conn.request("GET", "/api/models/slow/model/auth-check"))
    waiter.start()
    waiter.join()
    time.sleep(0.1)  # the request is now parked in the server
    started = time.monotonic()
    hub.stop()
    assert time.monotonic() - started < 2
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        conn.getresponse()


def test_refused_endpoint_refuses() -> None:
    url = urlsplit(refused_endpoint())
    with pytest.raises(ConnectionRefusedError):
        http.client.HTTPConnection(url.hostname, url.port, timeout=5).request("GET", "/")
