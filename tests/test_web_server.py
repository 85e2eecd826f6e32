"""The served chat in-process (fake embeddings, no browser): binding and basic auth."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.web.app import build_ui
from rag.web.server import serve_chat as serve
from tests.conftest import make_settings
from tests.fakes import build_fake_assistant, write_corpus

pytestmark = pytest.mark.integration

QUESTION = "What policy is an immense failure?"


def healthcheck(port: int) -> int:
    """The exit status of the image's HEALTHCHECK command against ``port``."""
    script = Path(__file__).resolve().parent.parent / "deploy" / "healthcheck.py"
    env = {**os.environ, "RAG_PORT": str(port)}
    return subprocess.run([sys.executable, str(script)], env=env, timeout=30, check=False).returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    write_corpus(tmp_path / "corpus")
    settings = make_settings(tmp_path, port=free_port(), auth=["ann:s3cret"], concurrency=2)
    demo = build_ui(build_fake_assistant(settings), settings)
    serve(demo, settings, block=False)
    try:
        yield f"http://127.0.0.1:{settings.port}", demo
    finally:
        demo.close()


def test_binds_loopback_and_requires_sign_in(served: tuple[str, Any]) -> None:
    from gradio_client import Client

    url, demo = served
    assert demo.server_name == "127.0.0.1"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url + "/config", timeout=10)
    assert refused.value.code == 401
    with pytest.raises(Exception):  # noqa: B017 - gradio_client raises different types per version
        Client(url, auth=("ann", "wrong"), verbose=False)
    client = Client(url, auth=("ann", "s3cret"), verbose=False)
    assert "immense failure" in client.predict(question=QUESTION, api_name="/ask")["answer"]
    assert demo._queue.default_concurrency_limit == 2


def test_one_server_holds_the_chat_and_the_http_api(tmp_path: Path) -> None:
    """``launch``'s composition on a real port: the Gradio chat (and its ``/ask`` for
    gradio_client) and ``/api/ask`` (HTTP Basic, JSON and server-sent events) side by side."""
    import base64
    import json

    from gradio_client import Client

    from rag.web.server import build_server
    from rag.web.server import serve as run

    write_corpus(tmp_path / "corpus")
    settings = make_settings(tmp_path, port=free_port(), auth=["ann:s3cret"])
    handle = run(build_server(settings, build_fake_assistant(settings)), settings, block=False)
    try:
        url = handle.url.rstrip("/")
        assert url == f"http://127.0.0.1:{settings.port}"
        client = Client(url, auth=("ann", "s3cret"), verbose=False)
        via_gradio = client.predict(question=QUESTION, api_name="/ask")

        def post(accept: str) -> Any:
            request = urllib.request.Request(
                url + "/api/ask",
                data=json.dumps({"question": QUESTION}).encode(),
                headers={
                    "Content-Type": "application/json",
                    "Accept": accept,
                    "Authorization": "Basic " + base64.b64encode(b"ann:s3cret").decode(),
                },
            )
            return urllib.request.urlopen(request, timeout=30)

        with post("application/json") as response:
            via_http = json.loads(response.read())
        with post("text/event-stream") as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            stream = response.read().decode()
        assert via_http["answer"] == via_gradio["answer"] and "immense failure" in via_http["answer"]
        assert stream.startswith("event: delta") and f'"answer": {json.dumps(via_http["answer"])}' in stream
        with urllib.request.urlopen(url + "/readyz", timeout=10) as ready:
            assert json.loads(ready.read())["status"] == "ready"
        # The container's HEALTHCHECK asks /readyz, open to probes although the chat wants a sign-in.
        assert healthcheck(settings.port) == 0
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "/config", timeout=10)
        assert refused.value.code == 401
    finally:
        handle.close()
    assert healthcheck(settings.port) == 1  # nothing listens any more
