"""Run Python code in a child process whose files cannot grow past ``limit`` bytes (``RLIMIT_FSIZE``).

The kernel then fails the write itself (EFBIG), so the real writers (torch's zip writer, TorchScript's
C++ writer, Python's files) fail as they do on a full disk, without mounting a small tmpfs.
Importable from tests (pytest's pythonpath has tests/).
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys


def run_with_file_limit(code: str, limit: int, cwd=None, timeout: float = 300) -> subprocess.CompletedProcess:
    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer instead of failing it
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          preexec_fn=limit_files)
