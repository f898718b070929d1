"""A budget for one mail: CPU seconds and memory, enforced by the kernel on the worker process.

The worker runs in a process of its own (see `mailcircle.service`), one mail at a time.
Before each mail it lowers its own soft limits to what it has used so far plus the
budget: past the CPU limit the kernel ends the process (SIGXCPU), and past the memory limit
an allocation fails (MemoryError). The process that watches the worker charges the death
to the mail it was on; a mail charged twice is not tried again (see `Worker.process`).
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    cpu_seconds: int = 10
    memory_mb: int = 512

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Hold this process to the budget for the length of the block."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        used = math.ceil(usage.ru_utime + usage.ru_stime)
        cpu_before = resource.getrlimit(resource.RLIMIT_CPU)
        as_before = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_CPU, (used + self.cpu_seconds, cpu_before[1]))
        base = _address_space()
        memory = base + self.memory_mb * 1024 * 1024
        if base and (as_before[1] == resource.RLIM_INFINITY or memory < as_before[1]):
            resource.setrlimit(resource.RLIMIT_AS, (memory, as_before[1]))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_AS, as_before)
            resource.setrlimit(resource.RLIMIT_CPU, cpu_before)


def no_core_dumps() -> None:
    """A worker ended by its CPU limit must not write a core file the size of its memory."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _address_space() -> int:
    """This process's virtual memory size now, in bytes."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as statm:
            return int(statm.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0
