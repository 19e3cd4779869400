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
import hashlib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from respd.errors import InvalidRequest
from respd.outbound import OutboundPolicy, OutboundRefused
from respd.sandbox.settings import SandboxConfigError, SandboxSettings, load_sandbox_settings
from respd.tools.mcp.servers import McpServerConfig, parse_servers

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
class EmbeddingsConfig:
    """``[embeddings]``: an OpenAI-compatible ``/v1/embeddings`` upstream; no ``base_url``: the bundled model."""

    base_url: str = ""
    model: str = ""
    api_key_env: str | None = None  # the upstream key is read from this env var
    dimensions: int | None = None  # asked of the upstream (text-embedding-3 models can shorten vectors)
    max_tokens: int = 8191  # the upstream model's input limit in tokens (a chunk longer is cut)
    batch: int = 64  # inputs per upstream request
    timeout_s: float = 60.0
    n_threads: int = 0  # the bundled model's CPU threads; 0: every core


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
    # MCP servers the operator vets, reached by connector_id (``[[mcp_servers]]``, respd.tools.mcp.servers).
    mcp_servers: tuple[McpServerConfig, ...] = ()
    code_interpreter: SandboxSettings = field(default_factory=SandboxSettings)  # [code_interpreter]: the sandbox
    ops: OpsSettings = field(default_factory=lambda: OpsSettings())  # webhooks, metrics, logs, rate limits
    # Files: the largest upload in bytes (OpenAI's 512 MB); whether an input_file may name a file_url for
    # respd to fetch (only from hosts the outbound policy allows).
    max_file_bytes: int = 512 * 1024 * 1024
    fetch_file_urls: bool = False
    # Vector stores: the embedding model (the bundled one unless [embeddings] names an upstream), and how
    # many files each replica ingests at once (embedding takes the CPU: more than one rarely helps).
    embeddings: EmbeddingsConfig = field(default_factory=lambda: EmbeddingsConfig())
    ingest_workers: int = 1
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
    ops = ops_settings(raw, env, keys)
    keys += [k.key for k in ops.keys]
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
        outbound=check_webhook_urls(ops, _outbound(raw, env)),
        mcp_servers=_mcp_servers(raw),
        code_interpreter=_sandbox_settings(raw, env),
        fetch_file_urls=_flag(env.get("RESPD_FETCH_FILE_URLS"), raw.get("fetch_file_urls", False)),
        sections={k: v for k, v in raw.items() if isinstance(v, dict)},
        **_job_settings(raw, env),
        **_file_settings(raw, env),
        embeddings=_embeddings(raw),
        ingest_workers=_positive_int("ingest_workers", env.get("RESPD_INGEST_WORKERS") or raw.get("ingest_workers", 1)),
        ops=ops,
    )


def _positive_int(name: str, value: Any) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None
    if out <= 0:
        raise ConfigError(f"{name} must be > 0")
    return out


def _embeddings(raw: dict[str, Any]) -> EmbeddingsConfig:
    section = raw.get("embeddings", {})
    if not isinstance(section, dict):
        raise ConfigError("[embeddings] must be a table")
    unknown = set(section) - set(EmbeddingsConfig.__slots__)
    if unknown:
        raise ConfigError(f"[embeddings]: unknown keys {sorted(unknown)}")
    config = EmbeddingsConfig(**section)
    if config.base_url and not config.model:
        raise ConfigError("[embeddings]: an upstream (base_url) needs model")
    return config


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


def _mcp_servers(raw: dict[str, Any]) -> tuple[McpServerConfig, ...]:
    try:
        return parse_servers(raw.get("mcp_servers", []))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _sandbox_settings(raw: dict[str, Any], env: dict[str, str]) -> SandboxSettings:
    try:
        return load_sandbox_settings(raw.get("code_interpreter", {}), env)
    except SandboxConfigError as exc:
        raise ConfigError(str(exc)) from None


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


# ----------------------------------------------------------------------------------------------------------
# Operations: webhooks, metrics, logs, rate limits (docs/OPERATIONS.md). Traces follow the standard OTEL_*
# variables. Each setting: config key, then env RESPD_<KEY> (env wins).

WEBHOOK_EVENTS = ("response.completed", "response.failed", "response.cancelled", "response.incomplete")
ANONYMOUS = "anonymous"  # the key label of every request when no API keys are configured


