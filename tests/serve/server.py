"""A real ``cnnkit serve`` for tests: a process on a free loopback port, and a plain client.

The server is started as users start it (``python -m cnnkit serve ... --port 0``)
and its port read from the line it writes on stderr; requests go through
http.client, the standard library's HTTP client, over loopback only.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 90


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Served:
    """A ``cnnkit serve`` process: its port, and its stderr as it comes (a thread drains it)."""

    proc: subprocess.Popen
    port: int
    key: str | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        key: str | None = "default",
        timeout: float = 30,
    ) -> Answer:
        """One request on a connection of its own; ``key``: the API key sent ("default": ours)."""
        headers = dict(headers or {})
        key = self.key if key == "default" else key
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body, headers)
            response = conn.getresponse()
            return Answer(response.status, dict(response.getheaders()), response.read())
        finally:
            conn.close()

    def post_image(self, path: str, data: bytes, **kwargs: Any) -> Answer:
        return self.request("POST", path, data, {"Content-Type": "image/png"}, **kwargs)

    def post_form(self, path: str, files: list[tuple[str, bytes]], **kwargs: Any) -> Answer:
        body, content_type = form(files)
        return self.request("POST", path, body, {"Content-Type": content_type}, **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send ``sig`` and wait for the exit status (killed after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def start(
    model: str | Path, *options: str, env: dict[str, str] | None = None, key: str | None = None
) -> Served:
    """``cnnkit serve MODEL --port 0 OPTIONS`` started; returns once it says its port."""
    args = [sys.executable, "-m", "cnnkit", "serve", str(model), "--port", "0", *options]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    if key is not None:
        env["CNNKIT_API_KEY"] = key
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    found = threading.Event()

    def drain() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if " at http://127.0.0.1:" in line:
                found.set()
        found.set()  # the process ended

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not found.wait(0.1):
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("cnnkit serve did not start:\n" + "".join(lines))
    ports = re.findall(r" at http://127\.0\.0\.1:(\d+)/", "".join(lines))
    if not ports:
        proc.wait(10)
        raise AssertionError(f"cnnkit serve exited {proc.returncode}:\n" + "".join(lines))
    return Served(proc, int(ports[0]), key, lines)


def form(files: list[tuple[str, bytes]], field_name: str = "image") -> tuple[bytes, str]:
    """A multipart/form-data body with one file field per (file name, bytes), and its type."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, data in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; '
            f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
