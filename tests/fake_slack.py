"""A local stand-in for Slack: the Web API over HTTP and the Socket Mode websocket, both on
127.0.0.1, recording what the bot sends (see ../shared/docs/testing-recipes.md)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlparse

BOT_USER = "UBOT"
BOT_ID = "BBOT"
TEAM = "T1"


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    headers: dict[str, str] = field(repr=False)
    response: dict[str, Any] = field(default_factory=dict, repr=False)


class FakeSlackAPI:
    """Records every Web API call; answers like Slack does for the methods the bot uses.

    ``threads[(channel, thread_ts)]`` are the messages ``conversations.replies`` returns;
    ``fail[method] = "error"`` makes that method answer ``{"ok": false, "error": ...}``.
    The assistant-thread calls (``assistant.threads.setStatus``/``setTitle``/
    ``setSuggestedPrompts``) and the streaming calls (``chat.startStream``/``appendStream``/
    ``stopStream``) are recorded like the others; ``streamed(ts)`` is the text a stream received.
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.threads: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.fail: dict[str, str] = {}
        self.socket_url = "ws://127.0.0.1:9/link"
        self._cond = threading.Condition()
        self._ts = itertools.count(1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._handle(b"")

            def do_POST(self) -> None:
                self._handle(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def _handle(self, raw: bytes) -> None:
                url = urlparse(self.path)
                method = url.path.rsplit("/", 1)[-1]
                params: dict[str, Any] = dict(parse_qsl(url.query))
                if raw:
                    if "json" in (self.headers.get("Content-Type") or ""):
                        params.update(json.loads(raw))
                    else:
                        params.update(parse_qsl(raw.decode()))
                for key in ("blocks", "attachments", "prompts", "chunks"):
                    if isinstance(params.get(key), str):
                        params[key] = json.loads(params[key])
                body = json.dumps(fake.respond(method, params, dict(self.headers))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/api/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeSlackAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self._cond:
            self.calls.clear()
        self.threads.clear()
        self.fail.clear()

    def respond(self, method: str, params: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        call = Call(method, params, headers)
        call.response = self._answer(method, params)
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()
        return call.response

    def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method in self.fail:
            return {"ok": False, "error": self.fail[method]}
        if method == "auth.test":
            return {"ok": True, "user_id": BOT_USER, "bot_id": BOT_ID, "team_id": TEAM, "user": "rag"}
        if method in ("chat.postMessage", "chat.startStream"):
            ts = f"{int(time.time())}.{next(self._ts):06d}"
            return {"ok": True, "channel": params.get("channel"), "ts": ts}
        if method in ("chat.update", "chat.appendStream", "chat.stopStream"):
            return {"ok": True, "channel": params.get("channel"), "ts": params.get("ts")}
        if method == "apps.connections.open":
            return {"ok": True, "url": self.socket_url}
        if method == "conversations.replies":
            return {
                "ok": True,
                "messages": self.threads.get((params["channel"], params["ts"]), []),
                "has_more": False,
            }
        return {"ok": True}

    def streamed(self, ts: str) -> str:
        """The markdown the stream ``ts`` received, in order (start, appends, stop)."""
        text = ""
        with self._cond:
            for c in self.calls:
                if c.method in ("chat.startStream", "chat.appendStream", "chat.stopStream"):
                    if (c.response.get("ts") if c.method == "chat.startStream" else c.params.get("ts")) != ts:
                        continue
                    text += c.params.get("markdown_text") or ""
                    for chunk in c.params.get("chunks") or []:
                        text += chunk.get("text") or ""
        return text

    def calls_to(self, method: str) -> list[Call]:
        with self._cond:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 30.0) -> list[Call]:
        """The calls to ``method`` once there are ``count`` of them (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len([c for c in self.calls if c.method == method]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [c.method for c in self.calls]
                    raise AssertionError(f"expected {count} {method} call(s) within {timeout}s; saw {seen}")
                self._cond.wait(left)
            return [c for c in self.calls if c.method == method]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"condition not met within {timeout}s; calls: {[c.method for c in self.calls]}"
                    )
                self._cond.wait(left)


class FakeSocketMode:
    """A Socket Mode endpoint: says hello to each connection, sends queued envelopes, keeps acks."""

    def __init__(self) -> None:
        from websockets.sync.server import serve

        self.envelopes: queue.Queue[dict[str, Any]] = queue.Queue()
        self.acks: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self._stop = threading.Event()
        self.server = serve(self._serve, "127.0.0.1", 0)
        self.port = self.server.socket.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/link"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _serve(self, ws: Any) -> None:
        ws.send(json.dumps({"type": "hello", "num_connections": 1, "debug_info": {"host": "fake"}}))
        self.connected.set()
        while not self._stop.is_set():
            try:
                envelope = self.envelopes.get_nowait()
            except queue.Empty:
                pass
            else:
                ws.send(json.dumps(envelope))
            try:
                message = ws.recv(timeout=0.05)
            except TimeoutError:
                continue
            except Exception:  # noqa: BLE001 - the client went away
                return
            self.acks.append(json.loads(message))

    def send_event(self, envelope_id: str, event_callback: dict[str, Any], retry_attempt: int = 0) -> None:
        self.envelopes.put(
            {
                "envelope_id": envelope_id,
                "type": "events_api",
                "accepts_response_payload": False,
                "retry_attempt": retry_attempt,
                "retry_reason": "timeout" if retry_attempt else "",
                "payload": event_callback,
            }
        )

    def start(self) -> FakeSocketMode:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack puts on an Events API request: timestamp and v0 HMAC-SHA256 signature."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/json",
    }


_event_ids = itertools.count(1)


def event_callback(event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    """Wrap an event the way the Events API delivers it."""
    return {
        "token": "legacy-verification-token",
        "team_id": TEAM,
        "api_app_id": "A1",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_event_ids):08d}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
    }


_message_ts = itertools.count(1)


def next_ts() -> str:
    return f"{1_700_000_000 + next(_message_ts)}.000100"


def mention(
    text: str, *, channel: str = "C1", user: str = "U1", thread_ts: str | None = None, ts: str | None = None
) -> dict[str, Any]:
    event = {
        "type": "app_mention",
        "user": user,
        "text": f"<@{BOT_USER}> {text}",
        "channel": channel,
        "ts": ts or next_ts(),
        "event_ts": "0",
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def direct_message(
    text: str, *, channel: str = "D1", user: str = "U1", thread_ts: str | None = None, **extra: Any
) -> dict[str, Any]:
    event = {
        "type": "message",
        "channel_type": "im",
        "user": user,
        "text": text,
        "channel": channel,
        "ts": next_ts(),
        **extra,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event
