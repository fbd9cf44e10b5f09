"""Process lifetime: children that cannot outlive the process that owns their work."""

from __future__ import annotations

import signal


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have the kernel send `sig` to this process when its parent dies (Linux; elsewhere a
    no-op): a study worker when its supervisor dies, the launcher when the worker that owns the
    trial dies (it then stops its ranks), and each rank when the launcher dies."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG
    except Exception:
        pass
