"""A real `mlflow server` or `mlflow ui` on 127.0.0.1, for as long as a `with` block lasts."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from helpers.openai_server import free_port


@contextlib.contextmanager
def serve_mlflow(args, log_path: Path, env=None, timeout: float = 120):
    """`mlflow <args>` (server or ui) with one worker on a free port of 127.0.0.1; yields its URL once
    /health answers, and stops it and its worker processes (its own session) on exit."""
    port = free_port()
    log = open(log_path, "w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), *args, "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"mlflow {args[0]} did not start in {timeout:.0f} s"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
