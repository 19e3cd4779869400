"""Traces: the span tree of a request, captured in-process with the OpenTelemetry SDK's in-memory exporter,
and the model turn's ``traceparent`` as the upstream receives it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.testclient import TestClient

from respd.api.app import create_app
from respd.config import load_settings
from respd.telemetry import tracing
from tests.conftest import UPSTREAM_KEY
from tests.fake_searxng import FakeSearxng
from tests.fake_upstream import FakeUpstream, Reply
from tests.test_web_search import searching, web_config

CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"  # a client's own trace


@pytest.fixture
def traced(tmp_path: Path, fake: FakeUpstream, searxng: FakeSearxng) -> Iterator[tuple[TestClient, InMemorySpanExporter]]:
    config = web_config(tmp_path / "respd.toml", fake.base_url, searxng.base_url)
    settings = load_settings(config, database_url=f"sqlite:///{tmp_path / 'respd.db'}",
                             env={"RESPD_DATA_DIR": str(tmp_path), "RESPD_TEST_UPSTREAM_KEY": UPSTREAM_KEY})  # fmt: skip
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        with TestClient(create_app(settings, tracer_provider=provider)) as client:
            yield client, exporter
    finally:
        tracing.install(None)


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    [span] = [s for s in spans if s.name == name]
    return span


def test_span_tree_of_a_response(traced: tuple[TestClient, InMemorySpanExporter], fake: FakeUpstream) -> None:
    client, exporter = traced
    fake.script(Reply(text="traced answer", usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}))
    conv = client.post("/v1/conversations", json={}).json()["id"]
    r = client.post("/v1/responses", json={"model": "test-model", "input": "hi", "conversation": conv},
                    headers={"traceparent": CALLER})  # fmt: skip
    assert r.status_code == 200
    rid = r.json()["id"]
    spans = exporter.get_finished_spans()
    request = by_name(spans, "POST /v1/responses")
    turn = by_name(spans, "chat test-model")
    # the request continues the caller's trace; the model turn is its child
    assert request.kind == SpanKind.SERVER and request.context is not None and turn.context is not None
    assert f"{request.context.trace_id:032x}" == CALLER.split("-")[1]
    assert request.parent is not None and f"{request.parent.span_id:016x}" == CALLER.split("-")[2]
    assert turn.parent is not None and turn.parent.span_id == request.context.span_id
    assert turn.kind == SpanKind.CLIENT
    assert request.attributes is not None and turn.attributes is not None
    assert request.attributes["http.route"] == "/v1/responses" and request.attributes["http.response.status_code"] == 200
    assert request.attributes["gen_ai.response.id"] == rid
    assert dict(turn.attributes).items() >= {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "test-model", "gen_ai.response.id": rid,
        "gen_ai.conversation.id": conv, "gen_ai.usage.input_tokens": 5, "gen_ai.usage.output_tokens": 2,
    }.items()  # fmt: skip
    # the upstream got the model turn's context
    sent = fake.requests[-1]["headers"]["traceparent"]
    assert sent == f"00-{turn.context.trace_id:032x}-{turn.context.span_id:016x}-01"


def test_tool_call_span_and_metric(traced: tuple[TestClient, InMemorySpanExporter], fake: FakeUpstream) -> None:
    client, exporter = traced
    fake.script(*searching("otter facts"))
    r = client.post("/v1/responses", json={"model": "test-model", "input": "otters?", "tools": [{"type": "web_search"}]})
    assert r.json()["status"] == "completed"
    spans = exporter.get_finished_spans()
    request = by_name(spans, "POST /v1/responses")
    tool = by_name(spans, "execute_tool web_search")
    turns = [s for s in spans if s.name == "chat test-model"]
    assert len(turns) == 2 and request.context is not None and tool.parent is not None
    assert tool.parent.span_id == request.context.span_id
    assert all(t.parent is not None and t.parent.span_id == request.context.span_id for t in turns)
    assert tool.attributes is not None and tool.attributes["gen_ai.tool.name"] == "web_search"
    assert str(tool.attributes["gen_ai.tool.call.id"]).startswith("ws_")
    assert tool.attributes["gen_ai.response.id"] == r.json()["id"]
    assert 'respd_tool_calls_total{outcome="completed",tool="web_search"} 1.0' in client.get("/metrics").text


def test_failed_turn_span(traced: tuple[TestClient, InMemorySpanExporter]) -> None:
    client, exporter = traced
    r = client.post("/v1/responses", json={"model": "dead-model", "input": "hi"})
    assert r.json()["status"] == "failed"
    turn = by_name(exporter.get_finished_spans(), "chat dead-model")
    assert turn.attributes is not None and turn.attributes["error.type"] == "connect"
    assert not turn.status.is_ok


def test_off_by_default(tmp_path: Path) -> None:
    settings = load_settings(env={"RESPD_DATA_DIR": str(tmp_path)})
    assert settings.ops.traces is False
    on = load_settings(env={"RESPD_DATA_DIR": str(tmp_path), "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert on.ops.traces is True
    disabled = load_settings(env={"RESPD_DATA_DIR": str(tmp_path), "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318",
                                  "OTEL_SDK_DISABLED": "true"})  # fmt: skip
    assert disabled.ops.traces is False
