"""``cnnkit serve`` against in-process ``Classifier.predict`` on the same images, in one run.

lenet5 (random weights, 1×32×32, 10 classes) and 256 distinct 32×32 RGB PNGs;
the server is ``python -m cnnkit serve`` on a free loopback port, and the
clients are keep-alive HTTP/1.1 connections on one asyncio loop in this
process (each request: one PNG as the raw body of ``POST /v1/predict``).

1. throughput: 16 concurrent clients, images/s, against
   ``cnnkit.load(CKPT).predict(paths)`` over 1,000 of the files (best of
   3; goal: at least 0.6x), with the clients' p50 and p99 latency and the
   mean batch the server's model calls held: one image a request (a raw
   body), then ``--per-request`` images a request (a multipart form);
2. latency: 1 client, p50, against one in-process ``predict(path)`` (p50 of
   200) + 5 ms (goal: at most 2x);
3. soak: 16 clients for ``--duration`` seconds (default 60): requests that
   failed or answered a wrong record (goal: none), and the server's RSS at
   the start, its largest and at the end (goal: flat).

Every answer is checked against the in-process record of its image. Run:
``python benchmarks/bench_serve.py [--duration S] [--clients N] [--per-request N]
[--max-wait-ms T] [--workers N] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import make_checkpoint  # noqa: E402  (a random-weight checkpoint)

GOAL_THROUGHPUT = 0.6
GOAL_LATENCY = 2.0
LATENCY_ALLOWANCE_S = 0.005
N_IMAGES = 256


def make_images(folder: Path, n: int) -> list[Path]:
    import cv2

    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"{i:04d}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        paths.append(path)
    return paths


class Server:
    """``cnnkit serve`` in a process of its own; its port from the line it writes on stderr."""

    def __init__(self, ckpt: Path, options: list[str]) -> None:
        args = [sys.executable, "-m", "cnnkit", "serve", str(ckpt), "--port", "0", *options]
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        found = threading.Event()

        def drain() -> None:
            for line in self.proc.stderr:  # type: ignore[union-attr]
                self.lines.append(line)
                if " at http://" in line:
                    found.set()
            found.set()

        threading.Thread(target=drain, daemon=True).start()
        found.wait(120)
        ports = re.findall(r" at http://127\.0\.0\.1:(\d+)/", "".join(self.lines))
        if not ports:
            self.proc.kill()
            raise SystemExit("cnnkit serve did not start:\n" + "".join(self.lines))
        self.port = int(ports[0])

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stats(self) -> dict:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/stats") as answer:
            return json.loads(answer.read())

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(60)


Body = tuple[bytes, str, object, int]  # bytes, content type, the answer expected, images
HEALTH: Body = (b"", "", {"status": "ok"}, 0)  # GET /healthz: the HTTP stack's own cost


def raw_bodies(paths: list[Path], records: list[dict]) -> list[Body]:
    # The server records a raw body as "-", as predict records stdin.
    return [
        (p.read_bytes(), "image/png", {**r, "path": "-"}, 1)
        for p, r in zip(paths, records, strict=True)
    ]


def form_bodies(paths: list[Path], records: list[dict], per: int) -> list[Body]:
    """Forms of ``per`` images each (their records named by their file names)."""
    out = []
    for start in range(0, len(paths) - per + 1, per):
        boundary = f"bench{start}"
        parts, want = [], []
        for p, r in zip(paths[start : start + per], records[start : start + per], strict=True):
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
                f'filename="{p.name}"\r\nContent-Type: image/png\r\n\r\n'
            )
            parts.append(head.encode() + p.read_bytes() + b"\r\n")
            want.append({**r, "path": p.name})
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        kind = f"multipart/form-data; boundary={boundary}"
        out.append((body, kind, {"records": want}, per))
    return out


async def _client(
    port: int,
    bodies: list[Body],
    first: int,
    until: float | None,
    count: int | None,
    latencies: list[float],
    failures: list[str],
) -> None:
    """Requests one after another on one keep-alive connection, each answer checked."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = first
    done = 0
    try:
        while (count is None or done < count) and (until is None or time.perf_counter() < until):
            body, kind, want, _ = bodies[i % len(bodies)]
            head = (
                f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
                if kind
                else "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            ).encode()
            began = time.perf_counter()
            writer.write(head + body)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            data = await reader.readexactly(length)
            latencies.append(time.perf_counter() - began)
            if status != 200:
                failures.append(f"{status}: {data[:200]!r}")
            elif json.loads(data) != want:
                failures.append(f"wrong record for body {i % len(bodies)}")
            i += 1
            done += 1
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
        failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        writer.close()


def load(
    port: int,
    bodies: list[Body],
    clients: int,
    seconds: float | None = None,
    per_client: int | None = None,
) -> tuple[float, list[float], list[str]]:
    """(elapsed s, latencies, failures) of ``clients`` concurrent clients."""
    latencies: list[float] = []
    failures: list[str] = []

    async def run() -> float:
        began = time.perf_counter()
        until = began + seconds if seconds else None
        await asyncio.gather(
            *(
                _client(port, bodies, c * 17, until, per_client, latencies, failures)
                for c in range(clients)
            )
        )
        return time.perf_counter() - began

    return asyncio.run(run()), latencies, failures


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="soak seconds (default 60)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-request", type=int, default=8, help="images a form holds")
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import cnnkit

    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="cnnkit-bench-serve-"))
    ckpt = make_checkpoint(root / "lenet5.ckpt", "lenet5", 1, 32, None)
    paths = make_images(root / "images", N_IMAGES)
    clf = cnnkit.load(ckpt, device="cpu")
    records = [p.to_dict() for p in clf.predict(paths)]
    bodies = raw_bodies(paths, records)
    forms = form_bodies(paths, records, args.per_request)

    # In-process references: throughput over 1,000 files, and one image at a time.
    many = [paths[i % N_IMAGES] for i in range(1000)]
    clf.predict(many)  # warm-up
    rates = []
    for _ in range(3):
        began = time.perf_counter()
        clf.predict(many)
        rates.append(len(many) / (time.perf_counter() - began))
    inproc_rate = max(rates)
    single = []
    for i in range(200):
        began = time.perf_counter()
        clf.predict(paths[i % N_IMAGES])
        single.append(time.perf_counter() - began)
    inproc_p50 = statistics.median(single)

    options = ["--max-wait-ms", str(args.max_wait_ms), "-q"]
    if args.workers:
        options += ["--workers", str(args.workers)]
    server = Server(ckpt, options)
    try:
        load(server.port, bodies, args.clients, per_client=20)  # warm-up
        elapsed, lat, failures = load(server.port, [HEALTH], args.clients, per_client=125)
        stack_rate = len(lat) / elapsed
        phases = {}
        for name, kinds, count in (("raw", bodies, 125), ("form", forms, 40)):
            before = server.stats()
            elapsed, lat, bad = load(server.port, kinds, args.clients, per_client=count)
            after = server.stats()
            calls = after["model_calls"] - before["model_calls"]
            images = after["images"] - before["images"]
            failures += bad
            phases[name] = {
                "images_per_s": round(images / elapsed, 1),
                "ratio": round(images / elapsed / inproc_rate, 3),
                "p50_ms": round(percentile(lat, 50) * 1000, 2),
                "p99_ms": round(percentile(lat, 99) * 1000, 2),
                "mean_batch": round(images / calls, 2) if calls else None,
            }

        _, one, one_failures = load(server.port, bodies, 1, per_client=300)
        one_p50 = statistics.median(one[20:])  # after the first few

        rss_start = server.rss_mb()
        rss = [rss_start]
        soak_lat: list[float] = []
        soak_failures: list[str] = []
        soak_began = time.perf_counter()
        while (left := args.duration - (time.perf_counter() - soak_began)) > 0:
            _, part, bad = load(server.port, bodies, args.clients, seconds=min(5.0, left))
            soak_lat += part
            soak_failures += bad
            rss.append(server.rss_mb())
        soak_s = time.perf_counter() - soak_began
        status = server.stop()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()

    result = {
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "inprocess_images_per_s": round(inproc_rate, 1),
        "clients": args.clients,
        "one_image_a_request": phases["raw"],
        f"{args.per_request}_images_a_request": phases["form"],
        "throughput_goal": GOAL_THROUGHPUT,
        "healthz_requests_per_s": round(stack_rate, 1),
        "failures": len(failures) + len(one_failures),
        "inprocess_single_p50_ms": round(inproc_p50 * 1000, 2),
        "inprocess_one_at_a_time_images_per_s": round(1 / inproc_p50, 1),
        "one_client_p50_ms": round(one_p50 * 1000, 2),
        "latency_ratio": round(one_p50 / (inproc_p50 + LATENCY_ALLOWANCE_S), 3),
        "latency_goal": GOAL_LATENCY,
        "soak_s": round(soak_s, 1),
        "soak_requests": len(soak_lat),
        "soak_failures": len(soak_failures),
        "soak_p99_ms": round(percentile(soak_lat, 99) * 1000, 2),
        "rss_mb_start_max_end": [round(rss[0], 1), round(max(rss), 1), round(rss[-1], 1)],
        "server_exit_status": status,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"load average before / after: {result['load_average_before']} / "
          f"{result['load_average_after']}")  # fmt: skip
    for name, per in (("raw", 1), ("form", args.per_request)):
        phase = phases[name]
        print(f"{args.clients} clients, {per} image(s) a request: {phase['images_per_s']:,.0f} "
              f"images/s against in-process {inproc_rate:,.0f} = {phase['ratio']:.2f}x (goal >= "
              f"{GOAL_THROUGHPUT}x); p50 {phase['p50_ms']} ms, p99 {phase['p99_ms']} ms, "
              f"mean batch {phase['mean_batch']}")  # fmt: skip
    print(f"(the HTTP stack alone, GET /healthz: {stack_rate:,.0f} requests/s; in-process, "
          f"one image a call, one after another: {1 / inproc_p50:,.0f} images/s)")  # fmt: skip
    print(f"1 client: p50 {result['one_client_p50_ms']} ms against in-process "
          f"{result['inprocess_single_p50_ms']} ms + 5 ms = {result['latency_ratio']:.2f}x "
          f"(goal <= {GOAL_LATENCY}x)")  # fmt: skip
    print(f"soak: {result['soak_requests']:,} requests in {result['soak_s']} s, "
          f"{result['soak_failures']} failed (p99 {result['soak_p99_ms']} ms); server RSS "
          f"start/max/end {result['rss_mb_start_max_end']} MB; exit status {status}")  # fmt: skip
    for line in (failures + one_failures + soak_failures)[:5]:
        print("  failure:", line)


if __name__ == "__main__":
    main()
