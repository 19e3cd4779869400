"""Webhooks for finished responses: delivered to a real local receiver, verified with the ``openai`` SDK's
``client.webhooks.unwrap``; retried with backoff; not lost to a SIGKILL; delivered once per attempt by two
replicas; held to the outbound policy; inspected with ``respd webhooks``."""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Sdk, start_server
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer, create_pg_database, drop_pg_database, write_config
from tests.test_background import TERMINAL, wait_status
from tests.webhook_receiver import Received, WebhookReceiver

SECRET = "whsec_" + base64.b64encode(b"respd-webhook-test-secret-32byte").decode()
SECRET_ENV = {"RESPD_TEST_WEBHOOK_SECRET": SECRET}


def hooks_config(path: Path, upstream: str, receiver: WebhookReceiver, extra: str = "", endpoint: str = "",
                 allow: bool = True, host: str = "127.0.0.1") -> str:  # fmt: skip
    """A config announcing every finished response to ``receiver``, with quick retries."""
    allowed = 'outbound_allow = ["127.0.0.1:*", "localhost:*"]\n' if allow else ""
    return write_config(
        path,
        upstream,
        extra=f"""{allowed}webhook_retry_initial_s = 0.2
webhook_timeout_s = 1
{extra}
[[webhooks]]
url = "{receiver.url.replace("127.0.0.1", host)}"
secret_env = "RESPD_TEST_WEBHOOK_SECRET"
{endpoint}
""",
    )


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver().start()
    yield r
    r.stop()


def unwrap(got: Received) -> Any:
    """The event, as the SDK verifies and parses it (raises on a bad signature or an old timestamp)."""
    with openai.OpenAI(api_key="unused", webhook_secret=SECRET) as client:
        return client.webhooks.unwrap(got.body, got.headers)


