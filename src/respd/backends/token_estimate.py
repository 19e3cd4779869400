"""Token counts without a tokenizer: an estimate for upstreams, and a bound that makes counting skippable.

Both read the prompt in the Chat Completions dialect every backend speaks (:mod:`chat_messages`), as JSON.

- :func:`estimate` is about 4 bytes of UTF-8 per token, the average of GPT- and Llama-class BPE
  vocabularies on English prose. The JSON's quotes and keys stand in for each message's framing tokens.
  Code, JSON and non-Latin scripts take more tokens per byte, so it errs low there: it is an estimate.
- :func:`upper_bound` is never below the true count of a BPE tokenizer (a token is at least one byte of
  text), allowing for chat-template framing. A context under the bound's budget needs no real count.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from respd.backends import chat_messages as cm
from respd.backends.base import ModelRequest
from respd.backends.tool_calls import chat_tools

BYTES_PER_TOKEN = 4
FRAMING_PER_MESSAGE = 16  # role markers and separators a chat template adds around each message
FRAMING_FIXED = 512  # a template's own text: default system prompt, tool instructions, generation prompt


def _sizes(request: ModelRequest) -> tuple[int, int, int]:
    """(JSON bytes of the messages, JSON bytes of the tools, number of messages)."""
    messages = cm.to_messages(request.instructions, request.items)
    tools: list[dict[str, Any]] = chat_tools(request.tools) if request.tools else []
    return len(orjson.dumps(messages)), len(orjson.dumps(tools)) if tools else 0, len(messages)


def estimate(request: ModelRequest) -> int:
    """About how many tokens ``request``'s prompt is (see the module docstring for how far to trust it)."""
    messages, tools, _ = _sizes(request)
    return math.ceil((messages + tools) / BYTES_PER_TOKEN)


def upper_bound(request: ModelRequest) -> int:
    """A count ``request``'s prompt cannot exceed under any BPE tokenizer and ordinary chat template."""
    messages, tools, n = _sizes(request)
    return messages + tools + FRAMING_PER_MESSAGE * n + FRAMING_FIXED
