"""SnapStart by fork: the initialised runtime kept as a template, and forked once per restore.

Under `lambdalet serve --snapstart` the server names a control socket in `_LAMBDALET_TEMPLATE` (an
abstract Unix socket). After init and the before-snapshot hooks the runtime becomes the template:
it checks it is single-threaded (a thread would be missing from every copy, any lock it held
locked forever), imports what its copies would otherwise import lazily, drops its Runtime API
connection, freezes its objects out of the garbage collector (so copies do not dirty the shared
pages by merely collecting), says READY and parks in a blocking loop: one request, one copy.

The wire (SOCK_SEQPACKET, one message each way per restore; the server's side is
runtime_api/snapstart.py):
  template -> server  b"READY"
  server -> template  a JSON object (fields below) with the copy's output pipe as SCM_RIGHTS
  template -> server  b"<pid>" of the copy, or b"error: <why>"

Each copy is forked twice so that its parent is the server (the subreaper), not the template: the
server waits for it and reads its exit status, and killing the template leaves it running. Before
any user code runs again the copy starts its own session, keeps only its output pipe, joins the
new environment's cgroups and mount namespace, takes the new environment's identity (Runtime API
address, log stream name), re-seeds the random sources the standard library keeps, and then goes
on as any SnapStart runtime: `GET restore/next`, the after-restore hooks, invocations.

Request fields: `environ` (variables that differ in the new environment), `cgroup_tasks` (cgroup
`tasks` files to join), `mounts` (the private /tmp to build, see sandbox/restore.py), `cwd`.
"""

import gc
import os
import sys

# What a copy would import on its first invocation, imported once here instead of in every copy.
_LAZY_IMPORTS = ("bootstrap.marshalling", "bootstrap.errors", "bootstrap.streaming", "json", "base64",
                 "traceback", "decimal")

BEFORE_SNAPSHOT_ERROR = "Runtime.BeforeSnapshotError"
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 1, 32, 4096, 8192, 16384, 1 << 18


def other_threads():
    """The threads besides this one, as `name (tid N)`: from /proc, so threads started by C
    libraries count too (OpenBLAS's, for one); a Python thread by its `threading` name."""
    me = os.getpid()
    threading = sys.modules.get("threading")
    python_names = {t.native_id: t.name for t in threading.enumerate()} if threading else {}
    found = []
    for tid in sorted(os.listdir("/proc/self/task"), key=int):
        if int(tid) == me:
            continue
        name = python_names.get(int(tid))
        if name is None:
            try:
                with open(f"/proc/self/task/{tid}/comm") as comm:
                    name = comm.read().strip()
            except OSError:
                continue  # ended meanwhile
        found.append(f"{name} (tid {tid})")
    return found


def become_template(snapshot, address):
    """Park `snapshot` (a bootstrap.runtime.SnapshotTemplate whose before-snapshot hooks have run)
    as a fork template, serving the control socket `address`. Never returns in the template; in
    each copy it returns the runtime, restored and ready to serve invocations."""
    runtime = snapshot.runtime
    threads = other_threads()
    if threads:
        runtime._before_snapshot_failed(TemplateRefused(
            f"SnapStart template refused: {len(threads)} thread(s) besides the main thread at the "
            f"snapshot point: {', '.join(threads)}. A forked copy would not have them (and a lock one "
            f"of them held would stay locked). Stop them in a before-snapshot hook and start them again "
            f"in an after-restore hook."))
    import ctypes
    import socket
    for name in _LAZY_IMPORTS:
        __import__(name)
    runtime.client.connection.close()  # no copy may share the template's connection
    sys.stdout.flush()
    sys.stderr.flush()
    control = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    control.connect("\0" + address)
    gc.collect()
    gc.freeze()
    control.send(b"READY")
    libc = ctypes.CDLL(None, use_errno=True)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1 << 20, 4)
        except OSError:
            os._exit(0)
        if not message:  # the server is gone: so is the template
            os._exit(0)
        try:
            reply = _fork_copy(message, fds, control, libc)
        except OSError as exc:
            reply = f"error: {exc}".encode()
        if reply is None:  # in the copy, now in its own environment
            return _restored(snapshot)
        for fd in fds:
            os.close(fd)
        control.send(reply)


class TemplateRefused(Exception):
    pass


def _fork_copy(message, fds, control, libc):
    """Fork the copy (twice, see the module's docstring). Returns the reply for the server in the
    template, None in the copy."""
    ready_r, ready_w = os.pipe()
    middle = os.fork()
    if middle == 0:  # the middle: fork the copy, tell the template its pid, and go
        os.close(ready_r)
        try:
            copy = os.fork()
        except BaseException:
            os._exit(1)
        if copy != 0:
            os.write(ready_w, str(copy).encode())
            os._exit(0)
        os.close(ready_w)
        control.close()
        try:
            _become(message, fds, libc)
        except BaseException as exc:
            os.write(2, f"lambdalet bootstrap: the restored copy could not join its environment: {exc}\n".encode())
            os._exit(1)
        return None
    os.close(ready_w)
    try:
        pid = os.read(ready_r, 32)
    finally:
        os.close(ready_r)
    os.waitpid(middle, 0)  # once the middle is gone, the copy's parent is the server
    return pid or b"error: the copy could not be forked"


def _become(message, fds, libc):
    """In the copy, before any user code runs: leave the template's session, descriptors,
    namespace, cgroups and identity for the new environment's."""
    import json
    request = json.loads(message)
    os.setsid()
    output = fds[0]
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.closerange(3, _max_fd())
    for tasks in request.get("cgroup_tasks", ()):
        fd = os.open(tasks, os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
    mounts = request.get("mounts")
    if mounts is not None:
        _private_mounts(libc, mounts)
    if request.get("cwd"):
        os.chdir(request["cwd"])
    os.environ.update(request.get("environ", {}))
    _reseed()


def _max_fd():
    try:
        import resource
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError, OSError):
        return 1024


def _private_mounts(libc, ops):
    """A mount namespace of the copy's own and the mounts that make its private /tmp."""
    def check(result, what):
        if result != 0:
            errno = ctypes_errno()
            raise OSError(errno, f"{what}: {os.strerror(errno)}")

    import ctypes
    ctypes_errno = ctypes.get_errno
    check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making / private")
    for op in ops:
        kind = op[0]
        if kind == "mkdir":
            os.makedirs(op[1], exist_ok=True)
        elif kind == "touch":
            os.close(os.open(op[1], os.O_CREAT | os.O_WRONLY, 0o644))
        elif kind == "mount":
            _, source, target, fstype, flags, data = op
            check(libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), f"mount {target}")
        else:
            raise OSError(0, f"unknown mount step {kind!r}")


def _b(text):
    return None if text is None else text.encode()


def _reseed():
    """os.fork already re-seeds `random`'s module-level generator (CPython's at-fork hook); the
    others that copy identical state: OpenSSL's pool and numpy's legacy global generator."""
    import random
    random.seed()
    ssl = sys.modules.get("ssl")
    if ssl is not None:
        ssl.RAND_add(os.urandom(32), 32.0)
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        try:
            numpy_random.seed()
        except Exception:
            pass


def _restored(snapshot):
    """The copy goes on as a SnapStart runtime in its new environment."""
    from bootstrap.client import RuntimeClient
    from bootstrap.context import FunctionInfo
    runtime = snapshot.runtime
    config = runtime.config
    config.runtime_api = os.environ["AWS_LAMBDA_RUNTIME_API"]
    config.function = FunctionInfo.from_environ(os.environ)
    runtime.client = RuntimeClient(config.runtime_api)
    return snapshot.restore()
