"""`train.nproc > 1`: the train stage runs itself again as that many DDP processes on this node,
through torchrun. The ranks inherit the workspace lock this process holds (pipeline.lock).

Every process started here dies with this one, however it dies: torchrun runs as
`python -m pipeline.launch <launcher pid> <torchrun args>`, which follows the launcher
(`lock.follow_parent`) before handing over to torchrun, and the ranks follow that torchrun
(`lock.join_as_rank`). A SIGKILL of the launcher, or of its process group, ends them all within
about a second — torchrun's own cleanup cannot run then, and its workers sit in sessions of their
own where no group kill reaches them.
"""

from __future__ import annotations

import os
import subprocess
import sys

from pipeline import artifacts, lock
from pipeline.console import log
from pipeline.errors import StageError


def torchrun(nproc: int) -> None:
    """Run this same `folio train ...` command as `nproc` DDP processes; fail if any rank fails."""
    command = [sys.executable, "-m", "pipeline.launch", str(os.getpid()), "--standalone",
               f"--nproc_per_node={nproc}", "-m", "pipeline.cli", *sys.argv[1:]]
    log(f"launching {nproc} processes: {' '.join(command)}")
    env = {**os.environ, **lock.child_env(lock.held(artifacts.LOCK_FILE))}
    if subprocess.run(command, env=env).returncode:
        raise StageError(f"a training process of the {nproc} failed (its error is above); fix it "
                         "and rerun: training resumes from the last checkpoint")


def _torchrun_following(launcher: int, args: list[str]) -> None:
    """torchrun with `args`, ended as soon as `launcher` is gone; its ranks follow it in turn."""
    lock.follow_parent(launcher, "torchrun")
    os.environ[lock.AGENT_ENV] = str(os.getpid())  # the ranks follow this pid from their first instant
    from torch.distributed.run import main

    main(args)


if __name__ == "__main__":
    _torchrun_following(int(sys.argv[1]), sys.argv[2:])
