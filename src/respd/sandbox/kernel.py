"""The Python kernel that runs inside a sandbox: one long-lived process per container.

It is started by a :mod:`respd.sandbox.launcher` inside the isolation tool, with the standard library only
(the runtime it runs on may not have respd installed), and speaks a small framed protocol on the pipes it
was started with. Each ``exec`` runs the code of one call in a namespace that persists between calls, like
a Jupyter kernel; the value of a final expression is printed, matplotlib figures come back as PNG images.

Nothing this process says can be trusted once user code has run in it: the code shares the process and
may write anything to the protocol pipe. respd therefore bounds and validates every frame it reads, and
anything it cannot parse ends the sandbox, never respd. The limits that protect the host are the isolation
tool's and the hard resource limits set here *before* the first line of user code runs; the soft per-call
ones (CPU, wall time) turn a runaway call into an exception so the container's state survives it.

Frames: an 8-byte header ``>II`` (JSON length, payload length), the JSON object, then the raw payload.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import io
import json
import linecache
import os
import resource
import signal
import stat
import struct
import sys
import time
import traceback
from typing import Any

HEADER = struct.Struct(">II")
WORKDIR = "/mnt/data"
CAPTURE = "/tmp/.respd-output"
MAX_FILES = 1000
KERNEL_FILE = sys._getframe().f_code.co_filename  # "<string>" under -c: frames to hide from tracebacks


class LimitExceeded(BaseException):
    """A per-call limit was hit. A BaseException, so a bare ``except Exception`` in user code cannot swallow it."""


def _raise_cpu(signum: int, frame: Any) -> None:
    raise LimitExceeded("the call used up its CPU time limit")


def _raise_wall(signum: int, frame: Any) -> None:
    raise LimitExceeded("the call ran past its wall-time limit")


class Protocol:
    """Frames on two file descriptors that user code cannot reach by its standard streams."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd

    def _read_exact(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = os.read(self.rfd, min(left, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def read(self) -> tuple[dict[str, Any], bytes]:
        jlen, plen = HEADER.unpack(self._read_exact(HEADER.size))
        msg = json.loads(self._read_exact(jlen))
        return msg, self._read_exact(plen) if plen else b""

    def write(self, msg: dict[str, Any], payload: bytes = b"") -> None:
        body = json.dumps(msg).encode()
        data = HEADER.pack(len(body), len(payload)) + body + payload
        view = memoryview(data)
        while view:
            view = view[os.write(self.wfd, view) :]


class Output(io.TextIOBase):
    """``sys.stdout``/``sys.stderr``: written straight to the capture file (fd 1), where the output of child
    processes also lands, so both keep their order. Past ``cap`` bytes per call the rest is counted, not kept."""

    def __init__(self) -> None:
        self.cap, self.written = 0, 0

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def write(self, s: str) -> int:
        data = s.encode("utf-8", "replace")
        room = self.cap - self.written
        self.written += len(data)
        if room > 0:
            with contextlib.suppress(OSError):  # the capture file's disk is full: the output is lost, not the call
                os.write(1, data[:room])
        return len(s)

    def isatty(self) -> bool:
        return False


def apply_limits(cfg: dict[str, Any]) -> None:
    """Hard limits for this process and everything it starts: set once, before any user code, and
    impossible to raise again without privileges the sandbox does not have."""
    hard = {
        resource.RLIMIT_NPROC: cfg["max_processes"],
        resource.RLIMIT_FSIZE: cfg["max_file_bytes"],
        resource.RLIMIT_NOFILE: cfg["max_open_files"],
        resource.RLIMIT_CORE: 0,
    }
    if cfg.get("memory_bytes"):
        hard[resource.RLIMIT_AS] = cfg["memory_bytes"]
    for which, value in hard.items():
        resource.setrlimit(which, (value, value))
    # the CPU limit is per call (raised before each one); the hard ceiling is the container's lifetime budget
    cpu_total = cfg["cpu_total_s"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_total, cpu_total))


def take_std_streams() -> Protocol:
    """Move the protocol off fds 0/1 and point 0 at /dev/null, 1 and 2 at the capture file."""
    proto = Protocol(os.dup(0), os.dup(1))
    os.set_inheritable(proto.rfd, False)
    os.set_inheritable(proto.wfd, False)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    out = os.open(CAPTURE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    return proto


class Kernel:
    """The namespace, and the operations respd asks for."""

    def __init__(self, proto: Protocol, cfg: dict[str, Any]) -> None:
        self.proto, self.cfg = proto, cfg
        self.ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
        self.cells = 0
        self.out = Output()
        sys.stdout = sys.stderr = self.out

    # -- exec ---------------------------------------------------------------------------------------------
    def op_exec(self, msg: dict[str, Any], _payload: bytes) -> dict[str, Any]:
        self.cells += 1
        self.out.cap, self.out.written = int(msg.get("max_output", 1 << 20)), 0
        os.ftruncate(1, 0)
        pid = os.getpid()
        error = self._run_limited(str(msg["code"]), float(msg["cpu_s"]), float(msg["wall_s"]))
        if os.getpid() != pid:  # a process the code forked ran off the cell's end: it must not truncate or
            with contextlib.suppress(Exception):  # read the kernel's capture (a fork bomb's children did,
                sys.stdout.flush()  # emptying the next call's output); what it printed stays in the capture
            os._exit(0)
        images = self._figures()
        logs, total = self._collect(int(msg.get("max_output", 1 << 20)))
        return {"ok": True, "error": error, "logs": logs, "output_bytes": total,
                "images": [base64.b64encode(png).decode() for png in images]}  # fmt: skip

    def _run_limited(self, code: str, cpu_s: float, wall_s: float) -> dict[str, str] | None:
        used = resource.getrusage(resource.RUSAGE_SELF)
        spent = int(used.ru_utime + used.ru_stime)
        _soft, cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)
        soft = spent + max(1, int(cpu_s + 0.999))
        if cpu_hard != resource.RLIM_INFINITY:
            soft = min(soft, cpu_hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, cpu_hard))
        signal.setitimer(signal.ITIMER_REAL, wall_s)
        try:
            self._run(code)
            return None
        except LimitExceeded as exc:
            return self._report(exc, "LimitExceeded")
        except SystemExit as exc:
            return {"type": "SystemExit", "message": f"exit({exc.code!r}) was called: the kernel keeps running"}
        except BaseException as exc:
            return self._report(exc, type(exc).__name__)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_hard, cpu_hard))

    def _run(self, code: str) -> None:
        name = f"<cell {self.cells}>"
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)
        tree = ast.parse(code, name, "exec")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, name, "exec"), self.ns)
        if isinstance(last, ast.Expr):  # like a notebook cell: the value of a final expression is shown
            value = eval(compile(ast.Expression(last.value), name, "eval"), self.ns)
            if value is not None:
                self.ns["_"] = value
                print(repr(value))

    def _report(self, exc: BaseException, kind: str) -> dict[str, str]:
        # the kernel's own frames (the exec call, a limit's signal handler) mean nothing to the code's author
        tb = None if isinstance(exc, SyntaxError) else exc.__traceback__  # compiling it: no frame of the code's
        frames = [f for f in traceback.extract_tb(tb) if f.filename != KERNEL_FILE]
        lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)] if frames else []
        lines += traceback.format_exception_only(type(exc), exc)
        self.out.write("".join(lines))
        return {"type": kind, "message": str(exc) or kind}

    def _figures(self) -> list[bytes]:
        """Open matplotlib figures as PNG, then closed (only if the code imported pyplot)."""
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return []
        pngs = []
        try:
            for num in plt.get_fignums():
                buf = io.BytesIO()
                plt.figure(num).savefig(buf, format="png")
                pngs.append(buf.getvalue())
        except Exception as exc:  # a broken figure is reported in the logs, not fatal
            self.out.write(f"\n[figure could not be saved: {exc!r}]\n")
        finally:
            plt.close("all")
        return pngs

    def _collect(self, cap: int) -> tuple[str, int]:
        sys.stdout.flush()
        total = os.fstat(1).st_size
        with open(CAPTURE, "rb") as f:
            data = f.read(cap)
        os.ftruncate(1, 0)
        return data.decode("utf-8", "replace"), max(total, self.out.written)

    # -- files --------------------------------------------------------------------------------------------
    @staticmethod
    def _path(msg: dict[str, Any]) -> str:
        path = os.path.normpath(os.path.join(WORKDIR, str(msg["path"])))
        if not path.startswith(WORKDIR + "/"):
            raise ValueError(f"path outside {WORKDIR}: {msg['path']!r}")
        return path

    def op_list(self, _msg: dict[str, Any], _payload: bytes) -> dict[str, Any]:
        files = []
        for root, dirs, names in os.walk(WORKDIR):  # never follows symlinks to directories
            dirs.sort()
            for name in sorted(names):
                full = os.path.join(root, name)
                st = os.lstat(full)
                if stat.S_ISREG(st.st_mode):
                    files.append({"path": full, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
                if len(files) >= MAX_FILES:
                    return {"ok": True, "files": files, "truncated": True}
        return {"ok": True, "files": files, "truncated": False}

    def op_read(self, msg: dict[str, Any], _payload: bytes) -> tuple[dict[str, Any], bytes]:
        fd = os.open(self._path(msg), os.O_RDONLY | os.O_NOFOLLOW)
        try:
            data = os.read(fd, int(msg["max_bytes"]) + 1)
        finally:
            os.close(fd)
        return {"ok": True, "bytes": len(data)}, data

    def op_write(self, msg: dict[str, Any], payload: bytes) -> dict[str, Any]:
        path = self._path(msg)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        return {"ok": True, "mtime_ns": os.stat(path).st_mtime_ns}

    def op_delete(self, msg: dict[str, Any], _payload: bytes) -> dict[str, Any]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(msg))
        return {"ok": True}

    def op_ping(self, _msg: dict[str, Any], _payload: bytes) -> dict[str, Any]:
        return {"ok": True}

    def serve(self) -> None:
        pid = os.getpid()
        while True:
            try:
                msg, payload = self.proto.read()
            except EOFError:
                return
            handler = getattr(self, "op_" + str(msg.get("op")), None)
            try:
                if handler is None:
                    raise ValueError(f"unknown op {msg.get('op')!r}")
                result = handler(msg, payload)
            except BaseException as exc:  # a limit's signal can land outside the user code's own frames
                result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            if os.getpid() != pid:
                os._exit(0)  # a process the code forked came back here: only the kernel speaks the protocol
            reply, data = result if isinstance(result, tuple) else (result, b"")
            self.proto.write(reply, data)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    apply_limits(cfg)
    signal.signal(signal.SIGXCPU, _raise_cpu)
    signal.signal(signal.SIGALRM, _raise_wall)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file over the size limit fails with EFBIG instead
    os.makedirs(WORKDIR, exist_ok=True)
    os.chdir(WORKDIR)
    proto = take_std_streams()
    kernel = Kernel(proto, cfg)
    proto.write({"ok": True, "ready": True, "pid": os.getpid(), "python": sys.version.split()[0],
                 "started": time.time()})  # fmt: skip
    kernel.serve()


if __name__ == "__main__":
    main()
