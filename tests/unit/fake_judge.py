"""A scripted OpenAI-compatible chat endpoint on a local port, for tests of the judge (real HTTP)."""

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (request number from 1, request body) -> (HTTP status, reply body, seconds to wait first)
Script = Callable[[int, dict], tuple[int, Any, float]]


def chat(content: str | None) -> dict:
    """A chat completion whose message is `content`."""
    message = {"role": "assistant", "content": content}
    return {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}


class FakeJudge:
    """A chat completions endpoint whose replies a test scripts; it records every request."""

    def __init__(self) -> None:
        self.script: Script = lambda n, body: (200, chat('{"score": 10}'), 0.0)
        self.requests: list[tuple[dict, dict]] = []  # (headers, body)
        self.in_flight = self.max_in_flight = 0
        lock = threading.Lock()
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    judge.requests.append((dict(self.headers), body))
                    number = len(judge.requests)
                    judge.in_flight += 1
                    judge.max_in_flight = max(judge.max_in_flight, judge.in_flight)
                try:
                    assert self.path == "/v1/chat/completions", self.path
                    status, reply, delay = judge.script(number, body)
                    time.sleep(delay)
                    data = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a slow reply
                finally:
                    with lock:
                        judge.in_flight -= 1

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        serve = lambda: self.server.serve_forever(poll_interval=0.01)
        threading.Thread(target=serve, daemon=True).start()

    def reply(self, content: str | None) -> None:
        self.script = lambda n, body: (200, chat(content), 0.0)

    def prompt(self, number: int = 0) -> str:
        """Everything the judge model was shown in request `number`."""
        return "\n".join(m["content"] for m in self.requests[number][1]["messages"])
