"""Loading a GGUF with llama-cpp-python, around what its CPU kernels get wrong.

llama.cpp built with ``-march=native`` (how respd installs it) on a CPU with Intel AMX (Sapphire Rapids and
later) puts the weights in an AMX buffer, and its AMX matrix multiply crashes the process on Q4_K weights —
the bundled model's — in the first batch of more than one token (ggml-org/llama.cpp#20824, closed without a
fix; seen here: a segfault in ``ggml_backend_amx_mul_mat`` on the first request). The AMX buffer is one of
llama.cpp's "extra buffer types", so where the build uses AMX the model loads without them. That also leaves
out llama.cpp's repacking of weights for its AVX kernels on that CPU; against a build without AMX (repacking
on) on such a host, prompts read at the same speed and decoding ran ~5 % slower (26.9 against 28.3 tok/s).
"""

from __future__ import annotations

import threading
from typing import Any

import llama_cpp
from llama_cpp import Llama

_LOADING = threading.Lock()  # the default parameters are swapped while one model loads


def uses_amx() -> bool:
    """Whether this llama.cpp build runs matrix multiplies on AMX on this CPU."""
    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


def load(path: str, *, extra_buffers: bool | None = None, **kwargs: Any) -> Llama:
    """``Llama(model_path=path, **kwargs)``; ``extra_buffers`` (default: unless this build uses AMX here)
    says whether llama.cpp may put weights in its extra buffer types."""
    if extra_buffers is None:
        extra_buffers = not uses_amx()
    if extra_buffers:
        return Llama(model_path=path, **kwargs)
    # Llama() has no argument for it: it takes llama.cpp's defaults and fills in only what it knows.
    module = llama_cpp.llama_cpp
    defaults = module.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = defaults()
        params.use_extra_bufts = False
        return params

    with _LOADING:
        module.llama_model_default_params = without_extra_buffers
        try:
            return Llama(model_path=path, **kwargs)
        finally:
            module.llama_model_default_params = defaults