def key_tenant(key: str) -> str:
    """The tenant of an API key: what its rows are stored under (never the key itself)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class KeySettings:
    """An API key's label (in logs, metrics and webhook filters; never the key) and its own rate limits
    (None: the defaults)."""

    key: str
    label: str
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_streams: int | None = None

    @property
    def tenant(self) -> str:
        return key_tenant(self.key)


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """Where finished responses are announced. ``tenants`` empty: every key's responses."""

    url: str
    secret_env: str
    name: str = ""
    events: tuple[str, ...] = WEBHOOK_EVENTS
    tenants: tuple[str, ...] = ()

    def secret(self) -> str | None:
        """The ``whsec_…`` signing secret, read on each use so rotation needs no restart."""
        return os.environ.get(self.secret_env)

    def wants(self, tenant: str, event: str) -> bool:
        return event in self.events and (not self.tenants or tenant in self.tenants)


@dataclass(frozen=True, slots=True)
class OpsSettings:
    """Webhooks, metrics, logs and rate limits (rate limit 0: none)."""

    webhooks: tuple[WebhookEndpoint, ...] = ()
    webhook_retry_initial_s: float = 5.0  # the first retry's delay; each next one doubles (with jitter)
    webhook_retry_max_s: float = 72 * 3600.0  # a delivery not answered with a 2xx by then is given up
    webhook_timeout_s: float = 5.0  # an answer slower than this is a failed attempt
    metrics: bool = True  # GET /metrics (Prometheus)
    access_log: bool = True  # one line per request on the respd.access logger
    log_format: str = "text"  # or "json": every log line one JSON object
    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    max_streams: int = 0  # concurrent streaming responses per key
    redis_url: str = ""  # rate limits shared through Redis; otherwise through the database
    keys: tuple[KeySettings, ...] = ()  # [[keys]]: labels and per-key limits
    labels: dict[str, str] = field(default_factory=dict)  # tenant -> key label, for every configured key
    traces: bool = False  # OpenTelemetry: on when an OTLP endpoint is configured (OTEL_EXPORTER_OTLP_*)

    def limits(self, tenant: str) -> tuple[int, int, int]:
        """``(requests_per_minute, tokens_per_minute, max_streams)`` of ``tenant``."""
        for k in self.keys:
            if k.tenant == tenant:
                return (_or(k.requests_per_minute, self.requests_per_minute),
                        _or(k.tokens_per_minute, self.tokens_per_minute),
                        _or(k.max_streams, self.max_streams))  # fmt: skip
        return self.requests_per_minute, self.tokens_per_minute, self.max_streams

    @property
    def rate_limited(self) -> bool:
        limits = [self.requests_per_minute, self.tokens_per_minute, self.max_streams]
        for k in self.keys:
            limits += [k.requests_per_minute or 0, k.tokens_per_minute or 0, k.max_streams or 0]
        return any(limits)

    def label(self, tenant: str) -> str:
        return self.labels.get(tenant, ANONYMOUS if tenant == "" else "unknown")


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _setting(raw: dict[str, Any], env: dict[str, str], name: str, kind: type, default: Any) -> Any:
    value = env.get(f"RESPD_{name.upper()}")
    if value is None:
        value = raw.get(name, default)
    if kind is bool:
        return _flag(value if isinstance(value, str) else None, value)
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a {kind.__name__}, not {value!r}") from None
    if kind in (int, float) and out < 0:
        raise ConfigError(f"{name} must be >= 0")
    return out


def _key_settings(raw: dict[str, Any], index: int, env: dict[str, str]) -> KeySettings:
    known = {"key", "key_env", "label", "requests_per_minute", "tokens_per_minute", "max_streams"}
    if unknown := set(raw) - known:
        raise ConfigError(f"keys[{index}]: unknown keys {sorted(unknown)}")
    key = raw.get("key") or (env.get(raw["key_env"]) if raw.get("key_env") else None)
    if not key:
        raise ConfigError(f"keys[{index}]: 'key', or 'key_env' naming a set environment variable, is required")
    limits = {}
    for name in ("requests_per_minute", "tokens_per_minute", "max_streams"):
        if name in raw:
            if not isinstance(raw[name], int) or raw[name] < 0:
                raise ConfigError(f"keys[{index}]: {name} must be an integer >= 0")
            limits[name] = raw[name]
    return KeySettings(key=key, label=str(raw.get("label") or f"key_{key_tenant(key)[:8]}"), **limits)


