"""``input_file`` and ``input_image`` parts that name files: by ``file_id`` (a stored file of the caller's key),
``file_data`` (a data URL) or ``file_url`` (fetched only when the operator allows it, from hosts the outbound
policy allows). The model reads the file's text; the stored input stays as the client sent it."""

from __future__ import annotations

import base64
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.checks import check_error, check_response
from tests.conftest import start_server
from tests.fake_upstream import FakeUpstream
from tests.pdfs import make_pdf
from tests.servers import RespdServer, write_config

REPORT = "Quarterly report. The launch code is ZEBRA-7731. Revenue grew twelve percent."
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def user(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(parts)}]


def sent_user_text(fake: FakeUpstream) -> str:
    """The text of the last user message the upstream was sent."""
    content = [m for m in fake.requests[-1]["body"]["messages"] if m["role"] == "user"][-1]["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def test_file_id_text_reaches_the_model_and_the_input_is_kept_as_sent(
    any_client: openai.OpenAI, fake: FakeUpstream
) -> None:
    f = any_client.files.create(file=("report.txt", REPORT.encode()), purpose="user_data")
    parts = [{"type": "input_file", "file_id": f.id}, {"type": "input_text", "text": "What is the launch code?"}]
    resp = any_client.responses.create(model="test-model", input=user(*parts))
    check_response(resp.model_dump(mode="json", exclude_unset=True))
    text = sent_user_text(fake)
    assert f'<file name="report.txt">\n{REPORT}\n</file>\n' in text and text.endswith("What is the launch code?")
    stored = any_client.responses.input_items.list(resp.id).data[0].model_dump(exclude_none=True)
    assert stored["content"] == parts  # as the client sent it, not the file's text
    # the next turn of the chain reads the file again; once it is deleted, the chain says so
    any_client.responses.create(model="test-model", input="And the revenue?", previous_response_id=resp.id)
    assert REPORT in "".join(str(m["content"]) for m in fake.requests[-1]["body"]["messages"])
    any_client.files.delete(f.id)
    with pytest.raises(openai.NotFoundError) as caught:
        any_client.responses.create(model="test-model", input="Again?", previous_response_id=resp.id)
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "previous_response_id"
    assert f.id in caught.value.body["message"]


def test_pdf_by_file_id(any_client: openai.OpenAI, fake: FakeUpstream) -> None:
    pdf = make_pdf([["Contract between Acme and Globex."], ["Termination fee: 40,000 EUR."]])
    f = any_client.files.create(file=("contract.pdf", pdf, "application/pdf"), purpose="user_data")
    any_client.responses.create(model="test-model", input=user({"type": "input_file", "file_id": f.id}))
    assert sent_user_text(fake) == ('<file name="contract.pdf">\nContract between Acme and Globex.\n\n'
                                    "Termination fee: 40,000 EUR.\n</file>\n")  # fmt: skip
    any_client.files.delete(f.id)


def test_file_data_as_a_data_url(client: openai.OpenAI, fake: FakeUpstream) -> None:
    pdf = make_pdf([["Invoice INV-4471, due in 30 days."]])
    data = "data:application/pdf;base64," + base64.b64encode(pdf).decode()
    client.responses.create(model="test-model", input=user({"type": "input_file", "filename": "inv.pdf",
                                                             "file_data": data}))  # fmt: skip
    assert sent_user_text(fake) == '<file name="inv.pdf">\nInvoice INV-4471, due in 30 days.\n</file>\n'
    md = base64.b64encode(b"# Notes\n\n- alpha\n").decode()  # bare base64 with a file name works too
    client.responses.create(model="test-model", input=user({"type": "input_file", "filename": "n.md", "file_data": md}))
    assert sent_user_text(fake) == '<file name="n.md">\n# Notes\n\n- alpha\n\n</file>\n'


def test_file_in_a_tool_output(client: openai.OpenAI, fake: FakeUpstream) -> None:
    data = "data:text/plain;base64," + base64.b64encode(b"sunny, 24 C").decode()
    client.responses.create(model="test-model", input=[
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": [
            {"type": "input_file", "filename": "w.txt", "file_data": data}]},
    ])  # fmt: skip
    tool = next(m for m in fake.requests[-1]["body"]["messages"] if m["role"] == "tool")
    assert tool["content"] == '<file name="w.txt">\nsunny, 24 C\n</file>\n'


