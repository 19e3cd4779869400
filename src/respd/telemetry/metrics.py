"""Prometheus metrics (``GET /metrics``), named after the OpenTelemetry GenAI and HTTP semantic conventions
where one fits (``gen_ai_server_time_to_first_token_seconds``, ``http_server_request_duration_seconds``: the
OTel names as Prometheus spells them) and after vLLM's (``prompt_tokens``, ``generation_tokens``,
``num_requests_running``/``waiting``) otherwise, with a ``respd_`` prefix.

Cheap on the hot path: a request costs one histogram observation, through a child looked up in a dict (not
``labels()``, which validates and locks on every call); gauges that need the database are read at scrape time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

# Seconds; the OTel GenAI conventions' advice for time to first token and request duration, cut at 10 min.
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
            40.96, 81.92, 163.84, 327.68, 655.36)  # fmt: skip
_HTTP = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    """The process's metrics, in a registry of its own (nothing of the default registry's global state)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=False)
        self.http = Histogram(
            "http_server_request_duration_seconds", "HTTP requests by route and status, and how long they took "
            "(a stream: until its last byte).", ["http_request_method", "http_route", "http_response_status_code"],
            buckets=_HTTP, registry=r)  # fmt: skip
        self.ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds", "Time from a model request to its first output.",
            ["gen_ai_request_model"], buckets=_LATENCY, registry=r)  # fmt: skip
        self.duration = Histogram(
            "gen_ai_server_request_duration_seconds", "Time from a response's start to its end, by final status.",
            ["gen_ai_request_model", "status"], buckets=_LATENCY, registry=r)  # fmt: skip
        self.prompt_tokens = Counter("respd_prompt_tokens", "Input tokens of finished responses.",
                                     ["model_name"], registry=r)  # fmt: skip
        self.generation_tokens = Counter("respd_generation_tokens", "Output tokens of finished responses.",
                                         ["model_name"], registry=r)  # fmt: skip
        self.responses = Counter("respd_responses", "Finished responses by final status.",
                                 ["model_name", "status"], registry=r)  # fmt: skip
        self.upstream_errors = Counter("respd_upstream_errors", "Model backend failures by kind.",
                                       ["model_name", "error_type"], registry=r)  # fmt: skip
        self.running = Gauge("respd_num_requests_running", "Responses generating in this process now.",
                             registry=r)  # fmt: skip
        self.waiting = Gauge("respd_num_requests_waiting", "Background responses queued for any replica.",
                             registry=r)  # fmt: skip
        self.jobs = Gauge("respd_background_jobs", "Background jobs in the database, by state (all replicas).",
                          ["state"], registry=r)  # fmt: skip
        self.webhook_attempts = Counter(
            "respd_webhook_delivery_attempts", "Webhook delivery attempts by this process, by outcome "
            "(failure: retried later, or given up).", ["endpoint", "outcome"], registry=r)  # fmt: skip
        self.webhook_deliveries = Counter(
            "respd_webhook_deliveries", "Webhook deliveries ended by this process: delivered or given up.",
            ["endpoint", "outcome"], registry=r)  # fmt: skip
        self.webhook_pending = Gauge("respd_webhook_deliveries_pending",
                                     "Webhook deliveries not yet delivered nor given up (all replicas).",
                                     registry=r)  # fmt: skip
        self.tool_calls = Counter("respd_tool_calls", "Hosted tool calls by tool and outcome.",
                                  ["tool", "outcome"], registry=r)  # fmt: skip
        self.rate_limited = Counter("respd_rate_limited_requests", "Requests refused by a rate limit, by limit.",
                                    ["limit"], registry=r)  # fmt: skip
        self._http_children: dict[tuple[str, str, int], Histogram] = {}
        self._end_children: dict[tuple[str, str], tuple[Counter, Histogram, Counter, Counter]] = {}
        self._refreshers: list[Callable[[], Awaitable[None]]] = []

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        child = self._http_children.get(key)
        if child is None:
            child = self._http_children[key] = self.http.labels(method, route, str(status))
        child.observe(seconds)

    def finished(self, model: str, status: str, seconds: float, usage: dict[str, object] | None) -> None:
        """A response ended: its status, duration and tokens."""
        children = self._end_children.get((model, status))
        if children is None:
            children = self._end_children[(model, status)] = (
                self.responses.labels(model, status), self.duration.labels(model, status),
                self.prompt_tokens.labels(model), self.generation_tokens.labels(model))  # fmt: skip
        responses, duration, prompt_tokens, generation_tokens = children
        responses.inc()
        duration.observe(seconds)
        if usage:
            prompt, generated = usage.get("input_tokens"), usage.get("output_tokens")
            if isinstance(prompt, int) and prompt:
                prompt_tokens.inc(prompt)
            if isinstance(generated, int) and generated:
                generation_tokens.inc(generated)

    def on_scrape(self, refresh: Callable[[], Awaitable[None]]) -> None:
        """Run ``refresh`` (e.g. gauges read from the database) before each scrape."""
        self._refreshers.append(refresh)

    async def exposition(self) -> bytes:
        """The text format of every metric, gauges refreshed first."""
        for refresh in self._refreshers:
            await refresh()
        return generate_latest(self.registry)
