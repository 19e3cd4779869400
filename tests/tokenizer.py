"""The bundled model's prompt size by its tokenizer alone, apart from respd's code: the GGUF's chat template
rendered with jinja2 the way Hugging Face renders chat templates, tokenized by the GGUF's vocabulary."""

from __future__ import annotations

import json
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment
from llama_cpp import Llama

from respd.backends.bundled import bundled_path


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)  # transformers' tojson: unsorted, not escaped


def tokenizer_count(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> int:
    """Tokens of the prompt for Chat Completions ``messages`` (and ``tools``), generation prompt included."""
    vocab = Llama(model_path=str(bundled_path()), vocab_only=True, n_ctx=8, verbose=False)
    try:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.filters["tojson"] = _tojson
        template = env.from_string(vocab.metadata["tokenizer.chat_template"])
        text = template.render(messages=messages, tools=tools, add_generation_prompt=True)
        return len(vocab.tokenize(text.encode(), add_bos=False, special=True))
    finally:
        vocab.close()