def test_input_tokens_count_the_files_text(any_client: openai.OpenAI) -> None:
    # the fake upstream counts one token per word of the messages it is sent
    f = any_client.files.create(file=("words.txt", b"one two three four five six"), purpose="user_data")
    count = any_client.responses.input_tokens.count(model="test-model", input=user(
        {"type": "input_file", "file_id": f.id}, {"type": "input_text", "text": "seven"}))  # fmt: skip
    assert count.input_tokens == 10  # the file's 6 words, its three tag words, and the question's
    any_client.files.delete(f.id)


def test_image_by_file_id_goes_upstream_as_a_data_url(any_client: openai.OpenAI, fake: FakeUpstream) -> None:
    img = any_client.files.create(file=("cat.png", PNG), purpose="vision")
    any_client.responses.create(model="test-model", input=user(
        {"type": "input_text", "text": "What is this?"}, {"type": "input_image", "file_id": img.id, "detail": "low"}))  # fmt: skip
    content = fake.requests[-1]["body"]["messages"][-1]["content"]
    assert content[1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode(),
                                                             "detail": "low"}}  # fmt: skip
    txt = any_client.files.create(file=("a.txt", b"not an image"), purpose="user_data")
    with pytest.raises(openai.BadRequestError) as caught:
        any_client.responses.create(model="test-model", input=user({"type": "input_image", "file_id": txt.id}))
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "input[0].content[0].file_id"
    for f in (img, txt):
        any_client.files.delete(f.id)


@pytest.mark.parametrize(
    ("part", "status", "param", "code"),
    [
        ({"type": "input_file", "file_id": "file-nope"}, 404, "input[0].content[1].file_id", None),
        ({"type": "input_file"}, 400, "input[0].content[1]", None),
        ({"type": "input_file", "file_id": "file-x", "file_data": "eA=="}, 400, "input[0].content[1]", None),
        ({"type": "input_file", "file_data": "not base64!"}, 400, "input[0].content[1].file_data", "invalid_value"),
        ({"type": "input_file", "file_data": "eA=="}, 400, "input[0].content[1].filename", "missing_required_parameter"),
        ({"type": "input_file", "filename": "x.png", "file_data": base64.b64encode(PNG).decode()}, 400,
         "input[0].content[1].file_data", "unsupported_file"),
        ({"type": "input_file", "filename": "s.pdf", "file_data": base64.b64encode(make_pdf([[]])).decode()}, 400,
         "input[0].content[1].file_data", "unsupported_file"),
        ({"type": "input_image", "file_id": "file-nope"}, 404, "input[0].content[1].file_id", None),
        ({"type": "input_image", "detail": "auto"}, 400, "input[0].content[1]", "missing_required_parameter"),
    ],
)  # fmt: skip
def test_bad_file_parts_fail_before_anything_runs(
    any_server: RespdServer, fake: FakeUpstream, part: dict[str, Any], status: int, param: str, code: str | None
) -> None:
    before = len(httpx.get(f"{any_server.url}/v1/files").json()["data"])
    body = {"model": "test-model", "input": user({"type": "input_text", "text": "hi"}, part)}
    err = check_error(httpx.post(f"{any_server.url}/v1/responses", json=body), status, param=param, code=code)
    assert fake.requests == [], err  # the model was never asked
    assert len(httpx.get(f"{any_server.url}/v1/files").json()["data"]) == before


def test_unreadable_stored_file_says_why(client: openai.OpenAI, fake: FakeUpstream) -> None:
    f = client.files.create(file=("scan.pdf", make_pdf([[], []])), purpose="user_data")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="test-model", input=user({"type": "input_file", "file_id": f.id}))
    body = caught.value.body
    assert (
        isinstance(body, dict)
        and body["code"] == "unsupported_file"
        and "no extractable text (2 pages)" in body["message"]
    )
    assert fake.requests == []
    client.files.delete(f.id)


# -- file_url, and the context window ------------------------------------------------------------------------
class _Files(http.server.BaseHTTPRequestHandler):
    served: dict[str, tuple[str, bytes]] = {}

    def do_GET(self) -> None:
        if self.path not in self.served:
            self.send_error(404)
            return
        ctype, body = self.served[self.path]
        self.send_response(200)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def file_host() -> Iterator[str]:
    """A local web server with files to fetch (loopback: reachable only where outbound_allow lets it be)."""
    _Files.served = {"/docs/handbook.pdf": ("application/pdf", make_pdf([["Handbook: holidays are 30 days."]])),
                     "/page.html": ("text/html; charset=utf-8", b"<h1>Hello</h1><script>x()</script>")}  # fmt: skip
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    thread.join()
    httpd.server_close()


