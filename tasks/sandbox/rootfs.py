"""The sandbox's world: a new root holding only what Python needs, plus IPC limits and a hostname.

Stdlib only (imported by the bootstrap as a top-level module). Runs as root in the sandbox's init, inside
its new mount, PID, network, IPC and UTS namespaces; nothing here touches the host's mounts, because the
first step stops mount events from propagating out of the new mount namespace.

The new root is a small tmpfs, read-only once built, holding:
- read-only bind mounts of the system directories (/usr, and /bin, /lib, ... where they are directories,
  the same symlinks where they are symlinks) and of the interpreter's installation prefix when it lies
  elsewhere (e.g. a pyenv build under /root: that prefix, and nothing else of the home directory);
- /etc with stand-ins: passwd and group naming only root and the program's uid, hosts, nsswitch.conf, and
  the dynamic loader's cache (library paths only), so no other user or host detail is visible;
- /dev with null, zero, full, random and urandom, and a private size-limited tmpfs on /dev/shm;
- /tmp: a private size-limited tmpfs owned by the candidate's uid, its working directory;
- /proc: the new PID namespace's own, with other users' processes hidden (hidepid=2): the candidate sees
  neither the init nor the judge;
- /sandbox/: judge.py, candidate.py and channel.py, copied, read-only.
Then pivot_root moves into it and the old root is detached: the host's filesystem is unreachable.
"""

from __future__ import annotations

import os
import socket

if __package__:  # imported by the harness as tasks.sandbox.rootfs
    from . import syscalls
else:  # imported by the bootstrap script, which puts this directory first on sys.path
    import syscalls

# Mount point of the new root, in the sandbox's own mount namespace: the host's /tmp is untouched. It hides
# the host's /tmp from this namespace, so whatever build_root takes from under /tmp (a checkout or an
# interpreter there, as in a CI clone) is read or opened before it is mounted.
NEW_ROOT = "/tmp"
JUDGE_PATH, CANDIDATE_PATH = "/sandbox/judge.py", "/sandbox/candidate.py"
SYSTEM_DIRECTORIES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
DEVICES = ("null", "zero", "full", "random", "urandom")
HOSTNAME = "sandbox"
_RO_BIND = (
    syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY | syscalls.MS_NOSUID | syscalls.MS_NODEV
)
_DEVICE_BIND = syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_NOSUID  # writable, and devices must work


def _inside(path: str) -> str:
    return NEW_ROOT + path


def _bind(source: str, target: str, remount_flags: int) -> None:
    syscalls.mount(source, target, None, syscalls.MS_BIND)
    syscalls.mount(None, target, None, remount_flags)  # bind mounts take flags only on a remount


def _tmpfs(target: str, size_mb: float, options: str) -> None:
    flags = syscalls.MS_NOSUID | syscalls.MS_NODEV
    syscalls.mount("tmpfs", target, "tmpfs", flags, f"size={int(size_mb * 1024)}k,{options}")


def _write(path: str, text: str | bytes, mode: int = 0o444) -> None:
    with open(path, "wb") as handle:
        handle.write(text.encode() if isinstance(text, str) else text)
    os.chmod(path, mode)


def _covered(path: str, mounted: list[str]) -> bool:
    return any(path == done or path.startswith(done.rstrip("/") + "/") for done in mounted)


def limit_ipc(memory_limit_mb: int) -> None:
    """SysV shared memory lives outside RLIMIT_AS once detached, so cap it in the new IPC namespace (whose
    segments all vanish with it) to the program's memory limit; message queues to a handful."""
    pages = memory_limit_mb * 1024 * 1024 // os.sysconf("SC_PAGE_SIZE")
    caps = {"shmmax": memory_limit_mb * 1024 * 1024, "shmall": pages, "shmmni": 64, "msgmni": 16}
    for name, value in caps.items():
        with open(f"/proc/sys/kernel/{name}", "w") as handle:  # per IPC namespace: the writer's own
            handle.write(str(value))


def build_root(plan: dict) -> None:
    """Build the new root, enter it (pivot_root) and detach the host's. Raises OSError on any failure."""
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    limit_ipc(plan["limits"]["memory_limit_mb"])
    syscalls.sethostname(HOSTNAME)
    scripts = {}
    for name, path in plan["scripts"].items():  # read before NEW_ROOT's tmpfs may cover them (a CI clone)
        with open(path, "rb") as handle:
            scripts[name] = handle.read()
    # O_PATH handles keep each prefix reachable (bound through /proc/self/fd) once NEW_ROOT's tmpfs covers it.
    handles = {prefix: os.open(prefix, os.O_PATH | os.O_DIRECTORY) for prefix in plan["python_prefixes"]}
    try:
        _tmpfs(NEW_ROOT, 4, "mode=0755")
        _fill_root(plan, scripts, handles)
    finally:
        for handle in handles.values():
            os.close(handle)
    # Nothing may be created outside /tmp and /dev/shm.
    syscalls.mount(None, NEW_ROOT, None, _RO_BIND & ~syscalls.MS_BIND)
    os.chdir(NEW_ROOT)
    syscalls.pivot_root_here()
    syscalls.umount_detach(".")  # the host's root, stacked on the new one by pivot_root(".", ".")
    os.chdir("/")
    _verify(plan)