def _webhook(raw: dict[str, Any], index: int, env: dict[str, str], labels: dict[str, str]) -> WebhookEndpoint:
    known = {"url", "secret_env", "name", "events", "keys"}
    if unknown := set(raw) - known:
        raise ConfigError(f"webhooks[{index}]: unknown keys {sorted(unknown)}")
    url, secret_env = raw.get("url"), raw.get("secret_env")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"webhooks[{index}]: 'url' (http:// or https://) is required")
    if not isinstance(secret_env, str):
        raise ConfigError(f"webhooks[{index}]: 'secret_env' (the variable holding the whsec_… secret) is required")
    if not env.get(secret_env, "").startswith("whsec_"):
        raise ConfigError(f"webhooks[{index}]: the environment variable {secret_env} must hold a whsec_… secret")
    events = tuple(raw.get("events", WEBHOOK_EVENTS))
    if not events or set(events) - set(WEBHOOK_EVENTS):
        raise ConfigError(f"webhooks[{index}]: events must be some of {list(WEBHOOK_EVENTS)}")
    by_label = {label: tenant for tenant, label in labels.items()}
    tenants = []
    for label in raw.get("keys", []):
        if label not in by_label:
            raise ConfigError(f"webhooks[{index}]: no API key is labelled {label!r}")
        tenants.append(by_label[label])
    return WebhookEndpoint(url=url, secret_env=secret_env, name=str(raw.get("name") or url), events=events,
                           tenants=tuple(tenants))  # fmt: skip


def check_webhook_urls(ops: OpsSettings, outbound: OutboundPolicy) -> OutboundPolicy:
    """Refuse at startup a webhook URL the outbound policy refuses without DNS (a literal private address);
    a name is checked on its addresses at each delivery."""
    for endpoint in ops.webhooks:
        try:
            outbound.check_url(endpoint.url)
        except OutboundRefused as exc:
            hint = "outbound_allow lists what may be reached"
            raise ConfigError(f"webhook {endpoint.name}: {exc.message} ({hint})") from None
    return outbound


def ops_settings(raw: dict[str, Any], env: dict[str, str], api_keys: list[str]) -> OpsSettings:
    """The operations settings from the config file ``raw`` and ``env``; ``api_keys``: the plain keys."""
    keys = tuple(_key_settings(k, i, env) for i, k in enumerate(raw.get("keys", [])))
    labels = {key_tenant(k): f"key_{key_tenant(k)[:8]}" for k in api_keys}
    labels.update({k.tenant: k.label for k in keys})
    if len(set(labels.values())) != len(labels):
        raise ConfigError("key labels must be unique")
    webhooks = tuple(_webhook(w, i, env, labels) for i, w in enumerate(raw.get("webhooks", [])))
    if len({w.name for w in webhooks}) != len(webhooks):
        raise ConfigError("webhook names (default: the url) must be unique")
    log_format = _setting(raw, env, "log_format", str, "text")
    if log_format not in ("text", "json"):
        raise ConfigError(f"log_format must be 'text' or 'json', not {log_format!r}")
    otlp = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    traces = bool(otlp) and not _flag(env.get("OTEL_SDK_DISABLED"), False) \
        and env.get("OTEL_TRACES_EXPORTER", "otlp") != "none"  # fmt: skip
    ops = OpsSettings(
        webhooks=webhooks,
        webhook_retry_initial_s=_setting(raw, env, "webhook_retry_initial_s", float, 5.0),
        webhook_retry_max_s=_setting(raw, env, "webhook_retry_max_s", float, 72 * 3600.0),
        webhook_timeout_s=_setting(raw, env, "webhook_timeout_s", float, 5.0),
        metrics=_setting(raw, env, "metrics", bool, True),
        access_log=_setting(raw, env, "access_log", bool, True),
        log_format=log_format,
        requests_per_minute=_setting(raw, env, "requests_per_minute", int, 0),
        tokens_per_minute=_setting(raw, env, "tokens_per_minute", int, 0),
        max_streams=_setting(raw, env, "max_streams", int, 0),
        redis_url=_setting(raw, env, "redis_url", str, ""),
        keys=keys,
        labels=labels,
        traces=traces,
    )
    if ops.webhook_retry_initial_s <= 0 or ops.webhook_timeout_s <= 0:
        raise ConfigError("webhook_retry_initial_s and webhook_timeout_s must be > 0")
    return ops