@pytest.fixture(scope="module")
def fetching(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream, file_host: str) -> Iterator[RespdServer]:
    """A server that fetches file URLs, from the test's web server only; with a model of a 200-token window."""
    tmp = tmp_path_factory.mktemp("respd-fetching")
    port = file_host.rsplit(":", 1)[1]
    extra = f"""fetch_file_urls = true
outbound_allow = ["127.0.0.1:{port}"]

[[models]]
name = "small-model"
backend = "openai"
base_url = "{fake.base_url}"
upstream_model = "fake-upstream-model"
context_window = 200
"""
    server = start_server(tmp, write_config(Path(tmp) / "respd.toml", fake.base_url, extra), f"sqlite:///{tmp / 'db'}")
    yield server
    server.stop()


def test_file_url_is_fetched_when_allowed(fetching: RespdServer, fake: FakeUpstream, file_host: str) -> None:
    with openai.OpenAI(base_url=fetching.url + "/v1", api_key="x", max_retries=0) as client:
        client.responses.create(model="test-model", input=user(
            {"type": "input_file", "file_url": f"{file_host}/docs/handbook.pdf"}))  # fmt: skip
        assert sent_user_text(fake) == '<file name="handbook.pdf">\nHandbook: holidays are 30 days.\n</file>\n'
        client.responses.create(
            model="test-model", input=user({"type": "input_file", "file_url": f"{file_host}/page.html"})
        )
        assert sent_user_text(fake) == '<file name="page.html">\nHello\n</file>\n'


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:1/secret.txt", "not allowed"),  # loopback, on a port outbound_allow does not name
        ("http://169.254.169.254/latest/meta-data", "not allowed"),  # cloud metadata: never
        ("file:///etc/passwd", "only http and https"),
        ("{host}/missing.txt", "HTTP 404"),
    ],
)
def test_file_url_refusals(fetching: RespdServer, fake: FakeUpstream, file_host: str, url: str, says: str) -> None:
    body = {"model": "test-model", "input": user({"type": "input_file", "file_url": url.format(host=file_host)})}
    err = check_error(httpx.post(f"{fetching.url}/v1/responses", json=body), 400, param="input[0].content[0].file_url")
    assert says in err["message"], err
    assert fake.requests == []


def test_file_text_counts_against_the_context_window(fetching: RespdServer, fake: FakeUpstream) -> None:
    long_text = base64.b64encode(("word " * 400).encode()).decode()
    big = {"type": "input_file", "filename": "long.txt", "file_data": "data:text/plain;base64," + long_text}
    body = {"model": "small-model", "input": user(big)}
    check_error(httpx.post(f"{fetching.url}/v1/responses", json=body), 400, code="context_length_exceeded")
    assert fake.requests == []
    # with truncation auto, the old turn carrying the file is dropped and the question fits
    turns = [*user(big), {"role": "assistant", "content": "ok"}, *user({"type": "input_text", "text": "Hi?"})]
    resp = httpx.post(
        f"{fetching.url}/v1/responses", json={"model": "small-model", "input": turns, "truncation": "auto"}
    )
    assert resp.status_code == 200, resp.text
    assert [m["content"] for m in fake.requests[-1]["body"]["messages"]] == ["ok", "Hi?"]


def test_background_response_reads_the_file(any_client: openai.OpenAI, fake: FakeUpstream) -> None:
    f = any_client.files.create(file=("bg.md", b"Background note: the vault opens at 9."), purpose="user_data")
    resp = any_client.responses.create(model="test-model", background=True, input=user(
        {"type": "input_file", "file_id": f.id}, {"type": "input_text", "text": "When?"}))  # fmt: skip
    deadline = time.monotonic() + 20
    while resp.status in ("queued", "in_progress") and time.monotonic() < deadline:
        time.sleep(0.1)
        resp = any_client.responses.retrieve(resp.id)
    assert resp.status == "completed", resp
    assert "the vault opens at 9." in sent_user_text(fake)
    any_client.files.delete(f.id)
