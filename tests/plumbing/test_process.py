"""Process lifetime: a child that asked to die with its parent does, when the parent is killed."""

import os
import signal
import subprocess
import sys
import time

import pytest

PARENT = """
import subprocess, sys, time
from functools import partial
from workbench.plumbing.process import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                         preexec_fn=partial(die_with_parent, {sig}))
print(child.pid, flush=True)
time.sleep(60)
"""


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            with open(f"/proc/{pid}/stat") as f:             # reaped by init soon; a zombie is dead
                if f.read().split(") ")[1][0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(sys.platform != "linux", reason="the kernel's parent-death signal is Linux's")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_a_child_dies_with_its_parent(sig):
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(sig=int(sig))], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        assert not _gone(child, within=0.2)                  # alive while its parent lives
        parent.kill()
        parent.wait()
        assert _gone(child)
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
