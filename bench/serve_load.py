"""Load on `recsys serve` over loopback: requests/s and latency percentiles for the
recommendations and the cart endpoints at a number of concurrent clients.

Starts the real command (one uvicorn process) over the tables a local run published (`make demo`
first), then for each endpoint runs ``--clients`` threads, each with its own keep-alive
connection, until ``--requests`` answers or ``--seconds`` pass, whichever comes first. Customers
and carts are drawn from the published tables, so every request hits a real list.

    .venv/bin/python bench/serve_load.py --clients 50 --requests 20000 --seconds 60
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from deltalake import DeltaTable

from recsys_spark.config import load_config
from recsys_spark.io.names import local_location, table_name

RECSYS = Path(sys.executable).parent / "recsys"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(port: int, server: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"recsys serve exited {server.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("recsys serve did not become ready")


def requests_of(
    kind: str, customers: list[str], carts: list[list[str]]
) -> list[tuple[str, str, bytes | None]]:
    rng = random.Random(7)
    if kind == "recommendations":
        return [
            (
                "GET",
                f"/customers/{urllib.parse.quote(rng.choice(customers), safe='')}/recommendations?n=10",
                None,
            )
            for _ in range(5000)
        ]
    return [
        ("POST", "/cart", json.dumps({"items": rng.choice(carts), "n": 10}).encode()) for _ in range(5000)
    ]


def load(
    port: int, work: list[tuple[str, str, bytes | None]], clients: int, total: int, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(total))
    stop = time.monotonic() + seconds

    def client(offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        for number in counter:
            if time.monotonic() > stop:
                break
            method, path, body = work[(number + offset) % len(work)]
            started = time.perf_counter()
            connection.request(method, path, body=body, headers={"content-type": "application/json"})
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "errors": errors[0],
        "seconds": round(elapsed, 1),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(cuts[49] * 1000, 2),
        "p99_ms": round(cuts[98] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20000, help="per endpoint, at most")
    parser.add_argument("--seconds", type=float, default=60.0, help="per endpoint, at most")
    parser.add_argument("--target", default="local")
    args = parser.parse_args()
    config = load_config(args.target)
    read = lambda key: DeltaTable(str(local_location(config, table_name(config, key)))).to_pandas()  # noqa: E731
    customers = sorted(set(read("recommendations").customer_id))
    together = read("frequently_bought_together")
    items = sorted(set(together.item_id))
    rng = random.Random(3)
    carts = [rng.sample(items, k=min(len(items), rng.randint(1, 5))) for _ in range(500)]
    port = free_port()
    server = subprocess.Popen(
        [str(RECSYS), "serve", "--target", args.target, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(port, server)
        for kind in ("recommendations", "cart"):
            work = requests_of(kind, customers, carts)
            load(port, work[:200], min(args.clients, 10), 200, 10.0)  # warm-up
            result = load(port, work, args.clients, args.requests, args.seconds)
            print(json.dumps({"endpoint": kind, "clients": args.clients, **result}))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
