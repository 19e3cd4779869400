"""The fuzz suite: schemathesis against respd on SQLite and PostgreSQL, from two descriptions.

- respd's own ``GET /openapi.json``: every route the server serves, whoever added it (the description is
  generated from the routing table), with its request bodies' real schemas;
- the OpenAI spec (``tests/specs/openai-openapi.yml``): its operations that respd serves (matched by method
  and path against the first), with the bodies real clients are written against.

Each run goes through schemathesis' phases (examples, coverage of every field's edges, random fuzzing, and
stateful sequences) for a fixed time, and fails on any 5xx, any error outside the envelope, any event stream
that ends without its terminal event, and any response whose stored state differs from what its answer or
stream said (checks in ``tests/fuzz_hooks.py``); and on any traceback respd logged meanwhile (a fault inside
a run that ended it ``failed`` rather than answering 500).

Reproducible: the seed is fixed (``RESPD_FUZZ_SEED``, default 19); a failure prints the ``curl`` that
reproduces it. ``RESPD_FUZZ_SECONDS`` is each run's budget (default 35: two runs per database, each
starting in a few seconds). Schemathesis's own report lands in the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import start_server
from tests.fake_upstream import FakeUpstream
from tests.servers import RespdServer
from tests.spec_schemas import openai_spec

SEED = int(os.environ.get("RESPD_FUZZ_SEED", "19"))
SECONDS = int(os.environ.get("RESPD_FUZZ_SECONDS", "35"))
ROOT = Path(__file__).resolve().parents[1]
CHECKS = "not_a_server_error,respd_error_envelope,respd_stream_ends,respd_stored_as_answered"
MODELS = ["test-model"]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzzed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream,
           ) -> Iterator[RespdServer]:  # fmt: skip
    """A server whose only model answers (every model it serves is reachable: an upstream that is down is a
    502 by design, not a defect the fuzzer should report)."""
    tmp = tmp_path_factory.mktemp(f"respd-fuzz-{request.param}")
    config = tmp / "respd.toml"
    config.write_text(f'[[models]]\nname = "test-model"\nbackend = "openai"\nbase_url = "{fake.base_url}"\n'
                      'upstream_model = "fake-upstream-model"\ntimeout_s = 5\n')  # fmt: skip
    url = f"sqlite:///{tmp / 'respd.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    server = start_server(tmp, str(config), url)
    yield server
    server.stop()


def _known_ids(server: RespdServer) -> dict[str, list[str]]:
    """Responses, conversations and items that exist, for the fuzzer to reach beyond "not found"."""
    base = server.url + "/v1"
    made = [httpx.post(base + "/responses", json={"model": "test-model", "input": "hello", **extra}, timeout=20)
            for extra in ({}, {"stream": True}, {"background": True})]  # fmt: skip
    rids = [r.json()["id"] if r.headers["content-type"].startswith("application/json")
            else json.loads(r.text.split("data: ", 2)[1].split("\n", 1)[0])["response"]["id"] for r in made]  # fmt: skip
    convs = [httpx.post(base + "/conversations", json={"items": [{"role": "user", "content": f"c{i}"}]}).json()["id"]
             for i in range(2)]  # fmt: skip
    items = [it["id"] for c in convs for it in httpx.get(f"{base}/conversations/{c}/items").json()["data"]]
    return {"response_id": rids, "conversation_id": convs, "item_id": items, "model": MODELS}


def _served_openai_operations(server: RespdServer) -> dict[str, Any]:
    """The OpenAI spec cut to the operations respd serves (its paths are under the /v1 base URL)."""
    ours = httpx.get(server.url + "/openapi.json").json()["paths"]
    spec = openai_spec()
    paths = {}
    for path, item in spec["paths"].items():
        served = ours.get("/v1" + path, {})
        kept = {method: op for method, op in item.items() if method in served}
        if kept:
            paths[path] = {**kept, **({"parameters": item["parameters"]} if "parameters" in item else {})}
    return {**spec, "paths": paths}


def _run(server: RespdServer, location: str, base_url: str, ids: dict[str, list[str]], report: Path) -> None:
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks", "PYTHONPATH": str(ROOT),
           "RESPD_FUZZ_IDS": json.dumps(ids), "RESPD_FUZZ_MODELS": json.dumps(MODELS), "NO_COLOR": "1"}  # fmt: skip
    cmd = [str(Path(sys.executable).parent / "st"), "--config-file", str(ROOT / "tests" / "fuzz.toml"), "run",
           location, "--url", base_url, "--checks", CHECKS, "--seed", str(SEED), "--max-time", str(SECONDS),
           "--workers", "1", "--report", "junit", "--report-dir", str(report)]  # fmt: skip
    logged = len(server.log())
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=SECONDS + 120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"schemathesis found failures (seed {SEED}):\n{output[-12000:]}"
    assert "generated" in output, output[-3000:]
    faults = server.log()[logged:]
    assert "Traceback" not in faults, f"respd logged a fault while fuzzed (seed {SEED}):\n{faults[-12000:]}"


def test_fuzz_respd_description(fuzzed: RespdServer, tmp_path: Path) -> None:
    _run(fuzzed, fuzzed.url + "/openapi.json", fuzzed.url, _known_ids(fuzzed), tmp_path)


def test_fuzz_openai_spec_operations(fuzzed: RespdServer, tmp_path: Path) -> None:
    doc = tmp_path / "openai-served.json"
    doc.write_text(json.dumps(_served_openai_operations(fuzzed)))
    _run(fuzzed, str(doc), fuzzed.url + "/v1", _known_ids(fuzzed), tmp_path)
