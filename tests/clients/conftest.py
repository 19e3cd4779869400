"""Fixtures for the real-client tests: a respd that knows the clients' model names, a wire recorder in front
of it, and the Node.js clients installed from ``tests/js/package-lock.json``."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import start_server
from tests.fake_searxng import FakeSearxng
from tests.fake_upstream import FakeUpstream
from tests.servers import RespdServer, write_config
from tests.test_web_search import web_config
from tests.wire_recorder import WireRecorder

JS = Path(__file__).parent.parent / "js"
API_KEY = "sk-respd-clients"
# Codex picks its tools by model name: for a model it knows (this one) it offers apply_patch.
CODEX_MODEL = "gpt-5.5"


@pytest.fixture(scope="session")
def respd(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> Iterator[RespdServer]:
    """respd on SQLite with an API key, serving ``test-model`` and ``gpt-5.5`` from the fake upstream."""
    tmp = tmp_path_factory.mktemp("respd-clients")
    extra = f'''api_keys = ["{API_KEY}"]

[[models]]
name = "{CODEX_MODEL}"
backend = "openai"
base_url = "{fake.base_url}"
upstream_model = "fake-upstream-model"
timeout_s = 5
'''
    config = write_config(tmp / "respd.toml", fake.base_url, extra)
    server = start_server(tmp, config, f"sqlite:///{tmp / 'respd.db'}")
    yield server
    server.stop()


@pytest.fixture
def wire(respd: RespdServer) -> Iterator[WireRecorder]:
    """A fresh recorder in front of ``respd``: clients get ``wire.url + "/v1"`` as their base URL."""
    with WireRecorder(respd.url) as recorder:
        yield recorder


@pytest.fixture(scope="session")
def respd_web(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream, searxng: FakeSearxng) -> Iterator[RespdServer]:
    """respd like ``respd``, with hosted web search on the fake SearXNG."""
    tmp = tmp_path_factory.mktemp("respd-clients-web")
    config = web_config(tmp / "respd.toml", fake.base_url, searxng.base_url, f'api_keys = ["{API_KEY}"]\n')
    server = start_server(tmp, config, f"sqlite:///{tmp / 'respd.db'}")
    yield server
    server.stop()


@pytest.fixture
def wire_web(respd_web: RespdServer) -> Iterator[WireRecorder]:
    """:func:`wire` in front of ``respd_web``."""
    with WireRecorder(respd_web.url) as recorder:
        yield recorder


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed client test names the requests respd answered wrongly (the client's own error may not)."""
    report: pytest.TestReport = yield
    recorder = getattr(item, "funcargs", {}).get("wire") or getattr(item, "funcargs", {}).get("wire_web")
    if report.failed and isinstance(recorder, WireRecorder):
        wrong = [f"{e.problem()}: {e.describe()}" for e in recorder.wrong()]
        report.sections.append(("requests respd answered wrongly", "\n\n".join(wrong) or "none"))
    return report


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The clients of ``tests/js/package-lock.json``, installed (``tests/js/install.sh``) unless they are already."""
    if shutil.which("npm") is None:
        pytest.fail("npm (Node.js 20) is needed for the JavaScript client tests")
    subprocess.run(["bash", str(JS / "install.sh")], check=True, timeout=600)
    return JS / "node_modules"


def run_node(script: str, *args: str) -> Any:
    """Run ``tests/js/<script>`` with node; its last stdout line is the JSON result."""
    proc = subprocess.run(["node", str(JS / script), *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.returncode == 0, f"node {script} {' '.join(args)} failed:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])
