"""Backend deltas → the API's stream events, in the exact order the real API sends them.

The emitter owns the live Response: each event it makes is stamped with the next ``sequence_number`` and
folded into that Response with :func:`respd.engine.fold.apply`, so a lifecycle snapshot is always the
fold of the events before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from respd.backends.base import Delta, ReasoningDelta, RefusalDelta, TextDelta, ToolCallDelta, Usage
from respd.engine.fold import Event, Response, apply
from respd.ids import new_id
from respd.wire import client_calls

_KINDS = {"message": "message", "reasoning": "reasoning", "function_call": "function",
          "custom_tool_call": "custom", "tool_search_call": "tool_search", **client_calls.KIND_OF_CALL}  # fmt: skip
# calls whose JSON arguments stream no events: the item gets them, read, when the call is done
_READ_AT_END = frozenset({"tool_search", *client_calls.CALL_TYPES})


class _Open:
    """An output item still being streamed."""

    __slots__ = ("arguments", "content_index", "index", "item", "kind")

    def __init__(self, index: int, kind: str, item: dict[str, Any]) -> None:
        self.index = index
        # "text" | "refusal" | "reasoning" | "function" | "custom" | "tool_search" | a client built-in's tool type
        self.kind = kind
        self.item = item
        self.content_index = 0
        self.arguments = ""  # JSON arguments of a call read at its end (_READ_AT_END) so far


@dataclass(slots=True)
class HostedRequest:
    """A call the model made of a function that a hosted tool serves: held back from the stream (the tool's
    own item stands for it) until the turn ends."""

    name: str
    arguments: str = ""


class Emitter:
    """Builds one response's events. Feed it deltas; it returns the events each one causes.

    A response may take several model turns (:meth:`next_turn`); calls of hosted tools' functions are not
    streamed as function calls but collected (:meth:`take_hosted`), and the engine frames each as its
    tool's item (:meth:`open_item`, :meth:`close_item`).
    """

    def __init__(
        self,
        response: Response,
        *,
        max_calls: int | None = None,
        summarize: bool = False,
        seal: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        self.response: Response = response
        self._max_calls = max_calls  # parallel_tool_calls=false / max_tool_calls: later calls are dropped
        self._summarize = summarize  # reasoning.summary asked for: the reasoning text is its own summary
        self._seal = seal  # include reasoning.encrypted_content: seals a reasoning item's text
        self.seq = 0
        self._open: _Open | None = None  # the message or reasoning item being streamed
        self._calls: dict[int, _Open] = {}  # upstream tool-call index → its open function_call item
        self._usage: Usage | None = None
        self._finish: str | None = None
        self._compaction: tuple[int, str] | None = None  # (output index, id) of the open compaction item
        self._spent: Usage | None = None  # earlier turns' and compaction passes' tokens, counted into usage
        self._hosted_names: frozenset[str] = frozenset()  # functions of hosted tools offered this turn
        self._hosted: dict[int, HostedRequest] = {}  # upstream tool-call index → a hosted call of this turn
        self._items: dict[int, tuple[dict[str, Any], str]] = {}  # open hosted items: index → (item, stop status)
        self.annotate: Callable[[str], list[dict[str, Any]]] | None = None  # an answer text's citations

    # -- plumbing ---------------------------------------------------------------------------------
    def _emit(self, kind: str, **fields: Any) -> Event:
        ev: Event = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        self.response = apply(self.response, ev)
        return ev

    def _lifecycle(self, kind: str) -> Event:
        snapshot = {**self.response, "output": list(self.response["output"])}
        return self._emit(kind, response=snapshot)

    def _next_index(self) -> int:
        return len(self.response["output"])

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> list[Event]:
        """``response.created`` then ``response.in_progress``."""
        first = self._lifecycle("response.created")
        return [first, self._lifecycle("response.in_progress")]

    def queue(self) -> list[Event]:
        """A background response is accepted: ``response.created`` then ``response.queued``."""
        self.response["status"] = "queued"
        first = self._lifecycle("response.created")
        return [first, self._lifecycle("response.queued")]

    def resume(self, seq: int, open_indices: list[int]) -> list[Event]:
        """Go on from a logged state (a queued job starting, or a job taken over): ``response.in_progress``.

        ``self.response`` is the fold of the log, ``seq`` the next sequence number, ``open_indices`` the
        output items added but not done; they are reopened so that deltas or closing events can follow
        (a hosted call's item only through :meth:`reopen_item`).
        """
        self.adopt(seq, open_indices)
        self.response["status"] = "in_progress"
        return [self._lifecycle("response.in_progress")]

    def adopt(self, seq: int, open_indices: list[int],
              stop_status: Callable[[dict[str, Any]], str] | None = None) -> None:  # fmt: skip
        """Take up a logged state without an event (see :meth:`resume`): the items ``open_indices`` are reopened.
        With ``stop_status`` (a hosted call's item → its status when stopped) hosted calls' items are reopened
        too, to be closed by the end that follows (:meth:`fail`, :meth:`cancel`: a recovery's)."""
        self.seq = seq
        for index in open_indices:
            item = self.response["output"][index]
            kind = _KINDS.get(item.get("type", ""), "")
            if not kind:
                if stop_status is not None:
                    self.reopen_item(index, stop_status(item))
                continue  # a hosted call's item: the run decides what becomes of it (reopen_item)
            if kind == "message":
                parts = item.get("content") or [{"type": "output_text"}]
                kind = "refusal" if parts[-1].get("type") == "refusal" else "text"
            cur = _Open(index, kind, item)
            if kind in ("text", "refusal", "reasoning"):
                cur.content_index = max(len(item.get("content") or ()) - 1, 0)
                self._open = cur
            else:
                self._calls[-1 - index] = cur  # never an upstream index: a new turn's calls are new items

    def feed(self, delta: Delta) -> list[Event]:
        """The events one backend delta causes."""
        if isinstance(delta, TextDelta):
            return self._text("text", delta.text, delta.logprobs)
        if isinstance(delta, RefusalDelta):
            return self._text("refusal", delta.text)
        if isinstance(delta, ReasoningDelta):
            return self._reasoning(delta.text)
        if isinstance(delta, ToolCallDelta):
            return self._tool_call(delta)
        if isinstance(delta, Usage):
            self._usage = delta
            return []
        self._finish = delta.reason
        return []

    def finish(self) -> list[Event]:
        """Close every open item and end with ``completed`` or ``incomplete``."""
        truncated = self._finish in ("length", "content_filter")
        events = self._close_all(incomplete=truncated)
        r = self.response
        r["usage"] = self._usage_object()
        if truncated:
            r["status"] = "incomplete"
            reason = "max_output_tokens" if self._finish == "length" else "content_filter"
            r["incomplete_details"] = {"reason": reason}
            r["completed_at"] = None
            events.append(self._lifecycle("response.incomplete"))
        else:
            r["status"] = "completed"
            r["completed_at"] = int(time.time())
            events.append(self._lifecycle("response.completed"))
        return events

    def fail(self, message: str, code: str = "server_error") -> list[Event]:
        """A flat ``error`` event, then ``response.failed`` with the output produced so far."""
        events = self._close_all(incomplete=True)
        events.append(self._emit("error", code=code, message=message, param=None))
        r = self.response
        r["status"] = "failed"
        r["error"] = {"code": code, "message": message}
        r["usage"] = self._usage_object() if self._usage or self._spent else None
        events.append(self._lifecycle("response.failed"))
        return events

    def refail(self, message: str, code: str = "server_error") -> list[Event]:
        """The end just made (``completed`` or ``incomplete``) could not be stored: the response fails instead.
        That terminal event is taken back (its sequence number is reused); the items it closed stay closed."""
        self.seq -= 1
        events = [self._emit("error", code=code, message=message, param=None)]
        r = self.response
        r["status"] = "failed"
        r["error"] = {"code": code, "message": message}
        r["completed_at"] = None
        r["incomplete_details"] = None
        events.append(self._lifecycle("response.failed"))
        return events

    def cancel(self) -> list[Event]:
        """The run was stopped (client gone, or cancelled): keep what was produced, end as cancelled."""
        events = self._close_all(incomplete=True)
        self.response["status"] = "cancelled"
        self.response["usage"] = self._usage_object() if self._usage or self._spent else None
        events.append(self._lifecycle("response.cancelled"))
        return events

    def _usage_object(self) -> dict[str, Any]:
        u = self._usage or Usage()
        if self._spent is not None:
            s = self._spent
            u = Usage(u.input_tokens + s.input_tokens, u.output_tokens + s.output_tokens,
                      u.cached_tokens + s.cached_tokens, u.reasoning_tokens + s.reasoning_tokens)  # fmt: skip
        return usage_object(u)

    # -- turns and hosted calls -------------------------------------------------------------------
    def next_turn(self, hosted_names: frozenset[str], max_calls: int | None) -> None:
        """A new model turn begins: the last one's tokens count into usage; ``hosted_names`` are the functions
        whose calls are hosted calls; the model may make ``max_calls`` calls in it (None: any)."""
        self._add_spent(self._usage)
        self._usage = None
        self._finish = None
        self._hosted_names = hosted_names
        self._max_calls = max_calls

    def take_hosted(self) -> tuple[list[HostedRequest], list[Event]]:
        """The hosted calls of the turn that ended, in the order the model made them, and (when there are
        any) the events that close the turn's other items (its client calls), which end before the hosted
        calls' items begin."""
        if not self._hosted:
            return [], []
        calls = [self._hosted[i] for i in sorted(self._hosted)]
        self._hosted.clear()
        return calls, self._close_all(incomplete=False)

    @property
    def finish_reason(self) -> str | None:
        """Why the last model turn stopped."""
        return self._finish

    def open_item(self, item: dict[str, Any], progress: list[tuple[str, dict[str, Any]]],
                  stop_status: str) -> tuple[int, list[Event]]:  # fmt: skip
        """A hosted call's item is added, then its own events (``…in_progress``); ``stop_status`` is its
        status if the response stops before :meth:`close_item`."""
        index = self._next_index()
        events = [self._emit("response.output_item.added", output_index=index, item=item)]
        events += [self._emit(kind, item_id=item["id"], output_index=index, **fields) for kind, fields in progress]
        self._items[index] = (item, stop_status)
        return index, events

    def reopen_item(self, index: int, stop_status: str) -> None:
        """A hosted call's item left open in a logged response, to be closed by this run."""
        self._items[index] = (self.response["output"][index], stop_status)

    def close_item(self, index: int, item: dict[str, Any], progress: list[tuple[str, dict[str, Any]]]) -> list[Event]:
        """A hosted call's own closing events (``…completed``), then its item as done."""
        self._items.pop(index, None)
        events = [self._emit(kind, item_id=item["id"], output_index=index, **fields) for kind, fields in progress]
        events.append(self._emit("response.output_item.done", output_index=index, item=item))
        return events

    def _close_items(self) -> list[Event]:
        events = []
        for index, (item, status) in sorted(self._items.items()):
            events.append(self._emit("response.output_item.done", output_index=index, item={**item, "status": status}))
        self._items.clear()
        return events

    def _add_spent(self, usage: Usage | None) -> None:
        if usage is None:
            return
        s, u = self._spent or Usage(), usage
        self._spent = Usage(s.input_tokens + u.input_tokens, s.output_tokens + u.output_tokens,
                            s.cached_tokens + u.cached_tokens, s.reasoning_tokens + u.reasoning_tokens)  # fmt: skip

    # -- compaction -------------------------------------------------------------------------------
    def compaction_started(self) -> list[Event]:
        """A compaction item opens (its content comes when done) and ``response.compaction.compacting``."""
        item = {"id": new_id("cmp"), "type": "compaction", "encrypted_content": ""}
        self._compaction = (self._next_index(), item["id"])
        where = {"output_index": self._compaction[0]}
        return [self._emit("response.output_item.added", **where, item=item),
                self._emit("response.compaction.compacting", item_id=item["id"], **where)]  # fmt: skip

    def compaction_done(self, encrypted_content: str, usage: Usage) -> tuple[str, list[Event]]:
        """The compaction item's id, and its ``output_item.done`` with the sealed summary."""
        assert self._compaction is not None
        (index, item_id), self._compaction = self._compaction, None
        self._add_spent(usage)
        item = {"id": item_id, "type": "compaction", "encrypted_content": encrypted_content}
        return item_id, [self._emit("response.output_item.done", output_index=index, item=item)]

    # -- output items -----------------------------------------------------------------------------
    def _text(self, kind: str, text: str, logprobs: list[dict[str, Any]] | None = None) -> list[Event]:
        events: list[Event] = []
        cur = self._open
        if cur is None or cur.kind not in ("text", "refusal"):
            events += self._close_open()
            item = {"id": new_id("msg"), "type": "message", "status": "in_progress", "content": [],
                    "role": "assistant"}  # fmt: skip
            cur = self._open = _Open(self._next_index(), kind, item)
            events.append(self._emit("response.output_item.added", output_index=cur.index, item=dict(item)))
            events.append(self._part_added(cur, kind))
        elif cur.kind != kind:
            events += self._close_part(cur)
            cur.kind = kind
            cur.content_index += 1
            events.append(self._part_added(cur, kind))
        delta_type = "response.output_text.delta" if kind == "text" else "response.refusal.delta"
        extra: dict[str, Any] = {"logprobs": logprobs or []} if kind == "text" else {}
        events.append(self._emit(delta_type, item_id=cur.item["id"], output_index=cur.index,
                                 content_index=cur.content_index, delta=text, **extra))  # fmt: skip
        return events

    def _part_added(self, cur: _Open, kind: str) -> Event:
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []} if kind == "text" \
            else {"type": "refusal", "refusal": ""}  # fmt: skip
        return self._emit("response.content_part.added", item_id=cur.item["id"], output_index=cur.index,
                          content_index=cur.content_index, part=part)  # fmt: skip

    def _reasoning(self, text: str) -> list[Event]:
        events: list[Event] = []
        cur = self._open
        if cur is None or cur.kind != "reasoning":
            events += self._close_open()
            item = {"id": new_id("rs"), "type": "reasoning", "summary": [], "content": [], "status": "in_progress"}
            cur = self._open = _Open(self._next_index(), "reasoning", item)
            events.append(
                self._emit("response.output_item.added", output_index=cur.index, item={**item, "content": []})
            )
            events.append(self._emit("response.content_part.added", item_id=item["id"], output_index=cur.index,
                                     content_index=0, part={"type": "reasoning_text", "text": ""}))  # fmt: skip
        events.append(self._emit("response.reasoning_text.delta", item_id=cur.item["id"], output_index=cur.index,
                                 content_index=0, delta=text))  # fmt: skip
        return events

    def _tool_call(self, d: ToolCallDelta) -> list[Event]:
        events: list[Event] = []
        call = self._calls.get(d.index)
        if call is None:
            hosted = self._hosted.get(d.index)
            if hosted is not None:
                hosted.arguments += d.arguments
                return []
            if self._max_calls is not None and len(self._calls) + len(self._hosted) >= self._max_calls:
                return []
            events += self._close_open()
            if d.kind == "function" and d.name in self._hosted_names and d.namespace is None:
                self._hosted[d.index] = HostedRequest(d.name, d.arguments)
                return events
            call = self._calls[d.index] = _Open(self._next_index(), d.kind, self._call_item(d))
            events.append(self._emit("response.output_item.added", output_index=call.index, item=dict(call.item)))
        if call.kind in _READ_AT_END:  # the API streams no deltas for these calls, only the done item
            call.arguments += d.arguments
        elif d.arguments:
            kind = "response.function_call_arguments.delta" if call.kind == "function" \
                else "response.custom_tool_call_input.delta"  # fmt: skip
            events.append(self._emit(kind, item_id=call.item["id"], output_index=call.index, delta=d.arguments))
        return events

    @staticmethod
    def _call_item(d: ToolCallDelta) -> dict[str, Any]:
        call_id = d.call_id or new_id("call")
        if d.kind == "tool_search":
            return {"id": new_id("tsc"), "type": "tool_search_call", "call_id": call_id, "execution": "client",
                    "arguments": {}, "status": "in_progress"}  # fmt: skip
        if d.kind in client_calls.CALL_TYPES:
            kind = client_calls.CALL_TYPES[d.kind]
            return {"id": new_id(client_calls.ID_PREFIXES[kind]), "type": kind, "status": "in_progress",
                    "call_id": call_id, **client_calls.pending_fields(d.kind)}  # fmt: skip
        if d.kind == "custom":
            item = {"id": new_id("ctc"), "type": "custom_tool_call", "call_id": call_id, "name": d.name or "",
                    "input": ""}  # fmt: skip
        else:
            item = {"id": new_id("fc"), "type": "function_call", "status": "in_progress", "arguments": "",
                    "call_id": call_id, "name": d.name or ""}  # fmt: skip
        if d.namespace:
            item["namespace"] = d.namespace
        return item

    # -- closing ----------------------------------------------------------------------------------
    def _current(self, cur: _Open) -> dict[str, Any]:
        item: dict[str, Any] = self.response["output"][cur.index]
        return item

    def _close_part(self, cur: _Open) -> list[Event]:
        base = {"item_id": cur.item["id"], "output_index": cur.index, "content_index": cur.content_index}
        cited = self._cite(cur, base) if cur.kind == "text" and self.annotate is not None else []
        part = dict(self._current(cur)["content"][cur.content_index])
        if cur.kind == "text":
            done = self._emit("response.output_text.done", **base, text=part["text"], logprobs=part["logprobs"])
        elif cur.kind == "refusal":
            done = self._emit("response.refusal.done", **base, refusal=part["refusal"])
        else:
            done = self._emit("response.reasoning_text.done", **base, text=part["text"])
        return [*cited, done, self._emit("response.content_part.done", **base, part=part)]

    def _cite(self, cur: _Open, base: dict[str, Any]) -> list[Event]:
        """``annotation.added`` for each citation of sources in the finished text part."""
        assert self.annotate is not None
        part = self._current(cur)["content"][cur.content_index]
        first = len(part.get("annotations") or ())
        return [self._emit("response.output_text.annotation.added", **base, annotation_index=first + i, annotation=a)
                for i, a in enumerate(self.annotate(part["text"]))]  # fmt: skip

    def _summary(self, cur: _Open, text: str) -> list[Event]:
        where = {"item_id": cur.item["id"], "output_index": cur.index, "summary_index": 0}
        done = {"type": "summary_text", "text": text}
        return [
            self._emit("response.reasoning_summary_part.added", **where, part={"type": "summary_text", "text": ""}),
            self._emit("response.reasoning_summary_text.delta", **where, delta=text),
            self._emit("response.reasoning_summary_text.done", **where, text=text),
            self._emit("response.reasoning_summary_part.done", **where, part=done),
        ]

    def _close_open(self, *, incomplete: bool = False) -> list[Event]:
        cur, self._open = self._open, None
        if cur is None:
            return []
        # (an item logged without its first part, cut by a crash, has no part to close)
        events = self._close_part(cur) if cur.content_index < len(self._current(cur)["content"]) else []
        if cur.kind == "reasoning" and self._summarize:
            events += self._summary(cur, self._current(cur)["content"][0]["text"])
        item = self._current(cur)
        item = {**item, "content": [dict(p) for p in item["content"]]}
        if cur.kind == "reasoning":
            item["summary"] = [dict(p) for p in item["summary"]]
            if self._seal is not None:
                item["encrypted_content"] = self._seal({"content": item["content"], "summary": item["summary"]})
        item["status"] = "incomplete" if incomplete else "completed"
        events.append(self._emit("response.output_item.done", output_index=cur.index, item=item))
        return events

    def _close_calls(self, *, incomplete: bool) -> list[Event]:
        events: list[Event] = []
        for call in sorted(self._calls.values(), key=lambda c: c.index):
            item = dict(self._current(call))
            where = {"item_id": item["id"], "output_index": call.index}
            if call.kind == "custom":
                events.append(self._emit("response.custom_tool_call_input.done", **where, input=item["input"]))
            elif call.kind == "tool_search":
                item["arguments"] = _search_arguments(call.arguments)
                item["status"] = "incomplete" if incomplete else "completed"
            elif call.kind in client_calls.CALL_TYPES:
                item.update(client_calls.call_fields(call.kind, call.arguments))
                # an apply_patch_call is never "incomplete" in the spec: one cut short stays in progress
                cut = "in_progress" if call.kind == "apply_patch" else "incomplete"
                item["status"] = cut if incomplete else "completed"
                if call.kind == "shell":
                    events += self._shell_commands(call.index, item["action"]["commands"])
            else:
                item["status"] = "incomplete" if incomplete else "completed"
                args = {**where, "name": item["name"], "arguments": item["arguments"]}
                events.append(self._emit("response.function_call_arguments.done", **args))
            events.append(self._emit("response.output_item.done", output_index=call.index, item=item))
        self._calls.clear()
        return events

    def _shell_commands(self, index: int, commands: list[str]) -> list[Event]:
        """A shell call's commands, each as ``response.shell_call_command.added``/``delta``/``done``."""
        events = []
        for i, command in enumerate(commands):
            where = {"output_index": index, "command_index": i}
            events += [self._emit("response.shell_call_command.added", **where, command=""),
                       self._emit("response.shell_call_command.delta", **where, delta=command),
                       self._emit("response.shell_call_command.done", **where, command=command)]  # fmt: skip
        return events

    def _close_all(self, *, incomplete: bool) -> list[Event]:
        events = self._close_open(incomplete=incomplete) + self._close_calls(incomplete=incomplete)
        return events + self._close_items() if self._items else events


def _search_arguments(raw: str) -> Any:
    """A tool search call's arguments as the object the API gives.

    Text that is not a JSON object is kept as the model sent it: the client sees what went wrong, rather
    than an empty search.
    """
    try:
        parsed = orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        return raw
    return parsed if isinstance(parsed, dict) else raw


def usage_object(u: Usage) -> dict[str, Any]:
    """The API's ``usage`` object for a model's token counts."""
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    }
