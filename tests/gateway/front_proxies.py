"""What the front-proxy tests share (nginx, Caddy): spoofed headers, starting and stopping."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

START_TIMEOUT = 10.0

# Identity headers a client might send, hoping they reach the application.
SPOOFED = {
    "X-Bascule-User": "00000000-0000-0000-0000-000000000000",
    "X-Bascule-Email": "mallory@evil.test",
    "X-Bascule-Org": "demo",
    "X-Bascule-Permissions": "billing.manage settings.manage",
    "X-Bascule-Assertion": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0.",
}


def wait_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Until ``port`` accepts connections; fails with the end of ``log`` if the server exits."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text(errors="replace") if log.exists() else "(no log)"
            raise AssertionError(f"{process.args!r} exited ({process.returncode}):\n{text[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port} after {START_TIMEOUT:.0f}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
