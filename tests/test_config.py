"""Settings from file, environment and flags; /v1/models and /healthz."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from respd.config import ConfigError, load_settings
from tests.servers import RespdServer

CONFIG = """
api_keys = ["from-file"]
[[models]]
name = "gpt-4o-mini"
backend = "openai"
base_url = "http://127.0.0.1:9000/v1"
api_key_env = "UPSTREAM_KEY"
upstream_model = "qwen2.5"
"""


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "respd.toml"
    cfg.write_text(CONFIG)
    s = load_settings(str(cfg), env={"RESPD_PORT": "9999", "RESPD_API_KEYS": "a, b", "UPSTREAM_KEY": "u"})
    assert s.port == 9999 and s.host == "127.0.0.1"
    assert s.api_keys == ("from-file", "a", "b")
    route = s.model("gpt-4o-mini")
    assert route.target_model == "qwen2.5" and route.base_url == "http://127.0.0.1:9000/v1"
    s = load_settings(env={"RESPD_CONFIG": str(cfg), "RESPD_HOST": "0.0.0.0", "RESPD_DATABASE_URL": "postgresql://h/db"},
                      port=1234)  # fmt: skip
    assert (s.host, s.port, s.database_url) == ("0.0.0.0", 1234, "postgresql+asyncpg://h/db")
    s = load_settings(env={"RESPD_DATA_DIR": str(tmp_path)})
    assert s.database_url == f"sqlite+aiosqlite:///{tmp_path / 'respd.db'}"


def test_file_settings(tmp_path: Path) -> None:
    s = load_settings(env={})
    assert (s.max_file_bytes, s.fetch_file_urls) == (512 * 1024 * 1024, False)
    cfg = tmp_path / "files.toml"
    cfg.write_text("max_file_bytes = 1000\nfetch_file_urls = true\n")
    s = load_settings(str(cfg), env={})
    assert (s.max_file_bytes, s.fetch_file_urls) == (1000, True)
    s = load_settings(str(cfg), env={"RESPD_MAX_FILE_BYTES": "2000", "RESPD_FETCH_FILE_URLS": "false"})
    assert (s.max_file_bytes, s.fetch_file_urls) == (2000, False)
    for bad in ("0", "-1", "lots"):
        with pytest.raises(ConfigError, match="max_file_bytes"):
            load_settings(env={"RESPD_MAX_FILE_BYTES": bad})


@pytest.mark.parametrize(
    "bad",
    ['[[models]]\nbackend="openai"\nbase_url="http://x"', '[[models]]\nname="a"\nbackend="magic"',
     '[[models]]\nname="a"\nbackend="openai"', '[[models]]\nname="a"\nbase_url="http://x"\nsurprise=1', "not toml ="],
)  # fmt: skip
def test_bad_config_is_refused(tmp_path: Path, bad: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(bad)
    with pytest.raises(ConfigError):
        load_settings(str(cfg), env={})


def test_models_and_health(client: openai.OpenAI, server: RespdServer) -> None:
    assert [m.id for m in client.models.list()] == ["test-model", "dead-model"]
    assert client.models.retrieve("test-model").id == "test-model"
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
