"""Cached state reads (Redis) against PostgreSQL reads, p50/p99, in the same run.

    ./pants run benchmarks:state -- --write docs/benchmarks.md

Uses REDIS_URL when set, otherwise a private redis-server from PATH.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from audit_benchmark import machine, write_section
from bench_database import benchmark_database

from jarvis.cache import CachedStateStore, RedisLink, namespace_for
from jarvis.db import StateStore


@contextmanager
def redis_for_benchmark() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH and REDIS_URL is unset")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as workdir:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--save", "", "--dir", workdir], stdout=subprocess.DEVNULL
        )
        url = f"redis://127.0.0.1:{port}/0"
        for _ in range(100):
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        try:
            yield url
        finally:
            process.terminate()
            process.wait()


def latencies_ms(read: Callable[[], object], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        read()
        samples.append((time.perf_counter() - started) * 1000)
    return sorted(samples)


def percentile(sorted_samples: list[float], fraction: float) -> float:
    return sorted_samples[min(len(sorted_samples) - 1, int(fraction * len(sorted_samples)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=5000)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    with benchmark_database() as (_, database, _url), redis_for_benchmark() as redis_url:
        plain = StateStore(database)
        cached = CachedStateStore(plain, RedisLink(redis_url, namespace=namespace_for(database.url)))
        cached.set("bench.key", {"balance": 1234.5, "positions": [{"symbol": "ETH", "qty": 2}]})
        for _ in range(500):  # warm-up
            plain.get("bench.key")
            cached.get("bench.key")
        pg, rd = [], []
        for _ in range(5):  # alternate rounds so drift hits both alike
            pg += latencies_ms(lambda: plain.get("bench.key"), args.reads // 5)
            rd += latencies_ms(lambda: cached.get("bench.key"), args.reads // 5)
        pg.sort()
        rd.sort()
    rows = [("PostgreSQL read (StateStore.get)", pg), ("Redis cached read (CachedStateStore.get)", rd)]
    p50_ratio = percentile(rd, 0.5) / percentile(pg, 0.5)
    lines = [
        f"Measured on {machine()}; {args.reads} reads each, alternating rounds, loopback.",
        "",
        "| read | p50 ms | p99 ms |",
        "| --- | ---: | ---: |",
        *[f"| {name} | {percentile(s, 0.5):.3f} | {percentile(s, 0.99):.3f} |" for name, s in rows],
        "",
        "| ratio | measured | target | met |",
        "| --- | ---: | ---: | :---: |",
        f"| cached p50 / PostgreSQL p50 | {p50_ratio:.2f} | ≤ 0.33 | {'yes' if p50_ratio <= 1 / 3 else 'NO'} |",
        f"| cached p99 | {percentile(rd, 0.99):.3f} ms | ≤ 1 ms | {'yes' if percentile(rd, 0.99) <= 1 else 'NO'} |",
    ]
    print("\n".join(lines))
    if args.write:
        write_section(
            args.write, "State cache", "\n".join(lines), "./pants run benchmarks:state -- --write docs/benchmarks.md"
        )


if __name__ == "__main__":
    main()
