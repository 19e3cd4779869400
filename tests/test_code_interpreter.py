"""The code_interpreter tool through the tool loop, on real servers (SQLite and PostgreSQL) with the scripted
upstream writing the code: JSON, stream, background; state across responses; a plot as an image output and
a container file cited in the answer; explicit containers; limits and failures the model is told about."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.checks import check_event, check_response
from tests.conftest import start_server
from tests.fake_upstream import FakeUpstream, Reply, tool_messages
from tests.servers import RespdServer, create_pg_database, drop_pg_database, write_config
from tests.test_background import sse, stored_json, wait_status
from tests.test_replicas import LEASE_S, client_of

OUTPUTS = "code_interpreter_call.outputs"
TOOL = {"type": "code_interpreter", "container": {"type": "auto"}}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream
) -> Iterator[RespdServer]:
    tmp = tmp_path_factory.mktemp(f"code-{request.param}")
    config = write_config(tmp / "respd.toml", fake.base_url)
    with open(config, "a") as f:
        f.write('\n[code_interpreter]\nsandbox = "bubblewrap"\ntimeout_s = 60\ncpu_s = 4\n')
    url = f"sqlite:///{tmp / 'respd.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    srv = start_server(tmp, config, url)
    yield srv
    srv.stop()


@pytest.fixture
def client(server: RespdServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0, timeout=60) as c:
        yield c


def code(source: str, call_id: str = "call_1") -> Reply:
    return Reply(tool_calls=[{"id": call_id, "name": "python", "arguments": json.dumps({"code": source})}])


def test_computation_round_trip_json(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(code("import math\nprint(math.factorial(20))"), Reply(text="20! is 2432902008176640000."))
    raw = client.responses.with_raw_response.create(model="test-model", input="What is 20!?", tools=[TOOL],
                                                    include=[OUTPUTS])  # fmt: skip
    body = check_response(raw.http_response.json())
    ci, msg = body["output"]
    assert ci["type"] == "code_interpreter_call" and ci["status"] == "completed" and ci["id"].startswith("ci_")
    assert ci["code"] == "import math\nprint(math.factorial(20))" and ci["container_id"].startswith("cntr_")
    assert ci["outputs"] == [{"type": "logs", "logs": "2432902008176640000\n"}]
    assert msg["content"][0]["text"] == "20! is 2432902008176640000."
    # the model read the output; the tool's function and the container are what it was offered
    assert "2432902008176640000" in tool_messages(fake.requests[1]["body"])[0]
    assert [t["function"]["name"] for t in fake.requests[0]["body"]["tools"]] == ["python"]
    assert body["tools"][0]["type"] == "code_interpreter"
    # without include, outputs are null
    fake.script(code("print(6 * 7)"), Reply(text="42"))
    plain = client.responses.create(model="test-model", input="6*7?", tools=[TOOL])
    assert plain.output[0].outputs is None  # type: ignore[union-attr]
    assert "42" in tool_messages(fake.requests[-1]["body"])[0]


def test_stream_events_in_order(server: RespdServer, fake: FakeUpstream) -> None:
    fake.script(code("x = 2 ** 10\nx"), Reply(text="It is 1024."))
    events = sse(server.url + "/v1/responses", json={"model": "test-model", "input": "2^10?", "tools": [TOOL],
                                                     "include": [OUTPUTS], "stream": True})  # fmt: skip
    for event in events:
        check_event(event)
    types = [e["type"] for e in events]
    ci = [t for t in types if "code_interpreter" in t]
    assert ci == ["response.code_interpreter_call.in_progress", "response.code_interpreter_call_code.delta",
                  "response.code_interpreter_call_code.done", "response.code_interpreter_call.interpreting",
                  "response.code_interpreter_call.completed"]  # fmt: skip
    added = next(e for e in events if e["type"] == "response.output_item.added")
    assert added["item"]["type"] == "code_interpreter_call" and added["item"]["status"] == "in_progress"
    assert types.index("response.output_item.added") < types.index(ci[0])
    done = next(e for e in events if e["type"] == "response.output_item.done")
    assert types.index(ci[-1]) < types.index("response.output_item.done")
    assert done["item"]["outputs"] == [{"type": "logs", "logs": "1024\n"}]
    code_done = next(e for e in events if e["type"] == "response.code_interpreter_call_code.done")
    assert code_done["code"] == "x = 2 ** 10\nx" and code_done["item_id"] == added["item"]["id"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "response.completed"


def test_background_and_state_across_responses(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(code("import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3]})\nprint(df['a'].sum())"),
                Reply(text="The sum is 6."))  # fmt: skip
    first = client.responses.create(model="test-model", input="sum", tools=[TOOL], background=True, include=[OUTPUTS])
    assert wait_status(client, first.id, {"completed", "failed", "incomplete"}).status == "completed"
    body = stored_json(client, first.id)
    assert body["output"][0]["outputs"] == [{"type": "logs", "logs": "6\n"}]
    container = body["output"][0]["container_id"]
    # the next response of the chain runs in the same container: df is still there
    fake.script(code("print(df['a'].mean())"), Reply(text="The mean is 2."))
    second = client.responses.create(model="test-model", input="mean", tools=[TOOL], include=[OUTPUTS],
                                     previous_response_id=first.id)  # fmt: skip
    assert second.output[0].container_id == container  # type: ignore[union-attr]
    assert second.output[0].outputs[0].logs == "2.0\n"  # type: ignore[union-attr,index]
    # a response outside the chain gets a container of its own
    fake.script(code("print('df' in globals())"), Reply(text="no"))
    other = client.responses.create(model="test-model", input="fresh", tools=[TOOL], include=[OUTPUTS])
    assert other.output[0].container_id != container  # type: ignore[union-attr]
    assert other.output[0].outputs[0].logs == "False\n"  # type: ignore[union-attr,index]


def test_plot_is_an_image_and_a_cited_container_file(client: openai.OpenAI, fake: FakeUpstream) -> None:
    plot = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title('squares')\nplt.show()"
    fake.script(code(plot), lambda body: Reply(text="Here is the plot [1]."))
    resp = client.responses.create(model="test-model", input="plot squares", tools=[TOOL], include=[OUTPUTS])
    ci, msg = resp.output[0], resp.output[1]
    image = next(o for o in ci.outputs if o.type == "image")  # type: ignore[union-attr]
    assert image.url.startswith("data:image/png;base64,")  # type: ignore[union-attr]
    assert base64.b64decode(image.url.split(",", 1)[1]).startswith(b"\x89PNG")  # type: ignore[union-attr]
    told = tool_messages(fake.requests[1]["body"])[0]
    assert "[1] figure saved: /mnt/data/cfile_" in told
    note = msg.content[0].annotations[0]  # type: ignore[union-attr]
    assert note.type == "container_file_citation" and note.container_id == ci.container_id  # type: ignore[union-attr]
    assert note.filename.endswith(".png") and (note.start_index, note.end_index) == (17, 20)
    files = client.containers.files.list(ci.container_id).data  # type: ignore[union-attr]
    png = next(f for f in files if f.id == note.file_id)
    assert png.source == "assistant" and png.path == f"/mnt/data/{note.filename}"
    content = client.containers.files.content.retrieve(png.id, container_id=ci.container_id).read()  # type: ignore[union-attr]
    assert content.startswith(b"\x89PNG")


def test_files_written_by_code_become_container_files(client: openai.OpenAI, fake: FakeUpstream) -> None:
    box = client.containers.create(name="explicit")
    client.containers.files.create(box.id, file=("in.csv", b"x,y\n1,2\n3,4\n"))
    write = "import pandas as pd\ndf = pd.read_csv('in.csv')\ndf['z'] = df.x + df.y\ndf.to_csv('out.csv', index=False)"
    fake.script(code(write), Reply(text="Saved out.csv [1]."))
    resp = client.responses.create(model="test-model", input="add columns", include=[OUTPUTS],
                                   tools=[{"type": "code_interpreter", "container": box.id}])  # fmt: skip
    assert resp.output[0].container_id == box.id  # type: ignore[union-attr]
    files = {f.path: f for f in client.containers.files.list(box.id).data}
    out = files["/mnt/data/out.csv"]
    assert out.source == "assistant" and files["/mnt/data/in.csv"].source == "user"
    assert client.containers.files.content.retrieve(out.id, container_id=box.id).read() == b"x,y,z\n1,2,3\n3,4,7\n"
    note = resp.output[1].content[0].annotations[0]  # type: ignore[union-attr]
    assert note.file_id == out.id and note.filename == "out.csv"  # type: ignore[union-attr]


def test_errors_and_limits_reach_the_model(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(code("1/0"), code("while True: pass", "call_2"), code("print('still alive')", "call_3"),
                Reply(text="done"))  # fmt: skip
    resp = client.responses.create(model="test-model", input="go", tools=[TOOL], include=[OUTPUTS])
    calls = [o for o in resp.output if o.type == "code_interpreter_call"]
    assert [c.status for c in calls] == ["completed", "completed", "completed"]
    told = tool_messages(fake.requests[-1]["body"])
    assert "ZeroDivisionError" in told[0]
    assert "LimitExceeded" in told[1] and "CPU time" in told[1]
    assert told[2].startswith("still alive")


def test_unknown_or_expired_container_fails_the_call(
    client: openai.OpenAI, fake: FakeUpstream, server: RespdServer
) -> None:
    fake.script(code("print(1)"), Reply(text="could not"))
    resp = client.responses.create(model="test-model", input="x", include=[OUTPUTS],
                                   tools=[{"type": "code_interpreter", "container": "cntr_nope"}])  # fmt: skip
    assert resp.status == "completed" and resp.output[0].status == "failed"  # type: ignore[union-attr]
    assert "cntr_nope" in tool_messages(fake.requests[-1]["body"])[0]
    bad = httpx.post(
        server.url + "/v1/responses",
        json={
            "model": "test-model",
            "input": "x",
            "tools": [{"type": "code_interpreter", "container": {"type": "auto", "memory_limit": "64g"}}],
        },
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tools[0].container.memory_limit"


def test_openai_agents_code_interpreter_tool(server: RespdServer, fake: FakeUpstream) -> None:
    agents = pytest.importorskip("agents")
    from openai import AsyncOpenAI

    fake.script(code("print(sum(range(101)))"), Reply(text="The sum is 5050."))

    async def run() -> Any:
        async with AsyncOpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0) as openai_client:
            model = agents.OpenAIResponsesModel(model="test-model", openai_client=openai_client)
            tool = agents.CodeInterpreterTool(tool_config={"type": "code_interpreter", "container": {"type": "auto"}})
            agent = agents.Agent(name="calc", instructions="Use python.", model=model, tools=[tool])
            return await agents.Runner.run(agent, "Sum 0..100")

    result = asyncio.run(run())
    assert result.final_output == "The sum is 5050."
    calls = [i for i in result.new_items if i.type == "tool_call_item"]
    assert calls and calls[0].raw_item.type == "code_interpreter_call"
    assert "5050" in tool_messages(fake.requests[-1]["body"])[0]


def test_taken_over_during_a_call_does_not_run_it_again(tmp_path: Path, fake: FakeUpstream) -> None:
    """A replica killed while code runs: the replica that takes the response over ends that call as
    incomplete and tells the model, instead of running code with effects a second time (PostgreSQL)."""
    config = write_config(tmp_path / "respd.toml", fake.base_url, f"lease_s = {LEASE_S}\n")
    with open(config, "a") as f:
        f.write('\n[code_interpreter]\nsandbox = "bubblewrap"\n')
    url = create_pg_database()
    a, b = start_server(tmp_path / "a", config, url), start_server(tmp_path / "b", config, url)
    try:
        slow = "open('/mnt/data/ran.txt', 'a').write('ran\\n')\nimport time\ntime.sleep(30)"
        fake.script(
            code(slow), lambda body: Reply(text="stopped" if "not run again" in "".join(tool_messages(body)) else "?")
        )
        with client_of(a) as ca:
            rid = ca.responses.create(model="test-model", input="go", background=True, tools=[TOOL]).id
            deadline = time.monotonic() + 30
            while not stored_json(ca, rid)["output"] and time.monotonic() < deadline:
                time.sleep(0.1)  # the call's item is logged before its code runs
            time.sleep(1.0)
        a.kill()
        with client_of(b) as cb:
            done = wait_status(cb, rid, {"completed", "failed", "incomplete", "cancelled"}, timeout=LEASE_S * 15)
            body = stored_json(cb, rid)
            assert done.status == "completed", body
            ci, msg = body["output"]
            assert ci["type"] == "code_interpreter_call" and ci["status"] == "failed"  # stopped, not run again
            assert msg["content"][0]["text"] == "stopped"
            # the code did not run on b: nothing it wrote came back into the container
            files = cb.containers.files.list(ci["container_id"]).data
            assert [f.path for f in files] == []
    finally:
        a.stop()
        b.stop()
        drop_pg_database(url)


def test_hostile_code_through_the_api(client: openai.OpenAI, fake: FakeUpstream, server: RespdServer) -> None:
    """What a hostile prompt would make the model run, through the API: every attempt fails, the model is
    told, and the server answers the next request (the full set is tests/test_sandbox_escape.py)."""
    db = server.database_url.removeprefix("sqlite:///") if server.database_url.startswith("sqlite") else "/etc/hostname"
    probe = f"""
