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
