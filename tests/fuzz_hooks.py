"""Schemathesis hooks and checks of the fuzz suite (``tests/test_fuzz.py`` runs ``st run`` with this module).

Checks, on every answer to a generated request:

- ``respd_error_envelope``: a 4xx or 5xx is JSON, exactly ``{"error": {"message", "type", "param", "code"}}``
  with a non-empty message (5xx are caught by schemathesis' own ``not_a_server_error``);
- ``respd_stream_ends``: an event stream is well-formed, numbers its events without a gap, and ends with a
  terminal event (an empty replay is allowed only after ``starting_after``);
- ``respd_stored_as_answered``: a created response reads back (``GET``) exactly as its answer or stream
  ended (a background one once it has ended), and one with ``store: false`` is not found.

Hooks steer generation toward what exists, deterministically under the run's seed: path parameters are
sometimes swapped for ids the test created beforehand (``RESPD_FUZZ_IDS``, JSON: parameter name -> ids), and
a body's ``model`` sometimes for a model the server serves (``RESPD_FUZZ_MODELS``).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import schemathesis
from hypothesis import strategies as st

TERMINAL = {"response.completed", "response.incomplete", "response.failed", "response.cancelled"}
_IDS: dict[str, list[str]] = json.loads(os.environ.get("RESPD_FUZZ_IDS", "{}"))
_MODELS: list[str] = json.loads(os.environ.get("RESPD_FUZZ_MODELS", "[]"))


# -- hooks: reach what exists ---------------------------------------------------------------------
@schemathesis.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    known = {name: _IDS[name] for name in path_parameters or () if _IDS.get(name)}
    if not path_parameters or not known:
        return st.just(path_parameters)
    return st.fixed_dictionaries({name: st.sampled_from([path_parameters[name], *ids])
                                  for name, ids in known.items()}).map(lambda chosen: {**path_parameters, **chosen})  # fmt: skip


@schemathesis.hook
def flatmap_body(context: Any, body: Any) -> Any:
    """Bodies beyond what the schema alone yields: for an operation that asks a model, the generated body made
    runnable (a served model, some input, none of the parameters always refused) and real clients' requests
    (``tests/client_captures``); then, for any JSON object, often one value anywhere in it swapped for a
    hostile one (a wrong type, a string where an object belongs, an integer past 64 bits, a NUL, …). Most
    bugs in validation live one wrong value away from a valid request, which random bodies rarely are."""
    if not isinstance(body, dict):
        return st.just(body)
    operation = getattr(context, "operation", None)
    path = operation.path if operation is not None else ""
    bases = [body]
    if _MODELS and path.endswith(_TAKES_A_MODEL):
        runnable = [_runnable(body, model) for model in _MODELS]
        bases += runnable * 2 + (_captured() if path.endswith("/responses") else [])
    return st.sampled_from(bases).flatmap(lambda base: st.one_of(st.just(base), _mutated(base)))


_TAKES_A_MODEL = ("/responses", "/responses/input_tokens", "/responses/compact")


def _runnable(body: dict[str, Any], model: str) -> dict[str, Any]:
    out = {k: v for k, v in body.items() if k not in ("prompt", "moderation", "conversation")}
    out["model"] = model
    if not out.get("input"):
        out["input"] = "Say hi."
    if out.get("background"):
        out["store"] = True
    return out


@functools.cache
def _captured_bodies() -> tuple[str, ...]:
    found: list[dict[str, Any]] = []
    for path in sorted((Path(__file__).parent / "client_captures").glob("*.json")):
        data = json.loads(path.read_text())
        found += [c["body"] for c in data] if isinstance(data, list) else [data]
    return tuple(json.dumps(b) for b in found)


def _captured() -> list[dict[str, Any]]:
    """What real clients sent, addressed to a model this server serves."""
    return [{**json.loads(b), "model": _MODELS[0]} for b in _captured_bodies()]


_WORST: list[Any] = [
    None, True, 0, -1, "", "x", "\x00", "a\x00b", [], {}, ["x"], [None], [1], {"type": {}}, {"type": []},
    {"type": None}, {"type": "nonsense"}, 2**63, -(2**63) - 1, 2**64, 1e308, "9" * 40, "m" * 129, "💥" * 3,
]  # fmt: skip
_HOSTILE = st.one_of(
    st.sampled_from(_WORST),
    st.integers(),
    st.text(max_size=6),
    st.floats(allow_nan=False, allow_infinity=False),  # NaN and infinities are not JSON: the client cannot send them
)


def _paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document a value sits (object members and array elements), outermost first."""
    out = []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        out.append((*at, key))
        out += _paths(child, (*at, key))
    return out


