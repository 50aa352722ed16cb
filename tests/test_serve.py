"""`folio serve` as a real process on loopback, over a sqlite registry holding two versions of a
tiny GPT built here (tests/serving.py), driven by real clients: the official `openai` package
(plain and streamed, strict response validation), curl (server-sent events byte for byte), and
plain HTTP for everything else. Covered: /v1/models and /health; the same seed giving the same
text streamed or not; stop strings; OpenAI error bodies with their status for each bad request
(malformed JSON, unknown field, bad values, a prompt too long or with characters the tokenizer
lacks, an unknown model); the API key; requests decoded in one batch, the queue bound (429 with
Retry-After) and clients that go away cancelling their generation; a second version named by a
request; the served alias followed when it moves (requests in flight finish on the old version)
and a registry outage survived (MLflow's REST server in this process, stopped and restarted);
and each start-up fault as one line and exit status 1."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from tests.servers import free_port, tracking_at
from tests.serving import (API_KEY, BLOCK_SIZE, NAME, RestRegistry, build_registry, folio_serve, move_champion,
                           request, wait_for)

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    return build_registry(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def rest(reg):
    """The registry over HTTP (MLflow's REST server in this process), so that a test can take it away."""
    server = RestRegistry(reg.uri)
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def served(reg, rest):
    """(URL, log) of `folio serve models:/folio-serve@champion` (version 1 until the last test moves
    it), polling the registry every 0.5 s, behind an API key; a batch of 4 rows and 2 waiting
    requests at most."""
    args = [f"models:/{NAME}@champion", "--api-key", API_KEY, "--max-batch", "4", "--max-queue", "2",
            "--poll-seconds", "0.5", "--threads", "1"]
    with folio_serve(args, reg.root, rest.url) as (url, log):
        yield url, log


@pytest.fixture
def server(served):
    return served[0]


def _client(url: str, strict: bool = True):
    """The official client; strict: every response checked against the SDK's types. Streamed
    chunks carry `finish_reason: null` until the last, as OpenAI's own API sends them, which the
    SDK's types (generated from the spec) do not allow: stream with strict=False, as by default."""
    return openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, _strict_response_validation=strict)


def test_openai_client_lists_completes_and_streams(server):
    client = _client(server)
    assert [m.id for m in client.models.list().data] == [f"{NAME}/1"]
    settings = dict(model=f"{NAME}/1", prompt="ROMEO:", max_tokens=20, temperature=0.9, seed=7)
    first = client.completions.create(**settings)
    assert first.object == "text_completion" and first.model == f"{NAME}/1"
    assert first.choices[0].finish_reason == "length" and len(first.choices[0].text) == 20  # a char model
    assert first.usage.prompt_tokens == 6 and first.usage.completion_tokens == 20
    assert client.completions.create(**settings).choices[0].text == first.choices[0].text  # same seed

    streamed = _client(server, strict=False).completions.create(**settings, stream=True,
                                                                 stream_options={"include_usage": True})
    chunks = list(streamed)
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert len(texts) > 1 and "".join(texts) == first.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20

    stopped = client.completions.create(model=f"{NAME}/1", prompt="ROMEO:", max_tokens=200, seed=1,
                                        stop=["\n", "J"], n=2)
    assert [c.index for c in stopped.choices] == [0, 1]
    for c in stopped.choices:
        assert "\n" not in c.text and "J" not in c.text
        assert c.finish_reason == "stop" or len(c.text) == 200


