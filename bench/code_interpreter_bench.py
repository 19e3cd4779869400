"""The code_interpreter tool end to end: a response that runs ``print(1)`` in a warm container, against the
same response with no code to run, on one real respd server with the tests' scripted upstream.

    python bench/code_interpreter_bench.py [--n 100]

* baseline: the model answers at once (one model turn);
* code: the model calls ``python("print(1)")`` in a warm container (explicit, created once), then answers
  (two model turns, one code call, its item and events logged and stored).

The difference is the code call plus one more model turn through the upstream; the call itself is measured
alone by bench/sandbox_bench.py (``Pool.execute``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fake_upstream import FakeUpstream, Reply, tool_messages
from tests.servers import RespdServer, write_config


def model(body: dict[str, Any]) -> Reply:
    """Call python once, then answer with what it printed."""
    told = tool_messages(body)
    if told:
        return Reply(text=f"It printed {told[-1].strip()}.")
    return Reply(tool_calls=[{"id": "call_1", "name": "python", "arguments": json.dumps({"code": "print(1)"})}])


def timed(client: openai.OpenAI, n: int, **kwargs: Any) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        resp = client.responses.create(model="test-model", input="go", **kwargs)
        out.append((time.perf_counter() - t0) * 1000)
        assert resp.status == "completed", resp
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    args = ap.parse_args()
    with FakeUpstream() as fake, tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp) / "respd.toml", fake.base_url)
        server = RespdServer(config=config, database_url=f"sqlite:///{tmp}/respd.db", data_dir=Path(tmp))
        server.start(timeout=180)  # the shared machine may be slow to start it
        try:
            with openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0) as client:
                box = client.containers.create(name="bench")
                tool = {"type": "code_interpreter", "container": box.id}
                fake.script(*[model] * (4 * args.n + 10))
                timed(client, 5, tools=[tool])  # warm: the container's process, connections
                base, code = [], []
                for _ in range(args.n // 10):  # interleaved, so load changes hit both alike
                    base += timed(client, 10)
                    code += timed(client, 10, tools=[tool])
        finally:
            server.stop()
    p50b, p50c = statistics.median(base), statistics.median(code)
    print(f"baseline (one turn)          p50 {p50b:6.1f} ms  p90 {sorted(base)[int(0.9 * len(base))]:6.1f} ms")
    print(f"print(1) (two turns + code)  p50 {p50c:6.1f} ms  p90 {sorted(code)[int(0.9 * len(code))]:6.1f} ms")
    print(f"difference                   p50 {p50c - p50b:6.1f} ms")


if __name__ == "__main__":
    main()
