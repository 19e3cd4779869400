"""Settings: TOML config file, then environment, then command-line flags (later wins).

A config file looks like::

    api_keys = ["sk-local-1"]          # optional; also RESPD_API_KEYS="k1,k2"
    database = "postgresql://postgres@127.0.0.1/respd"

    [[models]]
    name = "gpt-4o-mini"               # what clients send as `model`
    backend = "openai"                 # any OpenAI-compatible Chat Completions upstream
    base_url = "http://127.0.0.1:9000/v1"
    api_key_env = "UPSTREAM_KEY"       # the upstream key is read from this env var
    upstream_model = "qwen2.5"         # model name sent upstream (default: name)

    [[models]]
    name = "local"
    backend = "llama_cpp"              # a GGUF model run inside respd (llama.cpp)
    path = "/models/qwen2.5-7b-instruct-q4_k_m.gguf"   # omit for the bundled default model
    n_ctx = 8192

With no ``[[models]]`` at all, respd serves the bundled default model, :data:`DEFAULT_MODEL`.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from respd.errors import InvalidRequest
from respd.outbound import OutboundPolicy

BACKENDS = ("openai", "llama_cpp")
# The model served when the config names none: the GGUF bundled with respd (respd.backends.bundled), run in
# process. Its name lives here so that reading settings loads no backend.
DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"


class ConfigError(ValueError):
    """The config file or environment is unusable; raised at startup, never to a client."""


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """One model clients can name, and where its requests go."""

    name: str
    backend: str = "openai"
    base_url: str = ""
    api_key_env: str | None = None
    upstream_model: str | None = None
    context_window: int | None = None
    tokenizer: str = ""  # openai: a GGUF whose vocabulary and chat template count this model's tokens locally
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    created: int = 0
    # openai: the upstream can continue a final assistant message (vLLM's continue_final_message, llama.cpp's
    # server), so a background response taken over after a crash goes on from its partial output
    prefill: bool = False
    # llama_cpp: a local GGUF model run in this process.
    path: str = ""  # the GGUF file; empty means the bundled default model
    sha256: str = ""  # when set, the file must have this digest before it is loaded
    n_ctx: int = 8192  # context size in tokens (KV cache); 0 means the model's trained size
    n_threads: int = 0  # CPU threads for generation; 0 means every core of the machine
    n_batch: int = 512  # prompt tokens evaluated per step
    chat_template: str = ""  # a Jinja chat template used instead of the one inside the GGUF
    slots: int = 0  # requests generated at once (continuous batching); 0 means two per core, 2 to 8
    max_queue: int = 16  # requests that may wait for a slot; more get 429
    cache_mb: int = 256  # memory for saved KV caches, so a conversation's next turn skips its shared prefix
    max_output_tokens: int = 0  # llama_cpp: the cap on an answer whose request sets none (0: the default cap)
    # Sampling for requests that set none (reported in the response); llama_cpp's defaults suit small models.
    temperature: float | None = None
    top_p: float | None = None
    # other names clients may use for this model (e.g. "gpt-4o-mini" for a local model)
    aliases: tuple[str, ...] = ()

    @property
    def target_model(self) -> str:
        """The model name the upstream expects."""
        return self.upstream_model or self.name

    def api_key(self) -> str | None:
        """The upstream key, read from the environment on each use so rotation needs no restart."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server needs to start."""

    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = ""
    data_dir: Path = field(default_factory=lambda: default_data_dir())
    api_keys: tuple[str, ...] = ()
    models: tuple[ModelRoute, ...] = ()
    log_level: str = "info"
    # Built-in tools (web_search, …) have no executor here: left out of what the model sees and named in
    # the `respd-omitted-tools` header (false), or refused with a 400 naming the tool (true).
    strict_tools: bool = False
    secret_key: str | None = None  # base64 of 32 bytes; seals encrypted_content (replicas must share it)
    # Background jobs. A replica that stops renewing its lease for lease_s seconds is dead: its jobs and
    # streams are taken over. Each replica runs up to max_background jobs at once; beyond max_queued jobs
    # waiting, a new one is refused with 429. On SIGTERM, running work gets drain_s seconds to finish.
    lease_s: float = 30.0
    max_background: int = 32
    max_queued: int = 10_000
    drain_s: float = 10.0
    # What respd may reach on a user's behalf (tools, webhooks, file URLs): public hosts, plus these patterns.
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)
    # Files: the largest upload in bytes (OpenAI's 512 MB); whether an input_file may name a file_url for
    # respd to fetch (only from hosts the outbound policy allows).
    max_file_bytes: int = 512 * 1024 * 1024
    fetch_file_urls: bool = False
    # The config file's tables that configure parts beyond the core, by name (``[web_search]``, …): each hosted
    # tool reads and checks its own (respd.tools), so adding a tool needs no change here.
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def section(self, name: str) -> Mapping[str, Any]:
        """The config table ``[name]``, empty when the file has none."""
        return self.sections.get(name, {})

    def model(self, name: str) -> ModelRoute:
        """The route for ``name`` (or one of its aliases), or a 400 naming ``model``."""
        for route in self.models:
            if route.name == name or name in route.aliases:
                return route
        raise InvalidRequest(
            f"The model '{name}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )


def default_data_dir() -> Path:
    """Where the embedded database lives unless told otherwise."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "respd"


def normalize_database_url(url: str) -> str:
    """Accept plain ``postgresql://`` and ``sqlite:///`` URLs and pick the async drivers."""
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def _model_route(raw: dict[str, Any], index: int) -> ModelRoute:
    known = set(ModelRoute.__slots__)
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"models[{index}]: unknown keys {sorted(unknown)}")
    if "name" not in raw:
        raise ConfigError(f"models[{index}]: 'name' is required")
    if "aliases" in raw:
        aliases = raw["aliases"]
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
            raise ConfigError(f"models[{index}]: aliases must be a list of model names")
        raw = {**raw, "aliases": tuple(aliases)}
    route = _with_defaults(ModelRoute(**raw))
    if route.backend not in BACKENDS:
        raise ConfigError(f"models[{index}]: backend must be one of {BACKENDS}, not {route.backend!r}")
    if route.backend == "openai" and not route.base_url:
        raise ConfigError(f"models[{index}]: backend 'openai' needs base_url")
    if route.tokenizer and (route.backend != "openai" or not Path(route.tokenizer).is_file()):
        raise ConfigError(f"models[{index}]: tokenizer must be a GGUF file, for backend 'openai'")
    if route.backend == "llama_cpp" and route.path and not Path(route.path).is_file():
        raise ConfigError(f"models[{index}]: no GGUF file at path {route.path!r}")
    if min(route.n_ctx, route.n_threads, route.max_queue, route.cache_mb, route.slots, route.max_output_tokens) < 0 \
            or route.n_batch < 1:  # fmt: skip
        raise ConfigError(f"models[{index}]: n_ctx, n_threads, slots, max_queue, cache_mb and max_output_tokens "
                          "must be >= 0, n_batch >= 1")  # fmt: skip
    if not (route.temperature is None or 0 <= route.temperature <= 2) or not (
        route.top_p is None or 0 <= route.top_p <= 1
    ):
        raise ConfigError(f"models[{index}]: temperature must be within 0..2, top_p within 0..1")
    return route