def _fill_root(plan: dict, scripts: dict[str, bytes], handles: dict[str, int]) -> None:
    limits, uids = plan["limits"], plan["uids"]
    uid = uids["candidate"]
    mounted: list[str] = []
    for directory in SYSTEM_DIRECTORIES:
        if os.path.islink(directory):
            os.symlink(os.readlink(directory), _inside(directory))
        elif os.path.isdir(directory):
            os.mkdir(_inside(directory), 0o755)
            _bind(directory, _inside(directory), _RO_BIND)
            mounted.append(directory)
    for prefix in plan["python_prefixes"]:  # absolute real paths, from the harness
        if not _covered(prefix, mounted):
            os.makedirs(_inside(prefix), 0o755, exist_ok=True)
            _bind(f"/proc/self/fd/{handles[prefix]}", _inside(prefix), _RO_BIND)
            mounted.append(prefix)
    _make_etc(uid, uids["judge"])
    _make_dev(limits["private_tmp_size_mb"])
    os.mkdir(_inside("/tmp"))
    owner = "" if uid is None else f",uid={uid},gid={uid}"
    _tmpfs(_inside("/tmp"), limits["private_tmp_size_mb"], "mode=0700" + owner)
    os.mkdir(_inside("/proc"))
    proc_flags = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC
    syscalls.mount("proc", _inside("/proc"), "proc", proc_flags, "hidepid=2")
    os.mkdir(_inside("/sandbox"), 0o755)
    for name, source in scripts.items():
        _write(_inside(f"/sandbox/{name}.py"), source)


def _make_etc(uid: int | None, judge_uid: int | None) -> None:
    os.mkdir(_inside("/etc"), 0o755)
    users = "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
    groups = "root:x:0:\n"
    if uid is not None:
        users += f"sandbox:x:{uid}:{uid}:sandbox:/tmp:/usr/sbin/nologin\n"
        groups += f"sandbox:x:{uid}:\n"
    if judge_uid is not None:
        users += f"judge:x:{judge_uid}:{judge_uid}:judge:/nonexistent:/usr/sbin/nologin\n"
        groups += f"judge:x:{judge_uid}:\n"
    _write(_inside("/etc/passwd"), users)
    _write(_inside("/etc/group"), groups)
    _write(_inside("/etc/hosts"), f"127.0.0.1 localhost {HOSTNAME}\n::1 localhost\n")
    _write(_inside("/etc/hostname"), HOSTNAME + "\n")
    _write(_inside("/etc/nsswitch.conf"), "passwd: files\ngroup: files\nhosts: files\n")
    if os.path.isfile("/etc/ld.so.cache"):  # where shared libraries are (paths only): needed by ld.so
        with open("/etc/ld.so.cache", "rb") as handle:
            _write(_inside("/etc/ld.so.cache"), handle.read())


def _make_dev(shm_size_mb: int) -> None:
    os.mkdir(_inside("/dev"), 0o755)
    for device in DEVICES:
        _write(_inside(f"/dev/{device}"), b"", 0o666)  # a mount point for the host's device node
        _bind(f"/dev/{device}", _inside(f"/dev/{device}"), _DEVICE_BIND)
    os.symlink("/proc/self/fd", _inside("/dev/fd"))
    for number, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{number}", _inside(f"/dev/{name}"))
    os.mkdir(_inside("/dev/shm"))
    _tmpfs(_inside("/dev/shm"), shm_size_mb, "mode=1777")


def _verify(plan: dict) -> None:
    """Check from inside what the steps above claim, so that a silent failure cannot pass for isolation."""
    visible = [path for path in plan["hidden_paths"] if os.path.lexists(path)]
    if visible:
        raise OSError(f"host paths visible inside the sandbox: {visible}")
    interfaces = [name for _, name in socket.if_nameindex()]
    if interfaces != ["lo"]:
        raise OSError(f"network namespace check failed: interfaces {interfaces}")
    if socket.gethostname() != HOSTNAME:
        raise OSError(f"UTS namespace check failed: hostname {socket.gethostname()!r}")
    with open("/proc/self/mountinfo") as handle:
        mounts = [line.split() for line in handle]  # fields 5 and 6: mount point and per-mount options
    writable = [fields[4] for fields in mounts if "rw" in fields[5].split(",")]
    allowed = {"/tmp", "/dev/shm", *(f"/dev/{device}" for device in DEVICES), "/proc"}
    if set(writable) - allowed:
        raise OSError(f"writable mounts besides {sorted(allowed)}: {sorted(set(writable) - allowed)}")