def cli(server: RespdServer, *args: str) -> Any:
    """``respd webhooks …`` on the server's database, its output parsed (JSON lines, or one JSON document)."""
    out = subprocess.run([sys.executable, "-m", "respd", "webhooks", "--config", server.config, "--database",
                          server.database_url, *args], capture_output=True, text=True, timeout=60,
                         env={**server.env, "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert out.returncode == 0, out.stderr + out.stdout
    text = out.stdout.strip()
    return json.loads(text) if args[0] == "show" else [json.loads(line) for line in text.splitlines()]


@pytest.fixture(params=["sqlite", "postgres"])
def hooked(request: pytest.FixtureRequest, tmp_path: Path, fake: FakeUpstream,
           receiver: WebhookReceiver) -> Iterator[RespdServer]:  # fmt: skip
    config = hooks_config(tmp_path / "respd.toml", fake.base_url, receiver)
    url = f"sqlite:///{tmp_path / 'respd.db'}" if request.param == "sqlite" else create_pg_database()
    server = start_server(tmp_path, config, url, env=SECRET_ENV)
    yield server
    server.stop()
    if request.param == "postgres":
        drop_pg_database(url)


def test_every_ending_is_announced_and_verifies(hooked: RespdServer, fake: FakeUpstream,
                                                receiver: WebhookReceiver, sdk: Sdk) -> None:  # fmt: skip
    client = sdk(hooked, "k", timeout=20)
    fake.script(Reply(text="done"), Reply(text="cut short", finish_reason="length"))
    completed = client.responses.create(model="test-model", input="hi")
    incomplete = client.responses.create(model="test-model", input="long")
    failed = client.responses.create(model="dead-model", input="hi", background=True)
    fake.script(Reply(chunks=[f"w{i} " for i in range(200)], delay_s=0.05))
    running = client.responses.create(model="test-model", input="slow", background=True)
    assert wait_status(client, running.id, {"in_progress"} | TERMINAL).status == "in_progress"
    cancelled = client.responses.cancel(running.id)
    assert (incomplete.status, cancelled.status) == ("incomplete", "cancelled")
    got = receiver.wait_for(4)
    events = {e.data.id: e for e in map(unwrap, got)}
    assert {rid: e.type for rid, e in events.items()} == {
        completed.id: "response.completed", incomplete.id: "response.incomplete",
        failed.id: "response.failed", running.id: "response.cancelled",
    }  # fmt: skip
    for delivery in got:
        body = json.loads(delivery.body)
        assert set(body) == {"id", "object", "type", "created_at", "data"} and body["object"] == "event"
        assert body["id"].startswith("evt_") and delivery.headers["webhook-id"].startswith("wh_")
        assert abs(int(delivery.headers["webhook-timestamp"]) - time.time()) < 30
    # a tampered body or another secret does not verify
    with pytest.raises(openai.InvalidWebhookSignatureError), openai.OpenAI(api_key="x", webhook_secret=SECRET) as c:
        c.webhooks.unwrap(got[0].body.replace(b"response", b"Response"), got[0].headers)
    time.sleep(0.5)
    assert len(receiver.received) == 4  # once each
    rows = cli(hooked, "list", "--response", completed.id)
    assert [(r["state"], r["attempts"], r["event_type"]) for r in rows] == [("delivered", 1, "response.completed")]


def test_retries_with_backoff_until_delivered(tmp_path: Path, fake: FakeUpstream, receiver: WebhookReceiver) -> None:
    config = hooks_config(tmp_path / "respd.toml", fake.base_url, receiver)
    server = start_server(tmp_path, config, f"sqlite:///{tmp_path / 'respd.db'}", env=SECRET_ENV)
    try:
        receiver.fail(3, status=503)
        fake.script(Reply(text="ok"))
        with openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0) as client:
            resp = client.responses.create(model="test-model", input="hi", background=True)
        got = receiver.wait_for(4)
        assert [g.status for g in got] == [503, 503, 503, 200]
        assert len({g.headers["webhook-id"] for g in got}) == 1  # one message, attempted four times
        assert all(unwrap(g).data.id == resp.id for g in got)  # each attempt signed anew
        gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
        assert gaps[2] > gaps[0] * 1.5, gaps  # 0.2 s, 0.4 s, 0.8 s (±20 %)
        [row] = cli(server, "list", "--response", resp.id)
        shown = cli(server, "show", row["id"])
        assert shown["state"] == "delivered" and shown["attempts"] == 4
        assert [a["status"] for a in shown["attempt_log"]] == [503, 503, 503, 200]
        metrics = httpx.get(server.url + "/metrics").text
        assert 'respd_webhook_delivery_attempts_total{endpoint="' + receiver.url + '",outcome="failure"} 3.0' in metrics
        assert 'respd_webhook_deliveries_total{endpoint="' + receiver.url + '",outcome="delivered"} 1.0' in metrics
    finally:
        server.stop()


def test_sigkill_between_end_and_delivery_loses_nothing(tmp_path: Path, fake: FakeUpstream,
                                                         receiver: WebhookReceiver) -> None:  # fmt: skip
    config = hooks_config(tmp_path / "respd.toml", fake.base_url, receiver)
    db = f"sqlite:///{tmp_path / 'respd.db'}"
    a = start_server(tmp_path / "a", config, db, env=SECRET_ENV)
    try:
        receiver.hold(30)  # the first attempt is in flight when the server dies
        fake.script(Reply(text="ok"))
        with openai.OpenAI(base_url=a.url + "/v1", api_key="k", max_retries=0) as client:
            resp = client.responses.create(model="test-model", input="hi")
        receiver.wait_for(1)
        a.kill()  # SIGKILL: the response ended, its delivery did not
    finally:
        a.stop()
    b = start_server(tmp_path / "b", config, db, env=SECRET_ENV)
    try:
        got = receiver.wait_for(2)  # once the dead server's claim on the attempt runs out
        assert unwrap(got[1]).data.id == resp.id
        assert got[1].headers["webhook-id"] == got[0].headers["webhook-id"]
        [row] = cli(b, "list", "--response", resp.id)
        assert (row["state"], row["attempts"]) == ("delivered", 1)
    finally:
        b.stop()


def test_two_replicas_deliver_each_once(tmp_path: Path, fake: FakeUpstream, receiver: WebhookReceiver) -> None:
    config = hooks_config(tmp_path / "respd.toml", fake.base_url, receiver)
    url = create_pg_database()
    a = start_server(tmp_path / "a", config, url, env=SECRET_ENV)
    b = start_server(tmp_path / "b", config, url, env=SECRET_ENV)
    try:
        ids = []
        for i in range(12):
            server = (a, b)[i % 2]
            with openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0) as client:
                ids.append(client.responses.create(model="test-model", input=f"n{i}", background=i % 3 == 0).id)
        got = receiver.wait_for(12)
        time.sleep(1.5)  # time for a duplicate to show up
        got = receiver.received
        assert sorted(unwrap(g).data.id for g in got) == sorted(ids)
        assert len({g.headers["webhook-id"] for g in got}) == 12
        rows = cli(a, "list")
        assert sorted((r["state"], r["attempts"]) for r in rows) == [("delivered", 1)] * 12
    finally:
        a.stop()
        b.stop()
        drop_pg_database(url)