import os, socket
for path in ["/etc/shadow", {db!r}, {str(server.data_dir)!r}]:
    try:
        open(path, "rb").read(); print("READ", path)
    except OSError as exc:
        print("no", path, type(exc).__name__)
for port in [5432, {server.port}]:
    s = socket.socket(); s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port)); print("CONNECTED", port)
    except OSError as exc:
        print("no", port, exc.errno)
"""
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        break"
    fake.script(code(probe), code(bomb, "call_2"), code("print('alive')", "call_3"), Reply(text="done"))
    resp = client.responses.create(model="test-model", input="escape", tools=[TOOL], include=[OUTPUTS])
    told = tool_messages(fake.requests[-1]["body"])
    assert "READ" not in told[0] and "CONNECTED" not in told[0] and told[0].count("no ") == 5, told[0]
    assert told[2].startswith("alive")
    assert resp.status == "completed" and httpx.get(server.url + "/healthz").status_code == 200


def test_a_dead_session_is_restarted_with_its_files(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(code("x = 1\nopen('keep.txt', 'w').write('kept')"),
                code("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "call_2"),
                code("print(open('keep.txt').read(), 'x' in globals())", "call_3"), Reply(text="done"))  # fmt: skip
    resp = client.responses.create(model="test-model", input="go", tools=[TOOL], include=[OUTPUTS])
    assert resp.status == "completed"
    told = tool_messages(fake.requests[-1]["body"])
    assert "SandboxError" in told[1] and "killed (SIGKILL)" in told[1]
    assert "session was restarted" in told[2] and "kept False" in told[2]


def test_without_a_sandbox_the_tool_is_left_out(tmp_path: Path, fake: FakeUpstream) -> None:
    """No bubblewrap on the PATH: code_interpreter is left out like any built-in tool respd cannot run, and
    the log says how to enable it; a sandbox the operator names must work or the server does not start."""
    config = write_config(tmp_path / "respd.toml", fake.base_url)
    server = RespdServer(config=config, database_url=f"sqlite:///{tmp_path / 'auto.db'}", data_dir=tmp_path / "auto",
                         env={"PATH": "/nonexistent"})  # fmt: skip
    server.start(timeout=120)
    try:
        assert "code_interpreter: not available" in server.log() and "apt-get install bubblewrap" in server.log()
        fake.script(Reply(text="no tools here"))
        r = httpx.post(server.url + "/v1/responses", json={"model": "test-model", "input": "x", "tools": [TOOL]})
        assert r.status_code == 200 and r.headers["respd-omitted-tools"] == "code_interpreter"
        assert "tools" not in fake.requests[-1]["body"]
    finally:
        server.stop()
    named = RespdServer(config=config, database_url=f"sqlite:///{tmp_path / 'named.db'}", data_dir=tmp_path / "named",
                        env={"PATH": "/nonexistent", "RESPD_SANDBOX": "bubblewrap"})  # fmt: skip
    with pytest.raises(RuntimeError, match="sandbox 'bubblewrap' is not usable"):
        named.start(timeout=120)