def _mutated(body: dict[str, Any]) -> Any:
    paths = _paths(body)
    if not paths:
        return st.builds(lambda v: {"input": v, **body}, _HOSTILE)
    return st.tuples(st.sampled_from(paths), _HOSTILE).map(lambda pv: _replaced(body, *pv))


def _replaced(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


# -- checks ---------------------------------------------------------------------------------------
@schemathesis.check
def respd_error_envelope(ctx: Any, response: Any, case: Any) -> None:
    if response.status_code < 400:
        return
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), response.headers
    body = json.loads(response.content)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err, dict) and set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str), err
    assert err["param"] is None or isinstance(err["param"], str), err
    assert err["code"] is None or isinstance(err["code"], str), err


def sse(content: bytes) -> list[dict[str, Any]]:
    """The events of a server-sent event stream; every frame must be ``event:`` + ``data:`` of that type."""
    events = []
    for block in content.decode().strip().split("\n\n") if content.strip() else []:
        lines = block.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), block[:300]
        event = json.loads(lines[1][len("data: ") :])
        assert event["type"] == lines[0][len("event: ") :], block[:300]
        events.append(event)
    return events


def _is_stream(response: Any) -> bool:
    return response.status_code == 200 and response.headers.get("content-type", [""])[0].startswith(
        "text/event-stream"
    )


def _query(response: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(response.request.url).query)


@schemathesis.check
def respd_stream_ends(ctx: Any, response: Any, case: Any) -> None:
    if not _is_stream(response):
        return
    events = sse(response.content)
    after = int(_query(response).get("starting_after", ["-1"])[0])
    if not events:
        assert after >= 0, "a stream with no events"
        return
    numbers = [e["sequence_number"] for e in events]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), f"sequence numbers with a gap: {numbers}"
    assert numbers[0] == after + 1, f"the stream starts at {numbers[0]}, asked for after {after}"
    assert events[-1]["type"] in TERMINAL, f"the stream ends without a terminal event: {events[-1]['type']}"


def _root(response: Any) -> str:
    url = urlsplit(response.request.url)
    return f"{url.scheme}://{url.netloc}"


def _ended(root: str, rid: str) -> httpx.Response:
    """The stored response once it has ended (a background one may still run), or as it stands after a while."""
    deadline = time.monotonic() + 15
    while True:
        got = httpx.get(f"{root}/v1/responses/{rid}", timeout=10)
        if got.status_code != 200 or got.json()["status"] not in ("queued", "in_progress"):
            return got
        assert time.monotonic() < deadline, f"response {rid} did not end: {got.json()['status']}"
        time.sleep(0.1)


@schemathesis.check
def respd_stored_as_answered(ctx: Any, response: Any, case: Any) -> None:
    if case.method.upper() != "POST" or not case.path.endswith("/responses") or response.status_code != 200:
        return
    final = sse(response.content)[-1]["response"] if _is_stream(response) else json.loads(response.content)
    root, rid = _root(response), final["id"]
    stored = _ended(root, rid)
    if final["store"] is False:
        assert stored.status_code == 404, f"store: false, yet GET found {rid}"
        return
    assert stored.status_code == 200, f"{rid} was answered, then GET said {stored.status_code}: {stored.text[:300]}"
    if final["status"] in ("queued", "in_progress"):  # a background response's first answer: compare its end
        replay = sse(httpx.get(f"{root}/v1/responses/{rid}", params={"stream": "true"}, timeout=20).content)
        assert replay and replay[-1]["type"] in TERMINAL, f"{rid}: the replay does not end"
        final = replay[-1]["response"]
    assert stored.json() == final, f"{rid}: GET differs from what the client was told"
