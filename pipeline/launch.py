"""`train.nproc > 1`: the train stage runs itself again as that many DDP processes on this node,
through torchrun. The ranks inherit the workspace lock this process holds (pipeline.lock).

Every process started here dies with this one, however it dies: torchrun runs as
`python -m pipeline.launch <launcher pid> <torchrun args>`, which follows the launcher
(`lock.follow_parent`) before handing over to torchrun, and the ranks follow that torchrun
(`lock.join_as_rank`). A SIGKILL of the launcher, or of its process group, ends them all within
about a second — torchrun's own cleanup cannot run then, and its workers sit in sessions of their
own, where no group kill reaches them.

By hand, on one node or several, `python -m pipeline.launch <torchrun args>` is torchrun with its
rendezvous failures said in one line (the others never came, the rendezvous port is taken, the
endpoint does not answer) instead of a traceback (docs/multinode.md).
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


def _torchrun_following(launcher: int | None, args: list[str]) -> None:
    """torchrun with `args`, ended as soon as `launcher` (if any) is gone; its ranks follow it in
    turn. A rendezvous failure is one line on stderr and exit status 1."""
    if launcher is not None:
        lock.follow_parent(launcher, "torchrun")
    os.environ[lock.AGENT_ENV] = str(os.getpid())  # the ranks follow this pid from their first instant
    from torch.distributed.elastic.rendezvous import RendezvousError
    from torch.distributed.run import main

    try:
        main(args)
    except RendezvousError as err:
        sys.stderr.write(f"error: {rendezvous_failed(err, args)}\n")
        sys.exit(1)


def rendezvous_failed(err: BaseException, args: list[str]) -> str:
    """One line for a rendezvous that failed: what went wrong at which endpoint, and what to do."""
    from torch.distributed.elastic.rendezvous import RendezvousConnectionError, RendezvousTimeoutError

    endpoint = next((a.split("=", 1)[1] for a in args if a.startswith(("--rdzv_endpoint=", "--rdzv-endpoint="))),
                    "the rendezvous endpoint")
    nnodes = next((a.split("=", 1)[1] for a in args if a.startswith("--nnodes=")), "all")
    if isinstance(err, RendezvousTimeoutError):
        return (f"the rendezvous at {endpoint} did not complete: not all {nnodes} nodes joined within "
                "its join_timeout (--rdzv-conf join_timeout=SECONDS, default 600); start the same command "
                "on every node, with the same --rdzv_endpoint and --rdzv_id, and check that they reach "
                f"{endpoint}")
    if isinstance(err, RendezvousConnectionError):
        return (f"the rendezvous store at {endpoint} could not be started or reached ({_cause(err)}): "
                "if its port is taken, another job (or this node started twice) uses it: pick another "
                "port in --rdzv_endpoint, or stop that job; if it does not answer, start node 0 first and "
                "check the address")
    return f"the rendezvous at {endpoint} failed ({_cause(err)}); start the job again on every node"


def _cause(err: BaseException) -> str:
    """The deepest error's first line: torch wraps the socket's own message."""
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:160]


if __name__ == "__main__":
    if sys.argv[1:2] and sys.argv[1].isdigit():  # launched by `torchrun()` above, which it follows
        _torchrun_following(int(sys.argv[1]), sys.argv[2:])
    else:  # by hand: torchrun's arguments
        _torchrun_following(None, sys.argv[1:])
