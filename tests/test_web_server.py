"""The served chat in-process (fake embeddings, no browser): binding and basic auth."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.web.app import build_ui, serve
from tests.conftest import make_settings
from tests.fakes import build_fake_assistant, write_corpus

pytestmark = pytest.mark.integration

QUESTION = "What policy is an immense failure?"


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
