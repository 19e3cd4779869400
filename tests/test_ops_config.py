"""The operations settings: webhooks, key labels and limits, from the file and the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from respd.config import ConfigError, Settings, key_tenant, load_settings

SECRET = {"HOOK_SECRET": "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMy"}


def settings(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    cfg = tmp_path / "respd.toml"
    cfg.write_text(text)
    return load_settings(str(cfg), env={"RESPD_DATA_DIR": str(tmp_path), **SECRET, **(env or {})})


def test_keys_limits_and_webhooks(tmp_path: Path) -> None:
    s = settings(tmp_path, """
api_keys = ["sk-plain"]
requests_per_minute = 10
[[keys]]
key_env = "TEAM_KEY"
label = "team-a"
tokens_per_minute = 500
[[webhooks]]
url = "https://hooks.example.com/x"
secret_env = "HOOK_SECRET"
events = ["response.failed"]
keys = ["team-a"]
""", env={"TEAM_KEY": "sk-team", "RESPD_MAX_STREAMS": "3"})
    ops = s.ops
    assert s.api_keys == ("sk-plain", "sk-team")
    team = key_tenant("sk-team")
    assert ops.limits(team) == (10, 500, 3) and ops.limits(key_tenant("sk-plain")) == (10, 0, 3)
    assert ops.label(team) == "team-a" and ops.label(key_tenant("sk-plain")).startswith("key_")
    [hook] = ops.webhooks
    assert hook.wants(team, "response.failed") and not hook.wants(team, "response.completed")
    assert not hook.wants(key_tenant("sk-plain"), "response.failed")
    assert ops.webhook_retry_initial_s == 5.0 and ops.metrics is True


@pytest.mark.parametrize(("text", "env", "message"), [
    ('[[webhooks]]\nurl = "ftp://x"\nsecret_env = "HOOK_SECRET"\n', {}, "'url'"),
    ('[[webhooks]]\nurl = "https://x"\nsecret_env = "NOPE"\n', {}, "NOPE"),
    ('[[webhooks]]\nurl = "https://x"\nsecret_env = "HOOK_SECRET"\nevents = ["response.created"]\n', {}, "events"),
    ('[[webhooks]]\nurl = "https://x"\nsecret_env = "HOOK_SECRET"\nkeys = ["ghost"]\n', {}, "ghost"),
    ('[[webhooks]]\nurl = "http://10.0.0.5/x"\nsecret_env = "HOOK_SECRET"\n', {}, "outbound_allow"),
    ('[[keys]]\nlabel = "x"\n', {}, "key_env"),
    ('[[keys]]\nkey = "a"\nrequests_per_minute = -1\n', {}, "requests_per_minute"),
    ("", {"RESPD_TOKENS_PER_MINUTE": "lots"}, "tokens_per_minute"),
    ("", {"RESPD_LOG_FORMAT": "xml"}, "log_format"),
    ("", {"RESPD_WEBHOOK_RETRY_INITIAL_S": "0"}, "webhook_retry_initial_s"),
])  # fmt: skip
def test_bad_settings_stop_startup(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(tmp_path, text, env)


def test_private_webhook_allowed_when_listed(tmp_path: Path) -> None:
    s = settings(tmp_path, 'outbound_allow = ["10.0.0.5"]\n[[webhooks]]\nurl = "http://10.0.0.5/x"\n'
                           'secret_env = "HOOK_SECRET"\n')  # fmt: skip
    assert s.ops.webhooks[0].url == "http://10.0.0.5/x"