# A local model's defaults: sampling for small instruct models (Qwen2.5's own), and an answer cap so that a
# request without max_output_tokens cannot hold a slot for minutes (~70 s of writing on 2 cores).
LOCAL_TEMPERATURE = 0.7
LOCAL_TOP_P = 0.8
LOCAL_MAX_OUTPUT_TOKENS = 2048


def _with_defaults(route: ModelRoute) -> ModelRoute:
    if route.backend != "llama_cpp":
        return route
    return dataclasses.replace(
        route,
        temperature=LOCAL_TEMPERATURE if route.temperature is None else route.temperature,
        top_p=LOCAL_TOP_P if route.top_p is None else route.top_p,
        max_output_tokens=route.max_output_tokens or LOCAL_MAX_OUTPUT_TOKENS,
    )


def default_models() -> tuple[ModelRoute, ...]:
    """What respd serves when the config names no model: the bundled model, run in-process."""
    return (_with_defaults(ModelRoute(name=DEFAULT_MODEL, backend="llama_cpp")),)


def _flag(env_value: str | None, default: Any) -> bool:
    if env_value is None:
        return bool(default)
    return env_value.strip().lower() in ("1", "true", "yes", "on")


def load_settings(
    config_path: str | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    database_url: str | None = None,
    env: dict[str, str] | None = None,
) -> Settings:
    """Build :class:`Settings` from a TOML file, the environment and explicit overrides."""
    env = dict(os.environ) if env is None else env
    config_path = config_path or env.get("RESPD_CONFIG")
    raw: dict[str, Any] = {}
    if config_path:
        try:
            raw = tomllib.loads(Path(config_path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {config_path}: {exc}") from exc
    models = tuple(_model_route(m, i) for i, m in enumerate(raw.get("models", []))) or default_models()
    names = [n for m in models for n in (m.name, *m.aliases)]
    if len(names) != len(set(names)):
        raise ConfigError("model names and aliases must be unique")
    keys = list(raw.get("api_keys", []))
    if env.get("RESPD_API_KEYS"):
        keys += [k.strip() for k in env["RESPD_API_KEYS"].split(",") if k.strip()]
    data_dir = Path(env.get("RESPD_DATA_DIR") or raw.get("data_dir") or default_data_dir())
    db = database_url or env.get("RESPD_DATABASE_URL") or raw.get("database") or ""
    if not db:
        db = f"sqlite:///{data_dir / 'respd.db'}"
    return Settings(
        host=host or env.get("RESPD_HOST") or raw.get("host", "127.0.0.1"),
        port=int(port or env.get("RESPD_PORT") or raw.get("port", 8080)),
        database_url=normalize_database_url(db),
        data_dir=data_dir,
        api_keys=tuple(dict.fromkeys(keys)),
        models=models,
        log_level=env.get("RESPD_LOG_LEVEL") or raw.get("log_level", "info"),
        strict_tools=_flag(env.get("RESPD_STRICT_TOOLS"), raw.get("strict_tools", False)),
        secret_key=env.get("RESPD_SECRET_KEY") or raw.get("secret_key"),
        outbound=_outbound(raw, env),
        fetch_file_urls=_flag(env.get("RESPD_FETCH_FILE_URLS"), raw.get("fetch_file_urls", False)),
        sections={k: v for k, v in raw.items() if isinstance(v, dict)},
        **_job_settings(raw, env),
        **_file_settings(raw, env),
    )


def _outbound(raw: dict[str, Any], env: dict[str, str]) -> OutboundPolicy:
    allow = list(raw.get("outbound_allow", []))
    if not isinstance(raw.get("outbound_allow", []), list) or not all(isinstance(a, str) for a in allow):
        raise ConfigError("outbound_allow must be a list of host or host:port patterns")
    allow += [a.strip() for a in env.get("RESPD_OUTBOUND_ALLOW", "").split(",") if a.strip()]
    try:
        return OutboundPolicy(
            allow=tuple(dict.fromkeys(allow)),
            public=_flag(env.get("RESPD_OUTBOUND_PUBLIC"), raw.get("outbound_public", True)),
        )
    except ValueError as exc:
        raise ConfigError(f"outbound_allow: {exc}") from None


def _file_settings(raw: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    value = env.get("RESPD_MAX_FILE_BYTES") or raw.get("max_file_bytes")
    if value is None:
        return {}
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"max_file_bytes must be a whole number of bytes, not {value!r}") from None
    if limit <= 0:
        raise ConfigError("max_file_bytes must be > 0")
    return {"max_file_bytes": limit}


def _job_settings(raw: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in (("lease_s", float), ("max_background", int), ("max_queued", int), ("drain_s", float)):
        value = env.get(f"RESPD_{name.upper()}") or raw.get(name)
        if value is None:
            continue
        try:
            out[name] = kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, not {value!r}") from None
        if out[name] <= 0:
            raise ConfigError(f"{name} must be > 0")
    return out
