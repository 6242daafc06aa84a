"""Memory and disk of one large .sym upload: a synthetic Breakpad file sent to a real server.

Run from the repository root::

    .venv/bin/python bench/symbol_upload.py              # 401 MiB, the size issue 11 names
    .venv/bin/python bench/symbol_upload.py --mib 50     # quicker

It writes a synthetic ``.sym`` (MODULE, INFO CODE_ID, FILE records, FUNC records each with
line records, PUBLIC records, STACK CFI INIT records with deltas; the mix of a game's symbol
file) into a temporary folder, starts ``crashd serve`` (SQLite, in-process worker) on a free
port with ``CRASHD_MAX_UPLOAD_BYTES`` raised to let the body in, makes a project and an
``uploader`` token with the CLI, and POSTs the file as a bare body with the token as
``Authorization: Bearer`` (streamed from disk, so the client holds none of it).

While the upload is sent and converted, a thread samples the server's VmRSS (every 0.1 s)
and the disk used under its data folder (``st_blocks``; the spool, the staging folder, the
store and the caches all live there). Printed: the file's size, the server's VmRSS before the
upload, its VmHWM (peak resident set, from /proc/<pid>/status) after it, the peak disk seen
and the disk left when done, each also as a multiple of the file's size, and the wall time.
Numbers only: what they should be is written in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
DEBUG_ID = "5A9832E5287241C1838ED98914E9B7FF1"
ADMIN_TOKEN = "bench-symbol-upload-admin-token"


def write_sym(path: Path, size: int, seed: int = 11) -> int:
    """A synthetic .sym of about size bytes at path; returns its size."""
    rng = random.Random(seed)
    with open(path, "w") as out:
        out.write(f"MODULE windows x86_64 {DEBUG_ID} game.pdb\nINFO CODE_ID 5F1E2D3C4B000 game.exe\n")
        for i in range(2000):
            out.write(f"FILE {i} c:\\build\\game\\src\\module_{i // 40}\\file_{i}.cpp\n")
        address, written, n = 0x1000, out.tell(), 0
        while written < size:
            chunk = []
            for _ in range(1000):
                length = rng.randrange(0x20, 0x400)
                name = f"game::subsystem_{n % 97}::Class_{n % 1013}::method_{n}(int, float const&)"
                chunk.append(f"FUNC {address:x} {length:x} {rng.randrange(0, 32):x} {name}\n")
                line_at, file_no = address, rng.randrange(2000)
                while line_at < address + length:
                    step = min(rng.randrange(4, 40), address + length - line_at)
                    chunk.append(f"{line_at:x} {step:x} {rng.randrange(1, 5000)} {file_no}\n")
                    line_at += step
                chunk.append(f"STACK CFI INIT {address:x} {length:x} .cfa: $rsp 8 + .ra: .cfa -8 + ^\n"
                             f"STACK CFI {address + 1:x} .cfa: $rsp 16 + $rbp: .cfa -16 + ^\n")
                if n % 10 == 0:
                    chunk.append(f"PUBLIC {address + length:x} 0 public_symbol_{n}\n")
                address += length + 0x10
                n += 1
            text = "".join(chunk)
            out.write(text)
            written += len(text)
    return path.stat().st_size


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def disk_used(root: Path) -> int:
    """Bytes of disk the files under root take (st_blocks: sparse files count what they hold)."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except OSError:
                pass  # renamed or deleted while walking
    return total


def proc_status(pid: int, field: str) -> int:
    """A kB field of /proc/<pid>/status (VmRSS, VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


class Sampler(threading.Thread):
    """Peak VmRSS of pid and peak disk under root, sampled until stop()."""

    def __init__(self, pid: int, root: Path) -> None:
        super().__init__(daemon=True)
        self.pid, self.root = pid, root
        self.peak_rss = self.peak_disk = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak_rss = max(self.peak_rss, proc_status(self.pid, "VmRSS"))
            self.peak_disk = max(self.peak_disk, disk_used(self.root))
            time.sleep(0.1)

    def stop(self) -> None:
        self._done.set()
        self.join()


def crashd(env: dict[str, str], *argv: str) -> str:
    done = subprocess.run([sys.executable, "-m", "server.cli", *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, check=True)
    return done.stdout


def wait_up(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/__heartbeat__", timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("crashd serve did not come up")


def file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            yield chunk


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=401.0, help="size of the synthetic .sym (default 401)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crashd-bench-sym-") as scratch:
        scratch_dir, data = Path(scratch), Path(scratch) / "data"
        sym = scratch_dir / "game.sym"
        started = time.perf_counter()
        size = write_sym(sym, int(args.mib * MiB))
        print(f"synthetic .sym: {size / MiB:.1f} MiB, written in {time.perf_counter() - started:.1f} s")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHD_")}
        env.update(CRASHD_DATA_DIR=str(data), CRASHD_ADMIN_TOKEN=ADMIN_TOKEN,
                   CRASHD_MAX_UPLOAD_BYTES=str(size + MiB), CRASHD_MAX_DECOMPRESSED_BYTES=str(size + MiB))
        crashd(env, "migrate")  # the CLI refuses a database that does not exist yet
        project = json.loads(crashd(env, "project", "create", "bench", "--json"))
        token = crashd(env, "token", "create", "bench-uploader", "--role", "uploader", "--project", "bench").strip()
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--port", str(port)], cwd=REPO,
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_up(url)
            baseline_rss, baseline_disk = proc_status(server.pid, "VmRSS"), disk_used(data)
            sampler = Sampler(server.pid, data)
            sampler.start()
            started = time.perf_counter()
            response = httpx.post(f"{url}/api/{project['project']}/symbols/", content=file_chunks(sym),
                                  headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
                                  timeout=3600)
            seconds = time.perf_counter() - started
            sampler.stop()
            hwm, final_disk = proc_status(server.pid, "VmHWM"), disk_used(data)
        finally:
            server.terminate()
            server.wait(30)
        if response.status_code != 200:
            print(f"upload failed: HTTP {response.status_code} {response.text[:200]}")
            return 1
        peak_disk = max(sampler.peak_disk, final_disk) - baseline_disk
        print(f"upload + conversion: {seconds:.1f} s, HTTP {response.status_code} "
              f"({response.json()['files'][0]['status']})")
        print(f"server VmRSS before: {baseline_rss / MiB:.0f} MiB; VmHWM after: {hwm / MiB:.0f} MiB "
              f"(+{(hwm - baseline_rss) / MiB:.0f} MiB); sampled peak VmRSS {sampler.peak_rss / MiB:.0f} MiB")
        print(f"disk: peak {peak_disk / MiB:.0f} MiB ({peak_disk / size:.2f}x the file), "
              f"kept {(final_disk - baseline_disk) / MiB:.0f} MiB ({(final_disk - baseline_disk) / size:.2f}x: "
              "the file and its caches)")
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