def test_outbound_policy_and_key_filter(tmp_path: Path, fake: FakeUpstream, receiver: WebhookReceiver) -> None:
    # not allowed to reach localhost (127.0.0.1 when resolved): every attempt is refused by the policy, and
    # given up at the deadline
    config = hooks_config(tmp_path / "respd.toml", fake.base_url, receiver, allow=False, host="localhost",
                          extra='webhook_retry_max_s = 1\napi_keys = ["key-a", "key-b"]\n'
                                '[[keys]]\nkey = "key-a"\nlabel = "team-a"\n',
                          endpoint='keys = ["team-a"]')  # fmt: skip
    server = start_server(tmp_path, config, f"sqlite:///{tmp_path / 'respd.db'}", env=SECRET_ENV)
    try:
        for key in ("key-a", "key-b"):
            with openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0) as client:
                client.responses.create(model="test-model", input="hi")
        deadline = time.monotonic() + 15
        while (rows := cli(server, "list")) and rows[0]["state"] == "pending" and time.monotonic() < deadline:
            time.sleep(0.3)
        assert len(rows) == 1  # key-b's response matched no endpoint
        shown = cli(server, "show", rows[0]["id"])
        assert shown["state"] == "failed" and shown["attempts"] >= 2
        assert "127.0.0.1" in shown["last_error"] and all(a["status"] is None for a in shown["attempt_log"])
        assert receiver.received == []
        assert 'outcome="gave_up"} 1.0' in httpx.get(server.url + "/metrics").text
        # the operator can send a given-up delivery again (here: still refused, so it fails again)
        out = subprocess.run([sys.executable, "-m", "respd", "webhooks", "--config", server.config, "--database",
                              server.database_url, "retry", rows[0]["id"]], capture_output=True, text=True,
                             env=server.env | {"PATH": "/usr/bin:/bin"}, timeout=60)  # fmt: skip
        assert out.returncode == 0 and "due now" in out.stdout
    finally:
        server.stop()


def test_bad_webhook_config_stops_startup(tmp_path: Path, fake: FakeUpstream, receiver: WebhookReceiver) -> None:
    def serve(config: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "respd", "serve", "--config", config, "--port", "1"],
                              capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", **env})  # fmt: skip

    out = serve(hooks_config(tmp_path / "a.toml", fake.base_url, receiver), {})  # no secret in the environment
    assert out.returncode == 2 and "RESPD_TEST_WEBHOOK_SECRET" in out.stderr
    out = serve(hooks_config(tmp_path / "b.toml", fake.base_url, receiver, allow=False), SECRET_ENV)
    assert out.returncode == 2 and "127.0.0.1" in out.stderr and "outbound_allow" in out.stderr
