"""A Hugging Face Hub stand-in on 127.0.0.1 for tests and offline demos: it speaks the `resolve`
protocol `huggingface_hub.hf_hub_download` uses (HEAD for ETag / X-Repo-Commit / Content-Length,
then GET, with Range) and serves safetensors files of timm models with random weights.

    with HubServer({"timm/test_vit.r160_in1k": random_weights("test_vit")}) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp / "hf")}  # read at import: use a subprocess
"""
from __future__ import annotations

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<file>.+)$")


def random_weights(arch: str, seed: int = 0) -> bytes:
    """A timm model's state dict with random weights, as safetensors bytes."""
    import timm
    import torch
    from safetensors.torch import save

    torch.manual_seed(seed)
    model = timm.create_model(arch)
    return save({key: value.contiguous() for key, value in model.state_dict().items()})


class HubServer:
    """`repos`: {repo: bytes of model.safetensors} (or {repo: {file: bytes}}). `corrupt`: repos whose
    bytes do not match the SHA-256 their ETag announces. `requests` records (method, path)."""

    def __init__(self, repos: dict, corrupt: set[str] = frozenset()) -> None:
        self.files = {}
        for repo, content in repos.items():
            for name, data in (content.items() if isinstance(content, dict) else [("model.safetensors", content)]):
                self.files[(repo, name)] = data
        self.corrupt = set(corrupt)
        self.requests: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                match = RESOLVE.match(self.path.split("?")[0])
                data = hub.files.get((match["repo"], match["file"])) if match else None
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                etag = hashlib.sha256(data).hexdigest()
                if match["repo"] in hub.corrupt:
                    data = data[:-1] + bytes([data[-1] ^ 0xFF])
                start = int(re.match(r"bytes=(\d+)-", self.headers.get("Range", "bytes=0-"))[1])
                self.send_response(206 if start else 200)
                self.send_header("ETag", f'"{etag}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if body:
                    self.wfile.write(data[start:])

        return Handler
