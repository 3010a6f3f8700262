"""``lorat`` in a subprocess, the way a user runs it, importing this checkout."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parent.parent


def run_lorat(*args, cwd=None, timeout: float = 120, launcher: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """``python [LAUNCHER...] -m lorat_tracker ARGS...``; ``launcher`` e.g. ``("-m", "torch.distributed.run", ...)``.

    PYTHONPATH starts with the checkout, so the code under test runs even from another ``cwd`` and
    whatever copy of the package pip last installed. The rest of the environment is inherited
    (OMP_NUM_THREADS from conftest among it).
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, *launcher, "-m", "lorat_tracker", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_nodes(*args, nodes: int = 2, cwd=None, port: int = 0) -> list:
    """``lorat ARGS`` as ``nodes`` torchrun nodes of one process each, the way a job spans machines:
    ``torchrun --nnodes N --nproc_per_node 1 --rdzv_backend c10d --rdzv_endpoint 127.0.0.1:PORT`` once per
    node, here all on this machine (gloo). Each node is a ``Popen`` in its own session; its output goes to
    temporary files (a pipe nobody reads while waiting for another node would block it), see ``finish``."""
    import tempfile

    port = port or free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nodes), "--nproc_per_node", "1",
                "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", f"lorat-{port}",
                "--max_restarts", "0"]
    procs = []
    for _ in range(nodes):
        stdout, stderr = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        proc = subprocess.Popen([*launcher, "-m", "lorat_tracker", *map(str, args)], cwd=cwd, env=env, text=True,
                                stdout=stdout, stderr=stderr, start_new_session=True)
        proc.output_files = (stdout, stderr)
        procs.append(proc)
    return procs


def worker_of(node: subprocess.Popen) -> int:
    """The pid of the rank a torchrun node runs (its agent's one child; torchrun starts it in a session of
    its own, so a signal to the agent's group does not reach it)."""
    children = Path(f"/proc/{node.pid}/task/{node.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def finish(nodes: list, timeout: float = 300) -> list:
    """Wait for every node: ``[(returncode, stdout, stderr)]``; a node still running after ``timeout``
    seconds (a hang) is killed with its session and fails the caller's assertion on its code."""
    import signal

    import time

    out = []
    deadline = time.monotonic() + timeout
    for node in nodes:
        note = ""
        try:
            node.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for pid in Path(f"/proc/{node.pid}/task/{node.pid}/children").read_text().split():
                os.kill(int(pid), signal.SIGKILL)  # the rank: in a session of its own
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()
            note = f"\n[test] node still running after {timeout} s: killed"
        texts = []
        for f in node.output_files:
            f.seek(0)
            texts.append(f.read())
            f.close()
        out.append((node.returncode, texts[0], texts[1] + note))
    return out


def box_arg(box) -> str:
    """A box as a ``--box`` argument: ``x,y,w,h`` in the shortest exact spelling."""
    return ",".join(f"{v:g}" for v in box)