def test_curl_streams_server_sent_events(server):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    body = json.dumps({"model": f"{NAME}/1", "prompt": "JULIET:", "max_tokens": 8, "seed": 2, "stream": True})
    out = subprocess.run(["curl", "-sN", "--max-time", "30", f"{server}/v1/completions", "-H",
                          "Content-Type: application/json", "-H", f"Authorization: Bearer {API_KEY}", "-d", body],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.endswith("data: [DONE]\n\n")
    events = out.split("\n\n")[:-1]
    assert all(e.startswith("data: ") and "\n" not in e for e in events)
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * (len(chunks) - 1) + ["length"]
    assert len("".join(c["choices"][0]["text"] for c in chunks)) == 8


BAD_REQUESTS = [
    ("malformed JSON", b'{"prompt": "ROMEO:", ', 400, None, "not valid JSON"),
    ("not an object", b'["ROMEO:"]', 400, None, "JSON object"),
    ("unknown field", {"prompt": "x", "max_token": 5}, 400, "max_token", "unknown parameter"),
    ("no prompt", {"max_tokens": 5}, 400, "prompt", "required"),
    ("empty prompt", {"prompt": ""}, 400, "prompt", "non-empty"),
    ("negative max_tokens", {"prompt": "x", "max_tokens": -1}, 400, "max_tokens", "greater than or equal to 1"),
    ("huge max_tokens", {"prompt": "x", "max_tokens": 10**9}, 400, "max_tokens", "less than or equal to 4096"),
    ("temperature not a number", {"prompt": "x", "temperature": "hot"}, 400, "temperature", "valid number"),
    ("temperature too high", {"prompt": "x", "temperature": 9}, 400, "temperature", "less than or equal to 2"),
    ("top_p zero", {"prompt": "x", "top_p": 0}, 400, "top_p", "greater than 0"),
    ("logprobs", {"prompt": "x", "logprobs": 3}, 400, "logprobs", "None"),
    ("too many stops", {"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "at most 4"),
    ("prompt too long", {"prompt": "ROMEO: " * 10}, 400, "prompt", "longer than the model's window of 32"),
    ("unencodable prompt", {"prompt": "ROMEO: ☃"}, 400, "prompt", "☃"),
    ("unknown model", {"prompt": "x", "model": "other-model/1"}, 404, "model", "not other-model"),
    ("missing version", {"prompt": "x", "model": "9"}, 404, "model", "no version 9"),
]


@pytest.mark.parametrize("body, status, param, words", [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_requests_get_an_openai_error_body(server, body, status, param, words):
    raw = body if isinstance(body, bytes) else None
    got, _headers, answer = request(f"{server}/v1/completions", None if raw else body, API_KEY, raw=raw)
    assert got == status, answer
    error = answer["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param
    assert words in error["message"] and "\n" not in error["message"], error["message"]


def test_the_openai_client_raises_the_servers_message(server):
    with pytest.raises(openai.BadRequestError, match="longer than the model's window"):
        _client(server).completions.create(model=f"{NAME}/1", prompt="x" * (BLOCK_SIZE + 1))


def test_v1_needs_the_api_key_and_health_does_not(server):
    assert request(f"{server}/health")[0] == 200
    for key in (None, "wrong"):
        status, _headers, answer = request(f"{server}/v1/models", key=key)
        assert status == 401 and answer["error"]["code"] == "invalid_api_key"
    assert request(f"{server}/v1/models", key=API_KEY)[0] == 200


def _open_stream(url: str, max_tokens: int, model: str | None = f"{NAME}/1"):
    body = json.dumps({"model": model, "prompt": "ROMEO:", "max_tokens": max_tokens, "stream": True}).encode()
    req = urllib.request.Request(f"{url}/v1/completions", data=body, headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"})
    return urllib.request.urlopen(req, timeout=30)  # returns once the headers are in


def test_requests_share_a_batch_the_queue_is_bounded_and_a_client_that_leaves_stops(server):
    before = request(f"{server}/health")[2]
    assert before["active"] == 0 and before["waiting"] == 0
    streams = [_open_stream(server, 4096) for _ in range(4)]  # the batch's 4 rows
    for s in streams:
        assert s.readline().startswith(b"data: ")  # each is generating
    assert request(f"{server}/health")[2]["active"] == 4  # decoded together, one batch
    streams += [_open_stream(server, 4096) for _ in range(2)]  # the 2 the queue holds
    assert request(f"{server}/health")[2]["waiting"] == 2
    with pytest.raises(urllib.error.HTTPError) as refused:
        _open_stream(server, 4096)
    assert refused.value.code == 429 and refused.value.headers["Retry-After"] == "1"
    assert json.loads(refused.value.read())["error"]["code"] == "rate_limit_exceeded"
    for s in streams:
        s.close()  # the clients go away long before 4096 tokens
    after = wait_for(lambda: (h := request(f"{server}/health")[2])["active"] == h["waiting"] == 0 and h,
                     30, "the abandoned requests to leave the batch")
    assert after["cancelled"] - before["cancelled"] == 6
    text = _client(server).completions.create(model=f"{NAME}/1", prompt="ROMEO:", max_tokens=5).choices[0].text
    assert len(text) == 5  # and the server goes on


def test_concurrent_clients_all_get_their_completions(server):
    client = _client(server)

    def one(seed: int) -> str:
        return client.completions.create(model=f"{NAME}/1", prompt="ROMEO:", max_tokens=30, seed=seed).choices[0].text

    alone = one(11)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(one, [11, 12, 13, 14]))
    assert all(len(t) == 30 for t in together) and together[0] == alone  # the seed, whoever shares the batch


def test_a_request_may_name_a_second_version(server):
    client = _client(server)
    settings = dict(prompt="ROMEO:", max_tokens=16, seed=5)
    second = client.completions.create(model="2", **settings)
    assert second.model == f"{NAME}/2"
    assert client.completions.create(model=f"models:/{NAME}/2", **settings).choices[0].text == second.choices[0].text
    assert client.completions.create(model=f"{NAME}/1", **settings).choices[0].text != second.choices[0].text
    listed = {m["id"]: m for m in request(f"{server}/v1/models", key=API_KEY)[2]["data"]}
    assert set(listed) == {f"{NAME}/1", f"{NAME}/2"} and listed[f"{NAME}/1"]["aliases"] == ["champion"]
    choices = request(f"{server}/v1/playground/versions", key=API_KEY)[2]["choices"]
    assert [c["label"] for c in choices] == ["version 2", "version 1 @champion"]


def test_start_up_faults_are_one_line_and_exit_1(reg, tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    cases = [
        ([f"models:/{NAME}@champion"], f"http://127.0.0.1:{free_port()}", "does not answer"),
        ([f"models:/{NAME}@nope"], reg.uri, "has no version with alias @nope"),
        ([f"models:/{NAME}/9"], reg.uri, "has no version 9"),
        ([f"models:/{NAME}/1", "--port", str(taken.getsockname()[1])], reg.uri, "is in use"),
        ([str(tmp_path / "bad.pt"), "--tokenizer", str(reg.tokenizer_dir)], reg.uri, "is not a readable checkpoint"),
        ([f"models:/{NAME}/1", "--host", "0.0.0.0"], reg.uri, "give it an API key"),
    ]
    try:
        for args, uri, words in cases:
            port = [] if "--port" in args else ["--port", str(free_port())]
            with contextlib.chdir(reg.root), tracking_at(uri):
                result = CliRunner().invoke(app, ["serve", *args, *port], env={"FOLIO_API_KEY": ""})
            lines = result.stderr.strip().splitlines()
            assert result.exit_code == 1 and len(lines) == 1, (args, result.stderr, result.exception)
            assert lines[0].startswith("error: serve: ") and words in lines[0], (args, lines[0])
    finally:
        taken.close()


def test_it_follows_the_alias_and_keeps_serving_through_a_registry_outage(reg, rest, served):
    """Last in this file: it moves @champion."""
    url, log = served
    models = lambda: [m["id"] for m in request(f"{url}/v1/models", key=API_KEY)[2]["data"]]  # noqa: E731
    complete = lambda: request(f"{url}/v1/completions", {"prompt": "ROMEO:", "max_tokens": 4}, API_KEY)[2]  # noqa: E731
    assert models()[0] == f"{NAME}/1"
    in_flight, events, ended = _open_stream(url, 4096, model=None), [], []

    def read_in_flight():
        for line in in_flight:
            if line.startswith(b"data: "):
                events.append(line.decode().removeprefix("data: ").strip())
        ended.append(time.monotonic())

    reader = threading.Thread(target=read_in_flight)
    reader.start()
    wait_for(lambda: events, 30, "the first event of the request in flight")
    move_champion(reg, 2)
    wait_for(lambda: models()[0] == f"{NAME}/2", 30, "the server to switch to version 2")
    switched = time.monotonic()
    assert "switched folio-serve@champion from version 1 to version 2" in log.read_text()
    assert complete()["model"] == f"{NAME}/2"
    reader.join(60)
    assert ended and ended[0] > switched, "the request in flight ended before the switch: make it longer"
    assert events[-1] == "[DONE]"  # it ended on version 1, where it started
    last = json.loads(events[-2])
    assert last["model"] == f"{NAME}/1" and last["choices"][0]["finish_reason"] == "length"

    rest.stop()
    wait_for(lambda: "does not answer" in log.read_text(), 30, "a warning about the registry")
    answer = complete()
    assert answer["model"] == f"{NAME}/2" and len(answer["choices"][0]["text"]) == 4  # still serving
    move_champion(reg, 1)  # while the registry is out of the server's reach
    rest.start()
    wait_for(lambda: models()[0] == f"{NAME}/1", 30, "the switch back once the registry answers")
    warnings = [line for line in log.read_text().splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, warnings  # one warning for the whole outage
    assert "registry answers again" in log.read_text()
