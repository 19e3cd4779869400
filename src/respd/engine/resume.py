"""Where a logged response stands, so that a run can go on from it (a queued job, or one taken over)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from respd.engine.fold import TERMINAL_EVENTS, Response, fold


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
        """The text to continue, when the whole output so far is one unfinished assistant message.

        Anything else (a finished item, a tool call, reasoning) cannot be continued faithfully.
        """
        output = self.response["output"]
        if len(output) != 1 or self.open_indices != [0]:
            return None
        item = output[0]
        parts = item.get("content") or []
        if item.get("type") != "message" or len(parts) != 1 or parts[0].get("type") != "output_text":
            return None
        text: str = parts[0].get("text", "")
        return text


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
