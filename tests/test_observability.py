"""What an operator sees: Prometheus metrics that move, request ids and ``openai-processing-ms`` on every
answer, one access-log line per request (text or JSON, never the key), and readiness beside liveness."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import start_server
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer, write_config
from tests.test_background import TERMINAL, wait_status


def scrape(server: RespdServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``: (name, sorted labels) -> value."""
    r = httpx.get(server.url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}  # fmt: skip


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> RespdServer:
    tmp = tmp_path_factory.mktemp("observed")
    config = write_config(tmp / "respd.toml", fake.base_url,
                          extra='api_keys = ["sk-plain-key-1234"]\n[[keys]]\nkey = "sk-team-secret-9876"\nlabel = "team-a"\n')  # fmt: skip
    server = start_server(tmp, config, f"sqlite:///{tmp / 'respd.db'}", env={"RESPD_LOG_LEVEL": "info"})
    yield server
    server.stop()


def test_metrics_move(keyed: RespdServer, fake: FakeUpstream) -> None:
    before = scrape(keyed)
    fake.script(Reply(text="one two three", usage={"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}))
    with openai.OpenAI(base_url=keyed.url + "/v1", api_key="sk-team-secret-9876", max_retries=0) as client:
        client.responses.create(model="test-model", input="hi")
        client.responses.create(model="dead-model", input="hi")  # connection refused: ends failed
        fake.script(Reply(chunks=["x "] * 100, delay_s=0.03))
        bg = client.responses.create(model="test-model", input="bg", background=True)
        assert wait_status(client, bg.id, {"in_progress"} | TERMINAL).status == "in_progress"
        during = scrape(keyed)
        client.responses.cancel(bg.id)
    after = scrape(keyed)
    delta = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)  # noqa: E731
    route = {"http_request_method": "POST", "http_route": "/v1/responses", "http_response_status_code": "200"}
    assert delta("http_server_request_duration_seconds_count", **route) == 3
    assert delta("respd_prompt_tokens_total", model_name="test-model") >= 7
    assert delta("respd_generation_tokens_total", model_name="test-model") >= 3
    assert delta("gen_ai_server_time_to_first_token_seconds_count", gen_ai_request_model="test-model") >= 2
    assert delta("respd_responses_total", model_name="test-model", status="completed") == 1
    assert delta("respd_responses_total", model_name="dead-model", status="failed") == 1
    assert delta("respd_responses_total", model_name="test-model", status="cancelled") == 1
    assert delta("respd_upstream_errors_total", model_name="dead-model", error_type="connect") == 1
    assert value(during, "respd_background_jobs", state="running") == 1
    assert value(during, "respd_num_requests_running") >= 1
    assert value(after, "respd_background_jobs", state="running") == 0
    assert delta("gen_ai_server_request_duration_seconds_count", gen_ai_request_model="test-model",
                 status="completed") == 1  # fmt: skip


def test_request_ids_and_processing_time(keyed: RespdServer, fake: FakeUpstream) -> None:
    fake.script(Reply(text="hi"))
    with openai.OpenAI(base_url=keyed.url + "/v1", api_key="sk-plain-key-1234", max_retries=0) as client:
        raw = client.responses.with_raw_response.create(model="test-model", input="hi",
                                                        extra_headers={"X-Client-Request-Id": "my-trace-42"})  # fmt: skip
        resp = raw.parse()
        assert raw.headers["x-request-id"].startswith("req_") and len(raw.headers["x-request-id"]) == 36
        assert raw.headers["x-client-request-id"] == "my-trace-42"
        assert int(raw.headers["openai-processing-ms"]) >= 0
        assert resp._request_id == raw.headers["x-request-id"]  # the SDK's own accessor
        with pytest.raises(openai.NotFoundError) as err:
            client.responses.retrieve("resp_nope")
        assert err.value.request_id is not None and err.value.request_id.startswith("req_")
    streamed = httpx.post(keyed.url + "/v1/responses", json={"model": "test-model", "input": "x", "stream": True},
                          headers={"authorization": "Bearer sk-plain-key-1234"})  # fmt: skip
    assert streamed.headers["x-request-id"].startswith("req_") and "openai-processing-ms" in streamed.headers
    # one access line per request: method, path, status, duration, response id, the key's label, never the key
    time.sleep(0.2)
    lines = [line for line in keyed.log().splitlines() if " respd.access: " in line]
    mine = [line for line in lines if raw.headers["x-request-id"] in line]
    assert len(mine) == 1 and "POST /v1/responses 200 " in mine[0] and resp.id in mine[0]
    assert "key=key_" in mine[0] and "sk-plain" not in keyed.log() and "sk-team" not in keyed.log()
    assert any("GET /v1/responses/resp_nope 404" in line for line in lines)


def test_json_logs_and_readiness(tmp_path: Path, fake: FakeUpstream) -> None:
    config = write_config(tmp_path / "respd.toml", fake.base_url, extra="metrics = false\n")
    db = tmp_path / "respd.db"
    server = start_server(tmp_path, config, f"sqlite:///{db}", env={"RESPD_LOG_FORMAT": "json", "RESPD_LOG_LEVEL": "info"})
    try:
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 200 and ready.json()["migrations"] == "ok"
        assert httpx.get(server.url + "/metrics").status_code == 404  # turned off
        fake.script(Reply(text="hi"))
        rid = httpx.post(server.url + "/v1/responses", json={"model": "test-model", "input": "x"}).json()["id"]
        time.sleep(0.2)
        records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
        access = [r for r in records if r["logger"] == "respd.access" and r.get("response_id") == rid]
        assert len(access) == 1 and access[0]["status"] == 200 and access[0]["key"] == "anonymous"
        assert {"time", "level", "method", "path", "duration_ms", "request_id"} <= set(access[0])
        # a database behind this code's schema: not ready (liveness still answers)
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE alembic_version SET version_num = '0002'")
        unready = httpx.get(server.url + "/readyz")
        assert unready.status_code == 503 and "0002" in unready.json()["migrations"]
        assert httpx.get(server.url + "/healthz").status_code == 200
    finally:
        server.stop()
