"""SnapStart by fork: the initialised runtime kept as a template, and forked once per restore.

Under `lambdalet serve --snapstart` the server sets `_LAMBDALET_TEMPLATE` to a JSON object: the
abstract Unix socket to serve (`control`) and the mounts that give a copy its private /tmp
(`mounts`, see sandbox/restore.py; null without one). After init and the before-snapshot hooks the
runtime becomes the template: it checks it is single-threaded (a thread would be missing from
every copy, any lock it held locked forever), imports what its copies would otherwise import
lazily, drops its Runtime API connection, freezes its objects out of the garbage collector (so
copies do not dirty the shared pages by merely collecting), says READY and parks in a blocking
loop: one request, one copy.

The wire (SOCK_SEQPACKET, one message each way per restore; the server's side is
runtime_api/snapstart.py):
  template -> server  b"READY"
  server -> template  a JSON object, `environ` (the variables that differ in the new environment)
                      and `cgroup_tasks` (cgroup `tasks` files to join), with the copy's output
                      pipe as SCM_RIGHTS
  template -> server  b"<pid>" of the copy once it has joined its environment (the spare says
                      b"JOINED" on its own channel), or b"error: <why>"

A copy is forked ahead of demand (a spare, as Android's zygote keeps unspecialised processes), so
a restore costs no fork: the spare already has its private /tmp, its own descriptors and its own
random state, and waits for its environment. It is forked twice so that its parent is the server
(the subreaper), not the template: the server waits for it and reads its exit status, and killing
the template leaves the copies running. Until it is used the spare stays in the template's session
and cgroups, so whatever ends the template ends its spare too. Once used it starts its own
session, joins the environment's cgroups, takes its identity (Runtime API address, log stream name)
and goes on as any SnapStart runtime: `GET restore/next`, the after-restore hooks, invocations.
"""

import gc
import os
import sys

# What a copy would import on its first invocation, imported once here instead of in every copy.
_LAZY_IMPORTS = ("bootstrap.marshalling", "bootstrap.errors", "bootstrap.streaming", "json", "base64",
                 "traceback", "decimal")

CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 16384, 1 << 18


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


def become_template(snapshot, settings):
    """Park `snapshot` (a bootstrap.runtime.SnapshotTemplate whose before-snapshot hooks have run)
    as a fork template, as `settings` (the JSON text of `_LAMBDALET_TEMPLATE`) say. Never returns in the template; in
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
    import json
    import socket
    for name in _LAZY_IMPORTS:
        __import__(name)
    settings = json.loads(settings)
    runtime.client.connection.close()  # no copy may share the template's connection
    _rehearse(runtime)
    sys.stdout.flush()
    sys.stderr.flush()
    control = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    control.connect("\0" + settings["control"])
    gc.collect()
    gc.freeze()
    libc = ctypes.CDLL(None, use_errno=True)
    # The functions copies call, looked up (and their call path run once, by a no-op unshare) here,
    # in pages the copies share, rather than in each copy: 0.1 MiB less in each.
    libc.mount, libc.capset  # noqa: B018
    libc.unshare(0)
    mounts = settings.get("mounts")
    # Found here, once: importing `resource` in every copy would cost each of them pages of its own.
    _prepare.max_fd = _max_fd()
    spare = _fork_spare(control, mounts, libc)
    if spare is None:
        return _restored(snapshot)
    control.send(b"READY")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1 << 16, 4)
        except OSError:
            os._exit(0)
        if not message:  # the server is gone: so is the template (and its spare, with it)
            os._exit(0)
        pid, channel = spare
        try:
            reply = _hand_over(channel, pid, message, fds)
        except OSError:  # the spare died: a fresh one, at once
            spare = _fork_spare(control, mounts, libc)
            if spare is None:
                return _restored(snapshot)
            pid, channel = spare
            try:
                reply = _hand_over(channel, pid, message, fds)
            except OSError as exc:
                reply = f"error: {exc}".encode()
        channel.close()
        for fd in fds:
            os.close(fd)
        control.send(reply)
        spare = _fork_spare(control, mounts, libc)  # the next one, off the restore's path
        if spare is None:
            return _restored(snapshot)


class TemplateRefused(Exception):
    pass


def _hand_over(channel, pid, message, fds):
    """Give the spare its environment; its pid once it has joined it. Until then it is in the
    template's session and cgroups, and whatever ends the template (a rotation) would end it too."""
    import socket
    socket.send_fds(channel, [message], fds)
    if channel.recv(16) != b"JOINED":
        raise OSError("the spare ended before joining its environment")
    return str(pid).encode()


# The Runtime API's answers to one invocation, as lambdalet's server gives them.
_NEXT_ANSWER = (b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: 00000000-0000-0000-0000-000000000000\r\n"
                b"Lambda-Runtime-Deadline-Ms: 0\r\nLambda-Runtime-Invoked-Function-Arn: "
                b"arn:aws:lambda:us-east-1:123456789012:function:rehearsal\r\n"
                b"Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000;Sampled=0\r\n"
                b"Content-Type: application/json\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
                b"Content-Length: 2\r\n\r\n{}")
