"""A GGUF's chat template and vocabulary: a turn's chat messages and tools in, its prompt tokens out.

The embedded model renders every prompt this way, and an upstream route that names a ``tokenizer`` GGUF
counts with it, so a count is the prompt generation reads. Rendering touches only the template and the
vocabulary (never a llama.cpp context), so it is safe on any thread, beside a running turn.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from respd.errors import UpstreamError

# Hermes-style tool instructions, for a chat template that does not render `tools` itself.
_TOOL_PROMPT = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}\n'
    "</tool_call>"
)


class ChatPrompt:
    """How one model turns chat messages into prompt tokens."""

    def __init__(self, llm: Llama, template: str = "", what: str = "this model") -> None:
        self.llm = llm
        template = template or llm.metadata.get("tokenizer.chat_template") or ""
        if not template:
            raise UpstreamError(f"The GGUF of {what} has no chat template; set chat_template.")
        vocab = llm._model
        eos, bos = llm.token_eos(), llm.token_bos()
        self.formatter = Jinja2ChatFormatter(template, eos_token=vocab.token_get_text(eos) if eos >= 0 else "",
                                             bos_token=vocab.token_get_text(bos) if bos >= 0 else "")  # fmt: skip
        self.native_tools = "tools" in template  # else the tool instructions go into the system prompt

    def tokens(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[int]:
        """The rendered chat template for a turn's messages and tools (Chat Completions shapes), tokenized:
        special tokens as tokens, no extra BOS."""
        rendered: Any = [_for_template(m) for m in messages]  # the formatter's TypedDicts, in effect
        offered: Any = tools or None
        if offered and not self.native_tools:
            rendered = _with_tool_prompt(rendered, offered)
            offered = None
        text = self.formatter(messages=rendered, tools=offered).prompt
        return self.llm.tokenize(text.encode(), add_bos=False, special=True)


def load_tokenizer(path: str) -> ChatPrompt:
    """Only a GGUF's vocabulary and chat template (no weights): counts the tokens of an upstream that serves
    the same model."""
    return ChatPrompt(Llama(model_path=path, vocab_only=True, n_ctx=8, verbose=False), what=path)


def _for_template(message: dict[str, Any]) -> dict[str, Any]:
    """Chat message → what HF chat templates expect: tool-call arguments as objects, text as strings."""
    out = dict(message)
    if out.get("tool_calls"):
        calls = []
        for call in out["tool_calls"]:
            fn = dict(call["function"])
            with contextlib.suppress(ValueError):  # a template that prints it still gets the text
                fn["arguments"] = json.loads(fn["arguments"] or "{}")
            calls.append({**call, "function": fn})
        out["tool_calls"] = calls
    if out.get("content") is None:
        out["content"] = ""
    return out


def _with_tool_prompt(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    block = _TOOL_PROMPT.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{messages[0]['content']}\n\n{block}"}, *messages[1:]]
    return [{"role": "system", "content": block}, *messages]
