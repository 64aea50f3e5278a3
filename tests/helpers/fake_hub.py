"""A fake Hugging Face hub on 127.0.0.1: the model-info API (`/api/models/<id>/revision/<rev>`) with
the commit sha of each (id, revision) it knows, 404 for the rest; it records every path asked."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Tuple
from urllib.parse import unquote


class FakeHub:
    def __init__(self, shas: Dict[Tuple[str, str], str]):
        self.shas = shas
        self.asked: List[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                hub.asked.append(self.path)
                prefix = "/api/models/"
                repo, _, rev = self.path[len(prefix):].partition("/revision/") if self.path.startswith(prefix) \
                    else ("", "", "")
                sha = hub.shas.get((repo, unquote(rev)))
                body = json.dumps({"id": repo, "sha": sha} if sha else {"error": "Repository not found"}).encode()
                self.send_response(200 if sha else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def closed_port_url() -> str:
    """http://127.0.0.1:<a port nobody listens on>: a hub that refuses every connection at once."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