_RESTORED = b"HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Length: 0\r\n\r\n"
_ACCEPTED = (b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
             b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Length: 16\r\n\r\n{\"status\":\"OK\"}\n")


def _rehearse(runtime, times=10):
    """Run the runtime's own side of a restore and an invocation (`restore/next`, the function's
    identity, `next`, the context, the event and result codecs, the response post), not the
    function's hooks nor its handler, against canned answers over a socket pair. What a copy's
    first restore and invocation do once (3.11 specialising its bytecode in place, caches filled
    lazily) is then done here, in pages every copy shares, not in each copy."""
    import socket
    from bootstrap.context import FunctionInfo
    from bootstrap.http11 import ResponseParser
    connection = runtime.client.connection
    ours, theirs = socket.socketpair()
    handler, runtime.handler = runtime.handler, lambda event, context: {}
    try:
        connection.sock, connection.parser = ours, ResponseParser()
        for _ in range(times):
            theirs.sendall(_RESTORED + _NEXT_ANSWER + _ACCEPTED)
            FunctionInfo.from_environ(os.environ)
            runtime.client.restore_next()
            runtime.handle(runtime.client.next())
            theirs.recv(1 << 16)
    except Exception:
        pass  # only a head start for the copies: they work the same without it
    finally:
        runtime.handler = handler
        connection.close()
        theirs.close()
        os.environ.pop("_X_AMZN_TRACE_ID", None)


def _fork_spare(control, mounts, libc):
    """Fork the next copy, twice (see the module's docstring), and prepare it. In the template:
    (its pid, the channel its environment comes by). In the copy: None, once it has joined the
    environment it was given."""
    import socket
    channel, spare_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ready_r, ready_w = os.pipe()
    middle = os.fork()
    if middle == 0:  # the middle: fork the copy, tell the template its pid, and go
        try:
            copy = os.fork()
        except BaseException:
            os._exit(1)
        if copy != 0:
            os.write(ready_w, str(copy).encode())
            os._exit(0)
        try:
            control.close()
            channel.close()
            _prepare(spare_end, mounts, libc)
            message, fds, _, _ = socket.recv_fds(spare_end, 1 << 16, 4)
            if not message:  # never used: the template is gone
                os._exit(0)
            _join(message, fds)
            spare_end.send(b"JOINED")
            spare_end.close()
        except BaseException as exc:
            os.write(2, f"lambdalet bootstrap: the restored copy could not join its environment: {exc}\n".encode())
            os._exit(1)
        return None
    os.close(ready_w)
    spare_end.close()
    try:
        pid = os.read(ready_r, 32)
    finally:
        os.close(ready_r)
    os.waitpid(middle, 0)  # once the middle is gone, the copy's parent is the server
    if not pid:
        raise OSError("the copy could not be forked")
    return int(pid), channel


def _prepare(spare_end, mounts, libc):
    """What a spare does ahead of its environment: only its channel open, its own private /tmp,
    its own random state."""
    keep = spare_end.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, _prepare.max_fd)
    if mounts is not None:
        _private_mounts(libc, mounts)
    _reseed()


def _join(message, fds):
    """Once given its environment, before any user code runs again: its own session, its output
    pipe, the environment's cgroups and identity."""
    import json
    request = json.loads(message)
    os.setsid()
    output = fds[0]
    os.dup2(output, 1)
    os.dup2(output, 2)
    for fd in fds:
        os.close(fd)
    for tasks in request.get("cgroup_tasks", ()):
        fd = os.open(tasks, os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
    os.environ.update(request.get("environ", {}))


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
    own_user_namespace = libc.unshare(CLONE_NEWNS) != 0
    if own_user_namespace:
        if ctypes_errno() != 1:  # EPERM
            check(-1, "unshare(CLONE_NEWNS)")
        _own_user_namespace(libc, check)
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
    if own_user_namespace:
        # No exec follows to drop them: the copy would keep the power to undo its mounts.
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        check(libc.capset(header, (ctypes.c_uint32 * 6)()), "capset (dropping every capability)")


def _own_user_namespace(libc, check):
    """A host without privilege (sandbox/userns.py) runs the template as its own user, without
    capabilities: the copy makes its mount namespace in a user namespace of its own, its user and
    group mapped to themselves (as unshare --map-current-user), and gives up the capabilities it
    gets there once its mounts are made."""
    uid, gid = os.geteuid(), os.getegid()
    check(libc.unshare(0x10000000 | CLONE_NEWNS), "unshare(CLONE_NEWUSER|CLONE_NEWNS)")  # CLONE_NEWUSER
    for name, line in (("uid_map", f"{uid} {uid} 1"), ("setgroups", "deny"), ("gid_map", f"{gid} {gid} 1")):
        fd = os.open(f"/proc/self/{name}", os.O_WRONLY)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def _b(text):
    return None if text is None else text.encode()


def _reseed():
    """os.fork already re-seeds `random`'s module-level generator (CPython's at-fork hook), and
    OpenSSL from 1.1.1 on reseeds its generators itself in a process whose pid changed (feeding it
    here anyway costs every copy half a MiB of pages). The others that copy identical state: an
    older OpenSSL's pool and numpy's legacy global generator."""
    ssl = sys.modules.get("ssl")
    if ssl is not None and ssl.OPENSSL_VERSION_INFO < (1, 1, 1):
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
