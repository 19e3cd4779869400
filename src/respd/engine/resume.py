"""Where a logged response stands, so that a run can go on from it (a queued job, or one taken over).

A run taken over goes on from the last step boundary of its log: the end of a hosted call (its item done)
or a hosted call in flight. What a model turn had streamed beyond that cannot be taken back, so the run
goes on only when it can continue it: an unfinished answer that the backend can prefill. Anything else
(a finished message whose turn may have gone on, a partial tool call) ends the response as failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from respd.engine.fold import TERMINAL_EVENTS, Response, fold

CLIENT_CALLS = frozenset({"function_call", "custom_tool_call", "tool_search_call"})  # calls the client answers
# Items that end a response's tool loop after their step: the client's calls, and a staged tool's request
# for the client's approval of a call (an MCP approval request).
ENDS_LOOP = CLIENT_CALLS | {"mcp_approval_request"}


def ends_loop(output: list[dict[str, Any]]) -> bool:
    """Whether ``output`` holds an item after whose step the run ends (the loop never goes past one), so
    that a run taken over, or ended for a dead replica, knows that no model turn was left to run."""
    return any(item.get("type") in ENDS_LOOP for item in output)


@dataclass(frozen=True, slots=True)
class Logged:
    """A response's event log, folded."""

    response: Response  # the fold of the log
    next_seq: int
    open_indices: list[int]  # output items added but not yet done
    ended: bool  # the log holds a terminal event

    @property
    def has_output(self) -> bool:
        return bool(self.response["output"])

    def prefill(self) -> str | None:
        """The text to continue, when the output so far ends with an unfinished assistant message and every
        item before it finished.

        Anything else (a tool call, reasoning, a refusal) cannot be continued faithfully.
        """
        output = self.response["output"]
        if not output or self.open_indices != [len(output) - 1]:
            return None
        item = output[0]
        parts = item.get("content") or []
        if item.get("type") != "message" or len(parts) != 1 or parts[0].get("type") != "output_text":
            return None
        text: str = parts[0].get("text", "")
        return text


@dataclass(frozen=True, slots=True)
class Point:
    """Where a run taken over goes on."""

    done: int  # the first output items that are finished: the next model turn reads them
    in_flight: list[int]  # hosted call items open at the end of the log (their calls had not returned)
    prefill: str | None  # an unfinished answer to continue


def resume_point(logged: Logged, is_hosted: Callable[[dict[str, Any]], bool]) -> Point | None:
    """Where the run of ``logged`` goes on, or None when the log ends inside a model turn that cannot be."""
    output = logged.response["output"]
    still_open = set(logged.open_indices)
    if not output:
        return Point(0, [], None)
    start = len(output)
    while start > 0 and start - 1 in still_open and is_hosted(output[start - 1]):
        start -= 1
    if start < len(output) and still_open == set(range(start, len(output))):
        return Point(start, list(range(start, len(output))), None)  # a step of hosted calls in flight
    if not still_open and is_hosted(output[-1]):
        return Point(len(output), [], None)  # after a finished step, before the next turn made anything
    text = logged.prefill()
    return Point(len(output) - 1, [], text) if text is not None else None


def read_log(rows: list[tuple[int, bytes]]) -> Logged:
    """Fold logged ``(seq, json)`` rows."""
    events: list[dict[str, Any]] = [orjson.loads(data) for _, data in rows]
    opened: dict[int, bool] = {}
    for ev in events:
        if ev["type"] == "response.output_item.added":
            opened[ev["output_index"]] = True
        elif ev["type"] == "response.output_item.done":
            opened.pop(ev["output_index"], None)
    return Logged(
        response=fold(events),
        next_seq=events[-1]["sequence_number"] + 1,
        open_indices=sorted(opened),
        ended=events[-1]["type"] in TERMINAL_EVENTS,
    )
