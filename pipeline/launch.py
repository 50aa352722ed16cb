"""`train.nproc > 1`: the train stage runs itself again as that many DDP processes on this node,
through torchrun. The ranks inherit the workspace lock this process holds (pipeline.lock)."""

from __future__ import annotations

import os
import subprocess
import sys

from pipeline import artifacts, lock
from pipeline.console import log
from pipeline.errors import StageError


def torchrun(nproc: int) -> None:
    """Run this same `folio train ...` command as `nproc` DDP processes; fail if any rank fails."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "pipeline.cli", *sys.argv[1:]]
    log(f"launching {nproc} processes: {' '.join(command)}")
    env = {**os.environ, **lock.child_env(lock.held(artifacts.LOCK_FILE))}
    if subprocess.run(command, env=env).returncode:
        raise StageError(f"a training process of the {nproc} failed (its error is above); fix it "
                         "and rerun: training resumes from the last checkpoint")
