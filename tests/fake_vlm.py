"""An OpenAI-compatible chat server on 127.0.0.1 for tests (the VLM client, captioners and the judge)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = "A striped disc\n rolls   to the right."


class FakeServer:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1. `plan` holds the next answers, in order:
    ("answer", text), ("status", code, body[, headers]), ("raw", bytes), ("sleep", seconds); when it is empty the
    server answers `ANSWER`. Every request is kept in `requests` as {"path", "headers", "body"}."""

    def __init__(self):
        self.plan: list[tuple] = []
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                action = fake.plan.pop(0) if fake.plan else ("answer", ANSWER)
                try:
                    self.respond(action)
                except OSError:  # the client gave up (timeout test)
                    pass

            def respond(self, action):
                kind = action[0]
                if kind == "sleep":
                    time.sleep(action[1])
                    action = ("answer", ANSWER)
                if action[0] == "answer":
                    payload = json.dumps({"id": "x", "object": "chat.completion", "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": action[1]},
                         "finish_reason": "stop"}]}).encode()
                    self.send(200, payload)
                elif action[0] == "status":
                    self.send(action[1], action[2].encode(), **(action[3] if len(action) > 3 else {}))
                else:
                    self.send(200, action[1])

            def send(self, code, payload, **headers):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda *args: None
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
