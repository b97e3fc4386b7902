"""The warm runner: runs inside a task sandbox (bubblewrap or a container) for one job, imports
what the job declares heavy once, then runs each task as a fresh forked child.

Standalone on purpose: the node passes this file's source to the job's interpreter with `-c`,
so it may import nothing but the standard library (the sandbox shows neither the node's code
nor anything of the host beyond the interpreter and the job's environment).

Protocol, over the SOCK_SEQPACKET socket on fd 3 (argv: `--control-fd 3`) or the socket at a
path (argv: `--control PATH`, for a container), one JSON object per message:
- runner → node: `{"ready": true, "preloaded": [...]}` once the preloads are imported.
- node → runner: `{"workdir", "script", "argv", "env", "keep"}` with two file descriptors
  (the task's stdout and stderr); `keep` names what the sweep before the task leaves alone.
- runner → node: `{"started": pid}`, then `{"rc": n, "clean": bool}` when the child has ended
  (n < 0: killed by signal -n, as `subprocess` reports it); `clean` is false when a process the
  task left could not be killed, and the runner then exits (the node kills its sandbox).
- runner → node: `{"error": message}` instead, for a request it cannot run (say, without its
  two file descriptors); the node ends that runner.

Between tasks nothing of one task reaches the next: the child is forked from the runner, never
from an earlier child, so it sees the runner's memory only; every other process left in the
sandbox is killed; /tmp, /dev/shm and the job's folder (but the task's work folder, which the
node reads and removes) are emptied after each task and again before the next; the
runner is not dumpable, so a child can neither ptrace it nor read or write its memory.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import ctypes
import importlib
import json
import os
import shutil
import signal
import socket
import sys
import threading
import traceback
import types
from typing import Any, NoReturn

PR_SET_DUMPABLE = 4
SWEPT = ("/tmp", "/dev/shm")


def _undumpable() -> None:
    """No process of our uid may ptrace us or open /proc/<us>/mem (the children share it)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _preload(names: list[str]) -> list[str]:
    done = []
    for name in names:
        before = set(sys.modules)
        try:
            importlib.import_module(name)
            done.append(name)
        except Exception as exc:  # the task meets the same error at its own import
            # what the failed import left half-made would break the tasks' own import of it
            for partial in set(sys.modules) - before:
                del sys.modules[partial]
            print(f"runner: preload {name!r} failed: {exc!r}", file=sys.stderr)
    return done


def _others() -> list[int]:
    """The pids in this sandbox's PID namespace other than ours and its init."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in (me, 1):
            found.append(int(entry))
    return found


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _kill_others() -> bool:
    """Kill whatever the last task left running. True when none is left."""
    for _ in range(50):
        pids = _others()
        if not pids:
            return True
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        _reap()
        threading.Event().wait(0.01)
    return not _others()


def _mounts() -> set[str]:
    """The mount points this sandbox sees (bind mounts of the host's folders among them)."""
    found: set[str] = set()
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            found.add(line.split()[4].encode().decode("unicode_escape"))
    return found


def _empty(folder: str, keep: set[str], mounts: set[str]) -> None:
    """Delete what is in `folder` but `keep`, never crossing into a mount point (a path the
    sandbox shows from the host is not the runner's to delete)."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for name in entries:
        path = os.path.join(folder, name)
        if path in keep or path in mounts:
            continue
        if any(m.startswith(path + "/") for m in mounts):
            _empty(path, keep, mounts)  # it leads to a mount point: empty around it
        elif os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _sweep(jobdir: str, keep: set[str]) -> None:
    mounts = _mounts()
    for folder in SWEPT:
        _empty(folder, keep, mounts)
    if jobdir:
        _empty(jobdir, keep, mounts)


def _exit_code(exc: SystemExit) -> int:
    """What `python script.py` exits with for a SystemExit."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _print_traceback(exc: BaseException, script: str) -> None:
    """The traceback as `python script.py` prints it: from the script's first frame on."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != script:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb or exc.__traceback__)


def _run_main(script: str, main: types.ModuleType) -> None:
    """Run `script` as `python script.py` runs it, in `main`, a new `__main__` module."""
    main.__file__ = script
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    with open(script, "rb") as fh:
        code = compile(fh.read(), script, "exec")
    exec(code, main.__dict__)


def _finish(main: types.ModuleType) -> int:
    """What the interpreter does at exit, in its order: wait for non-daemon threads, run the
    `atexit` handlers, then finalise the script's globals (so files it left open are flushed).
    Returns 1 where that raised, else 0."""
    try:
        if hasattr(threading, "_shutdown"):
            threading._shutdown()
        atexit._run_exitfuncs()
        main.__dict__.clear()
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _child(cmd: dict[str, Any], out_fd: int, err_fd: int, control: socket.socket) -> NoReturn:
    """The task: a fresh process image of the runner that runs the script as `__main__`."""
    code = 1
    try:
        os.setsid()
        control.close()
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.closerange(3, 65536)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        atexit._clear()  # the runner's handlers are not the task's
        os.environ.clear()
        os.environ.update(cmd["env"])
        os.chdir(cmd["workdir"])
        script = os.path.join(cmd["workdir"], cmd["script"])
        sys.argv = [cmd["script"], *cmd["argv"]]
        sys.path[0] = cmd["workdir"]
        if "numpy" in sys.modules:  # numpy seeds its global generator once, at import
            sys.modules["numpy"].random.seed()
        main = types.ModuleType("__main__")
        try:
            _run_main(script, main)
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc)
        except BaseException as exc:
            _print_traceback(exc, script)
            code = 1
        failed = _finish(main)  # always, whatever the script's own outcome
        code = code or failed
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        os._exit(code)


def _status(status: int) -> int:
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _send(control: socket.socket, message: dict[str, Any]) -> None:
    control.send(json.dumps(message).encode())


def serve(control: socket.socket, jobdir: str, preload: list[str]) -> None:
    _undumpable()
    _send(control, {"ready": True, "preloaded": _preload(preload)})
    sys.stdout.flush()
    sys.stderr.flush()
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, 1 << 20, 2)
        except OSError:
            return
        if not data:
            return  # the node closed its end: the job is over for this node
        cmd = json.loads(data)
        if len(fds) != 2:
            _send(control, {"error": "expected two file descriptors"})
            return
        _sweep(jobdir, set(cmd.get("keep", [])))
        pid = os.fork()
        if pid == 0:
            _child(cmd, fds[0], fds[1], control)
        for fd in fds:
            os.close(fd)
        _send(control, {"started": pid})
        _, status = os.waitpid(pid, 0)
        clean = _kill_others()
        _sweep(jobdir, {cmd["workdir"]})  # the node takes the work folder's output, then drops it
        _send(control, {"rc": _status(status), "clean": clean})
        if not clean:  # the node discards this runner
            return


def main(argv: list[str]) -> None:
    args = dict(zip(argv[::2], argv[1::2], strict=False))
    if "--control-fd" in args:
        control = socket.socket(fileno=int(args["--control-fd"]))
    else:
        control = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        control.connect(args["--control"])
    preload = [p for p in args.get("--preload", "").split(",") if p]
    serve(control, args.get("--jobdir", ""), preload)


if __name__ == "__main__":
    main(sys.argv[1:])
