"""How a container's kernel process is isolated: a small interface with one class per isolation tool.

An :class:`Isolation` turns a container's :class:`Limits` into the command line that starts the kernel
(:mod:`respd.sandbox.kernel`) inside the tool. respd speaks to the kernel on that process's stdin and
stdout; the tool decides what the kernel can see and do:

- :class:`Bubblewrap` (default; Debian/Ubuntu ``bubblewrap``): new user, PID, network, IPC, UTS and mount
  namespaces; the only things visible are a read-only ``/usr`` and Python runtime, a private ``/proc`` and
  ``/dev``, and two size-limited tmpfs (``/mnt/data``, the working directory, and ``/tmp``). No network
  interface but an empty loopback. When respd runs as root, each container runs as a host uid of its own,
  never as root (see :meth:`Bubblewrap.argv`).
- :class:`CommandIsolation`: an operator-supplied command (a container runtime such as ``docker run -i
  --network=none …`` or ``runsc``) with placeholders for the limits.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

KERNEL_SOURCE = (Path(__file__).parent / "kernel.py").read_text()
STAGE = "/run/respd-sandbox"  # root mode: where the runtime is bind-mounted for the unprivileged uid to reach
SANDBOX_UID = 1000  # the uid and gid code sees inside the sandbox
ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "USER": "sandbox",
    "LOGNAME": "sandbox",
    "LANG": "C.UTF-8",
    "TMPDIR": "/tmp",
    "MPLBACKEND": "Agg",
    "MPLCONFIGDIR": "/tmp/.matplotlib",
    # one thread per numerical library: the process limit counts threads, and the host has few cores
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """What one container may use."""

    memory_bytes: int  # address space per process (RLIMIT_AS)
    disk_bytes: int  # the working directory's size
    tmp_bytes: int  # /tmp's size
    max_processes: int  # processes and threads (RLIMIT_NPROC, counted in the container's own user namespace)
    max_file_bytes: int  # one file's size (RLIMIT_FSIZE)
    max_open_files: int = 256


@dataclass(frozen=True, slots=True)
class PythonRuntime:
    """The interpreter the kernel runs on, and the directories it needs (mounted read-only)."""

    python: str
    paths: tuple[str, ...]

    @classmethod
    def of(cls, python: str = "") -> PythonRuntime:
        """``python``'s runtime; empty means respd's own interpreter and environment (its venv)."""
        if not python or os.path.realpath(python) == os.path.realpath(sys.executable):
            exe = sys.executable
            roots = {sys.prefix, sys.base_prefix, str(Path(os.path.realpath(exe)).parent.parent)}
        else:
            exe = python
            venv = Path(python).parent.parent
            roots = {str(venv), str(Path(os.path.realpath(python)).parent.parent)}
            cfg = venv / "pyvenv.cfg"
            if cfg.is_file():  # a venv: its base interpreter lives elsewhere
                for line in cfg.read_text().splitlines():
                    key, _, value = line.partition("=")
                    if key.strip() == "home":
                        roots.add(str(Path(value.strip()).parent))
        paths = sorted(os.path.realpath(p) for p in roots if p and not _under_usr(p))
        return cls(python=exe, paths=tuple(_outermost(paths)))


def _under_usr(path: str) -> bool:
    return os.path.realpath(path).startswith("/usr/")


def _outermost(paths: list[str]) -> list[str]:
    """Drop paths inside another one of the list (a venv inside the base prefix is mounted once)."""
    out: list[str] = []
    for p in sorted(paths):
        if not any(p == q or p.startswith(q + "/") for q in out):
            out.append(p)
    return out


def kernel_command(python: str, config: str) -> list[str]:
    """The kernel started by ``python``: isolated mode (no user site, no env vars), no bytecode written."""
    return [python, "-I", "-B", "-c", KERNEL_SOURCE, config]


class Isolation(Protocol):
    """An isolation tool: its name, what it is, and the command that starts a kernel under ``limits``."""

    name: str

    def describe(self) -> str: ...

    def argv(self, limits: Limits, config: str) -> list[str]: ...


class Bubblewrap:
    """bubblewrap (``bwrap``): unprivileged namespaces, nothing of the host but ``/usr`` and the runtime."""

    name = "bubblewrap"

    def __init__(self, runtime: PythonRuntime, bwrap: str, *, disable_userns: bool) -> None:
        self.runtime, self.bwrap, self.disable_userns = runtime, bwrap, disable_userns
        self.as_root = os.geteuid() == 0

    def describe(self) -> str:
        who = "a host uid of its own per container (respd runs as root)" if self.as_root else "respd's own uid"
        return f"bubblewrap ({self.bwrap}): user/pid/net/ipc/uts/mount namespaces, code runs as {who}"

    def _system_dirs(self) -> list[str]:
        args = ["--ro-bind", "/usr", "/usr"]
        for top in ("bin", "sbin", "lib", "lib32", "lib64"):
            host = Path("/") / top
            if host.is_symlink():
                args += ["--symlink", os.readlink(host), str(host)]
            elif host.is_dir():
                args += ["--ro-bind", str(host), str(host)]
        return args

    def _bwrap_args(self, limits: Limits, sources: list[str]) -> list[str]:
        args = [self.bwrap, "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try", "--die-with-parent", "--new-session",
                "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox"]  # fmt: skip
        if self.disable_userns:
            args.append("--disable-userns")  # no nested user namespaces: less kernel surface for the code
        args += self._system_dirs()
        if Path("/etc/fonts").is_dir():  # fontconfig's settings, for the fonts under /usr/share/fonts
            args += ["--ro-bind", "/etc/fonts", "/etc/fonts"]
        # Writable: only the size-limited tmpfs (/mnt/data, /tmp, /dev/shm). bwrap's root and /dev are tmpfs
        # with no size limit, so they are made read-only once everything is mounted.
        args += ["--proc", "/proc", "--dev", "/dev",
                 "--size", str(limits.tmp_bytes), "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
                 "--size", str(limits.disk_bytes), "--tmpfs", "/mnt/data",
                 "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]  # fmt: skip
        # The runtime after the tmpfs: one that lives under /tmp (a checkout there) stays visible, read-only,
        # on top of the sandbox's own /tmp instead of being hidden by it.
        for source, path in zip(sources, self.runtime.paths, strict=True):
            args += ["--ro-bind", source, path]
        args += ["--remount-ro", "/", "--chdir", "/mnt/data", "--clearenv"]
        for key, value in ENV.items():
            args += ["--setenv", key, value]
        return args

    def argv(self, limits: Limits, config: str) -> list[str]:
        if not self.as_root:
            return self._bwrap_args(limits, list(self.runtime.paths)) + kernel_command(self.runtime.python, config)
        # As root, bwrap would map the sandbox to host uid 0. Instead it runs as a fresh unprivileged uid. That
        # uid cannot read the runtime where it lives (say under /root), and bwrap resolves its bind sources as
        # the calling user, so a private mount namespace first binds the runtime under STAGE (reachable by
        # anyone, and only inside that namespace: the host's mounts are untouched), then setpriv drops to the
        # uid (no capabilities, no new privileges) and execs bwrap.
        uid = str(secrets.randbelow(1_000_000_000) + 1_000_000_000)
        staged = [f"{STAGE}/{i}" for i in range(len(self.runtime.paths))]
        inner = self._bwrap_args(limits, staged) + kernel_command(self.runtime.python, config)
        script = (
            'set -e; stage=$1; n=$2; shift 2; mount -t tmpfs -o mode=755,size=64k respd-sandbox "$stage"; i=0; '
            'while [ "$i" -lt "$n" ]; do mkdir "$stage/$i"; mount --rbind "$1" "$stage/$i"; shift; i=$((i+1)); done; '
            'exec "$@"'
        )
        drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", "--no-new-privs", "--"]  # fmt: skip
        return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", STAGE,
                str(len(staged)), *self.runtime.paths, *drop, *inner]  # fmt: skip


class CommandIsolation:
    """An operator's command (e.g. a container runtime). Placeholders: ``{python}``, ``{kernel}`` (the kernel's
    source), ``{config}``, ``{memory_bytes}``, ``{memory_mb}``, ``{disk_mb}``, ``{tmp_mb}``, ``{max_processes}``.
    The command must start ``{python} -I -B -c {kernel} {config}`` with its stdin and stdout attached, in a
    writable ``/mnt/data`` (the working directory) and ``/tmp``."""

    name = "command"

    def __init__(self, template: tuple[str, ...], python: str) -> None:
        self.template, self.python = template, python or "python3"

    def describe(self) -> str:
        return f"the operator's command {self.template[0]!r}"

    def argv(self, limits: Limits, config: str) -> list[str]:
        values = {"python": self.python, "kernel": KERNEL_SOURCE, "config": config,
                  "memory_bytes": limits.memory_bytes, "memory_mb": limits.memory_bytes >> 20,
                  "disk_mb": limits.disk_bytes >> 20, "tmp_mb": limits.tmp_bytes >> 20,
                  "max_processes": limits.max_processes}  # fmt: skip
        return [part.format(**values) for part in self.template]


def find_bwrap() -> str | None:
    return shutil.which("bwrap")
