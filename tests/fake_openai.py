"""A small fake OpenAI-compatible server for tests that need HTTP answers but no engine (engine.shared's client,
engine.server.connect):

    with fake_openai.serving(log_path=tmp / "ev.log", models=["m"]) as url:   # http://127.0.0.1:<port>/v1
        ...

/health answers 200; /v1/models lists `models` (404 when None); /v1/completions echoes the prompt ids + 100 as the
generated ids, after a delay that reverses the finishing order (results must be put back in request order), and
logs one line per request to `log_path`; max_tokens < 0 is answered HTTP 400 with a two-line message.
"""
from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from pathlib import Path
from typing import Iterator, Optional


def completion_response(token_ids, top=None, prompt_lp=None, prompt_ids=(1, 2)) -> dict:
    """A /v1/completions body as vLLM writes it with return_token_ids (one choice)."""
    choice = {"index": 0, "text": "x", "finish_reason": "length", "token_ids": list(token_ids),
              "prompt_token_ids": list(prompt_ids), "prompt_logprobs": prompt_lp,
              "logprobs": None if top is None else {"top_logprobs": top, "tokens": [], "token_logprobs": []}}
    return {"choices": [choice]}


class FakeOpenAI(http.server.BaseHTTPRequestHandler):
    log_path: Path
    models: Optional[list[str]] = None

    def log_message(self, *a):  # quiet
        pass

    def _send(self, code: int, out: bytes = b"") -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self):
        if self.path == "/health":
            self._send(200)
        elif self.path == "/v1/models" and self.models is not None:
            self._send(200, json.dumps({"object": "list", "data": [{"id": m, "object": "model"}
                                                                   for m in self.models]}).encode())
        else:
            self._send(404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body.get("max_tokens", 0) < 0:
            self._send(400, json.dumps({"error": {"message": "max_tokens must be at least 0\nsecond line"}}).encode())
            return
        ids = body["prompt"]
        time.sleep(0.05 * (5 - len(ids)) if len(ids) < 5 else 0)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(f"POST /v1/completions {len(ids)} tokens\n")
        gen = [i + 100 for i in ids][: body["max_tokens"]]
        top = [{f"token_id:{t}": -0.5} for t in gen] if body.get("logprobs") else None
        plp = None
        if body.get("prompt_logprobs") is not None:  # the prompt's own token and token 0, per position
            plp = [None] + [{str(t): {"logprob": -1.0, "rank": 1}, "0": {"logprob": -2.0, "rank": 2}} for t in ids[1:]]
        self._send(200, json.dumps(completion_response(gen, top=top, prompt_lp=plp, prompt_ids=ids)).encode())


@contextlib.contextmanager
def serving(log_path: Path, models: Optional[list[str]] = None) -> Iterator[str]:
    """The fake server on a free port in a thread; yields its base URL (.../v1); shut down at the end."""
    handler = type("H", (FakeOpenAI,), {"log_path": Path(log_path), "models": models})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()
