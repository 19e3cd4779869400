"""The context window of an OpenAI-compatible upstream, learned from the upstream itself.

A route without ``context_window`` need not stay unchecked: vLLM lists each model's ``max_model_len`` in
``GET /v1/models``, other servers (LM Studio, OpenRouter-style gateways) a ``context_length``, and llama.cpp's
server gives the context it was started with in ``GET /props`` (``default_generation_settings.n_ctx``, or
``n_ctx``). The first request to such a route asks, once (a failed ask is retried after
:data:`RETRY_S`); what it learns is kept for the life of the process.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import orjson

log = logging.getLogger("respd.backends")

TIMEOUT_S = 5.0  # an upstream that does not answer this quickly is asked again later, and the request goes on
RETRY_S = 60.0


async def learn(base_url: str, model: str, headers: dict[str, str]) -> int | None:
    """The context window of ``model`` at ``base_url`` (the upstream's ``/v1``), or None if it does not say."""
    async with httpx.AsyncClient(timeout=TIMEOUT_S, headers=headers) as http:
        window = _from_models(await _json(http, base_url.rstrip("/") + "/models"), model)
        if window is None:  # llama.cpp's server: /props at its root, beside /v1
            window = _from_props(await _json(http, base_url.rstrip("/").removesuffix("/v1") + "/props"))
    if window is not None:
        log.info("model %s at %s: a context window of %d tokens, as the upstream says", model, base_url, window)
    return window


async def _json(http: httpx.AsyncClient, url: str) -> Any:
    try:
        reply = await http.get(url)
        return reply.json() if reply.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _from_models(doc: Any, model: str) -> int | None:
    entries = [e for e in (doc.get("data") if isinstance(doc, dict) else None) or () if isinstance(e, dict)]
    named = [e for e in entries if e.get("id") == model] or (entries if len(entries) == 1 else [])
    for entry in named:
        meta = entry["meta"] if isinstance(entry.get("meta"), dict) else {}
        for value in (entry.get("max_model_len"), entry.get("context_length"), entry.get("context_window"),
                      meta.get("n_ctx")):  # fmt: skip
            if (found := _positive(value)) is not None:
                return found
    return None


def _from_props(doc: Any) -> int | None:
    if not isinstance(doc, dict):
        return None
    settings = doc.get("default_generation_settings")
    nested = settings.get("n_ctx") if isinstance(settings, dict) else None
    return _positive(nested) or _positive(doc.get("n_ctx"))


# How OpenAI-compatible servers word a request longer than the model's context window: vLLM ("This model's
# maximum context length is 4096 tokens. However, you requested …", older: "… is too long to fit into the
# model"), OpenAI (code ``context_length_exceeded``), llama.cpp's server ("the request exceeds the available
# context size", type ``exceed_context_size_error``, with ``n_ctx``).
_REFUSAL = re.compile(
    rb"maximum context length|context_length_exceeded|exceeds? the available context size|exceed_context_size"
    rb"|too long to fit into the model|context length exceeded",
    re.IGNORECASE,
)
_NAMED_WINDOW = re.compile(rb"maximum context length is (\d+)|\(context length (\d+)\)", re.IGNORECASE)


def refusal(status: int, body: bytes) -> tuple[bool, int | None]:
    """Whether an upstream's error answer refuses a request as too long for the context window, and the window
    it names (None when it names none)."""
    if status not in (400, 413) or not _REFUSAL.search(body):
        return False, None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    error = doc.get("error") if isinstance(doc, dict) else None
    window = _positive(error.get("n_ctx")) if isinstance(error, dict) else None
    if window is None and (named := _NAMED_WINDOW.search(body)) is not None:
        window = _positive(int(named.group(1) or named.group(2)))
    return True, window
