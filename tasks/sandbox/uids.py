"""A uid of its own for every running check, so that its process limit counts nobody else's processes.

RLIMIT_NPROC counts every process and thread of the real uid, machine-wide. Under a shared uid (e.g.
`nobody`) any other process of that user eats into a check's allowance, and legitimate programs fail to
start when others run beside them. Here each running check takes a uid from a reserved range
(`uid_base` .. `uid_base + uid_slots - 1`, far above the login and system users), held by an exclusive
flock on a lock file under /run for as long as the check runs: concurrent checks (threads, and other
harness processes on the same machine) never share one. A uid that still owns a process (a check of a
harness that was killed, in the moment before the kernel finished its sandbox) is skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
from collections.abc import Iterator

from .settings import SandboxSettings, SandboxUnavailableError

LOCK_DIRECTORY = "/run/replicate-sandbox-uids"


def processes_of(uid: int) -> list[int]:
    """Pids whose real uid is `uid` (what RLIMIT_NPROC counts)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            found.append(int(pid))
                        break
        except (OSError, ValueError):
            continue  # it ended while we looked
    return found


def check_range(settings: SandboxSettings) -> None:
    """The reserved uids must belong to no account of this machine."""
    taken = [
        entry.pw_name
        for entry in pwd.getpwall()
        if settings.uid_base <= entry.pw_uid < settings.uid_base + settings.uid_slots
    ]
    if taken:
        raise SandboxUnavailableError(
            f"execution.uid_base={settings.uid_base} with uid_slots={settings.uid_slots} covers the uids of "
            f"accounts {taken}; choose a range no account uses"
        )


@contextlib.contextmanager
def dedicated_uid(settings: SandboxSettings) -> Iterator[int]:
    """Hold a free uid of the reserved range for the duration of the block."""
    os.makedirs(LOCK_DIRECTORY, mode=0o700, exist_ok=True)
    for slot in range(settings.uid_slots):
        uid = settings.uid_base + slot
        fd = os.open(os.path.join(LOCK_DIRECTORY, str(uid)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # another check holds it
        try:
            if processes_of(uid):
                continue  # leftovers of a killed harness, still being torn down
            yield uid
            return
        finally:
            os.close(fd)  # releases the lock
    raise SandboxUnavailableError(
        f"all {settings.uid_slots} uids from execution.uid_base={settings.uid_base} are in use by running "
        "checks or leftover processes; raise execution.uid_slots or wait for them to end"
    )
