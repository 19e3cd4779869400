"""The README's "Using it" examples, run as written against a server started as the README starts it: no
config, the bundled model. Only the address changes (the README's port 8080 becomes the test server's).

The code is read from README.md itself, so an example edited there is the example tested here."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import RespdServer, write_config

README = Path(__file__).resolve().parent.parent / "README.md"
ADDRESS = "http://127.0.0.1:8080"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _blocks(lang: str, title: str = "Using it") -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", _section(title), flags=re.S)


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RespdServer]:
    tmp = tmp_path_factory.mktemp("readme")
    server = RespdServer(config="", database_url=f"sqlite:///{tmp / 'respd.db'}", data_dir=tmp)
    server.start(timeout=180)
    yield server
    server.stop()


def _run_python(code: str, server: RespdServer) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code.replace(ADDRESS, server.url)], capture_output=True,
                          text=True, timeout=240)  # fmt: skip


@pytest.mark.timeout(600)
def test_the_python_examples_run_as_written(bundled: RespdServer) -> None:
    blocks = _blocks("python")
    assert len(blocks) == 2 and ADDRESS in blocks[0]  # the SDK example, then WebSocket mode's (uses its client)
    first = _run_python(blocks[0], bundled)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip(), "the chained answer and the counted stream print something"
    # WebSocket mode continues the first example's session (its `client` and `MODEL`), then reads the answer
    setup = blocks[0].split("first = ", 1)[0]
    ws = _run_python(setup + blocks[1] + "print(event.response.id)\n", bundled)
    assert ws.returncode == 0, ws.stderr
    assert ws.stdout.strip().startswith("resp_")


def test_the_curl_example_runs_as_written(bundled: RespdServer) -> None:
    (command,) = _blocks("sh")
    argv = shlex.split(command.replace("\\\n", " ").replace(ADDRESS, bundled.url))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    response = httpx.Response(200, content=done.stdout).json()
    assert response["object"] == "response" and response["status"] in ("completed", "incomplete")
    assert response["output"][0]["content"][0]["text"]


def test_the_alias_example_reaches_the_bundled_model(tmp_path: Path) -> None:
    """The README's config that lets clients hard-coding ``gpt-4o-mini`` reach the bundled model."""
    toml = next(b for b in _blocks("toml") if "aliases" in b)
    config = write_config(tmp_path / "respd.toml", "http://127.0.0.1:9/v1", extra=toml)
    server = RespdServer(config=config, database_url=f"sqlite:///{tmp_path / 'respd.db'}", data_dir=tmp_path)
    server.start(timeout=180)
    try:
        r = httpx.post(server.url + "/v1/responses", timeout=240,
                       json={"model": "gpt-4o-mini", "input": "Say hi", "max_output_tokens": 16})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["output"][0]["content"][0]["text"]
    finally:
        server.stop()
