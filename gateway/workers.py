"""Several gateway processes on one port (SO_REUSEPORT), supervised by a parent process."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType


def _worker(config_path: str, index: int, metrics_peers: str) -> None:
    import asyncio

    from gateway.cli.serve import _serve
    from gateway.config import load_config

    path = Path(config_path)
    asyncio.run(
        _serve(
            load_config(path),
            config_path=path,
            reuse_port=True,
            worker=index,
            metrics_peers=Path(metrics_peers),
        )
    )


def _shared_signing_key(config_path: Path) -> None:
    """Create the audit checkpoint key once, here: workers that all find it missing would race
    to generate it (one crashing on the exclusive create, or reading a half-written file)."""
    from gateway.audit.keys import load_private
    from gateway.config import load_config

    audit = load_config(config_path).audit
    if audit.enabled and audit.checkpoints is not None and audit.signing_key is not None:
        load_private(audit.signing_key, audit.generate_key)


def run_workers(config_path: Path, workers: int) -> int:
    """Start `workers` processes that share the data and admin ports; forward SIGTERM, SIGINT
    and SIGHUP to them; return non-zero if any worker failed."""
    _shared_signing_key(config_path)
    # Each worker serves its own metrics on a Unix socket here; a scrape of any worker adds
    # up all of theirs (gateway.metrics). Private to this user, removed when they stop.
    peers = tempfile.mkdtemp(prefix="datagate-metrics-")
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(str(config_path), i, peers), name=f"datagate-worker-{i}")
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()

    def forward(signum: int, _: FrameType | None) -> None:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    for proc in procs:
        proc.join()
    shutil.rmtree(peers, ignore_errors=True)
    failed = [p.name for p in procs if p.exitcode not in (0, -signal.SIGTERM, -signal.SIGINT)]
    if failed:
        print(f"datagate: workers exited with errors: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
