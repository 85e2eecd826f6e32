"""A minimal OpenAI-compatible chat server on loopback, for the ``openai`` answerer tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def fake_openai(reply: str, *, delay_s: float = 0.0, status: int = 200) -> Iterator[dict[str, Any]]:
    """Serve ``reply`` for every chat completion; yields ``{"url": ..., "requests": [...]}``."""
    state: dict[str, Any] = {"requests": [], "reply": reply}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["requests"].append(
                {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
            )
            if delay_s:
                time.sleep(delay_s)
            if status != 200:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"error": {"message": "backend exploded"}}).encode())
                return
            text = state["reply"]
            base = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
            if body.get("stream"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                words = text.split(" ")
                for i, word in enumerate(words):
                    piece = word if i == 0 else " " + word
                    chunk = dict(
                        base, choices=[{"index": 0, "delta": {"content": piece}, "finish_reason": None}]
                    )
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                end = dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
                self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
                return
            full = {
                "id": "c1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
            payload = json.dumps(full).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
