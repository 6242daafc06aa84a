"""Object-store client benchmark: boto3 against obstore, put and get of 400 KB objects.

Run from the repository root: ``.venv/bin/python bench/object_store.py [--objects N]``.
Results and how to read them: docs/benchmarks.md, "Object store".

Starts a local S3-compatible server (SeaweedFS, tests/s3_server.py) and, for each client in
turn (interleaved rounds, so a slow moment of the machine does not land on one client), puts N
distinct 400 KB objects one at a time, then gets each back. Per operation: wall latency (p50,
p95) and the CPU this process spent (user + system, ``time.process_time``): the client's own
cost, the server's is not counted. The ratio line is boto3 / obstore.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from s3_server import ACCESS_KEY, BUCKET, SECRET_KEY, S3Server  # noqa: E402

SIZE = 400 * 1024
Op = Callable[[str, bytes], None]


def boto3_client(endpoint: str) -> tuple[Op, Callable[[str], bytes]]:
    """put and get through one boto3 client (what storage/blobs.py would keep per process)."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def put(key: str, data: bytes) -> None:
        client.put_object(Bucket=BUCKET, Key=key, Body=data)

    def get(key: str) -> bytes:
        return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    return put, get


def obstore_client(endpoint: str) -> tuple[Op, Callable[[str], bytes]]:
    """put and get through one obstore S3Store."""
    import obstore
    from obstore.store import S3Store

    store = S3Store(BUCKET, endpoint=endpoint, region="us-east-1", access_key_id=ACCESS_KEY,
                    secret_access_key=SECRET_KEY, client_options={"allow_http": True})

    def put(key: str, data: bytes) -> None:
        obstore.put(store, key, data)

    def get(key: str) -> bytes:
        return bytes(obstore.get(store, key).bytes())

    return put, get


def timed(op: Callable[[], object], walls: list[float], cpus: list[float]) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    op()
    walls.append(time.perf_counter() - wall)
    cpus.append(time.process_time() - cpu)


def measure(put: Op, get: Callable[[str], bytes], keys: list[str],
            stats: dict[str, tuple[list[float], list[float]]]) -> None:
    """Put a distinct random object under each key, then get each back (and compare)."""
    payloads = [os.urandom(SIZE) for _ in keys]
    for key, data in zip(keys, payloads, strict=True):
        timed(lambda k=key, d=data: put(k, d), *stats["put"])
    for key, data in zip(keys, payloads, strict=True):
        got: list[bytes] = []
        timed(lambda k=key, g=got: g.append(get(k)), *stats["get"])
        assert got[0] == data, "object read back differs"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=300, help="objects per client and round (default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crashd-objbench-") as scratch:
        server = S3Server.start(Path(scratch))
        try:
            run(server.endpoint, args.objects, args.rounds)
        finally:
            server.stop()


def run(endpoint: str, objects: int, rounds: int) -> None:
    clients = {"boto3": boto3_client(endpoint), "obstore": obstore_client(endpoint)}
    stats: dict[str, dict[str, tuple[list[float], list[float]]]] = {
        name: {"put": ([], []), "get": ([], [])} for name in clients}
    for name, (put, get) in clients.items():  # warm-up: connections, signing keys
        for i in range(20):
            put(f"warm/{name}/{i}", os.urandom(SIZE))
            get(f"warm/{name}/{i}")
    for rnd in range(rounds):
        for name, (put, get) in clients.items():
            measure(put, get, [f"bench/{name}/{rnd}/{i}.dmp" for i in range(objects)], stats[name])
    print(f"{objects * rounds} objects of {SIZE // 1024} KB per client, one at a time, {os.cpu_count()} cores")
    print(f"{'client':8} {'op':4} {'p50 ms':>8} {'p95 ms':>8} {'CPU ms/op':>10}")
    summary: dict[tuple[str, str], tuple[float, float, float]] = {}
    for name in clients:
        for op in ("put", "get"):
            walls, cpus = stats[name][op]
            row = (pct(walls, 0.5) * 1000, pct(walls, 0.95) * 1000, statistics.fmean(cpus) * 1000)
            summary[(name, op)] = row
            print(f"{name:8} {op:4} {row[0]:8.2f} {row[1]:8.2f} {row[2]:10.2f}")
    for op in ("put", "get"):
        b, o = summary[("boto3", op)], summary[("obstore", op)]
        print(f"boto3/obstore {op}: p50 {b[0] / o[0]:.2f}x, p95 {b[1] / o[1]:.2f}x, CPU {b[2] / o[2]:.2f}x")


if __name__ == "__main__":
    main()
