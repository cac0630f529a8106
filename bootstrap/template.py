"""SnapStart by fork: the initialised runtime kept as a template, and forked once per restore.

Under `lambdalet serve --snapstart` the server sets `_LAMBDALET_TEMPLATE` to a JSON object: the
abstract Unix socket to serve (`control`) and the mount plan that gives a copy its private /tmp
(`mounts`: bootstrap/mountplan.py, planned by sandbox/restore.py; null without one). After init and
the before-snapshot hooks the runtime becomes the template: it checks it is single-threaded (a
thread would be missing from every copy, any lock it held locked forever), imports what its copies
would otherwise import lazily, drops its Runtime API connection, rehearses a restore and an
invocation (bootstrap/rehearsal.py), freezes its objects out of the garbage collector (so copies do
not dirty the shared pages by merely collecting), says READY and parks in a blocking loop: one
request, one copy.

The wire (SOCK_SEQPACKET, one message each way per restore; the server's side is
runtime_api/snapstart.py):
  template -> server  b"READY"
  server -> template  a JSON object, `environ` (the variables that differ in the new environment)
                      and `cgroup_tasks` (cgroup `tasks` files to join), with two descriptors as
                      SCM_RIGHTS: the copy's output pipe and its report channel to the server
  copy -> server      b"<pid>" on the report channel, once it has joined its environment and
                      before it does anything there
  template -> server  b"<pid>" of the copy once it has joined (the spare says b"JOINED" on its own
                      channel), or b"error: <why>"

The copy reports itself, not only through the template: a template that ends between a copy's
joining and its answer (killed, say) must not leave the server believing no copy was made, or it
would make a second one for the same environment, and two runtimes would share one Runtime API.

A copy is forked ahead of demand (a spare, as Android's zygote keeps unspecialised processes), so
a restore costs no fork: the spare already has its private /tmp (bootstrap/namespaces.py), its own
descriptors and its own random state (bootstrap/reseed.py), and waits for its environment. It is
forked twice so that its parent is the server (the subreaper), not the template: the server waits
for it and reads its exit status, and killing the template leaves the copies running. Until it is
used the spare stays in the template's session and cgroups, so whatever ends the template ends its
spare too. Once used it starts its own session, joins the environment's cgroups, takes its identity
(Runtime API address, log stream name) and goes on as any SnapStart runtime: `GET restore/next`,
the after-restore hooks, invocations. What a copy drops and joins is listed, in order, in
`_become_copy`.
"""

import gc
import json
import os
import socket
import sys

from bootstrap import mountplan
from bootstrap.reseed import reseed

# What a copy would import on its first invocation, imported once here instead of in every copy.
_LAZY_IMPORTS = ("bootstrap.marshalling", "bootstrap.errors", "bootstrap.streaming", "json", "base64",
                 "traceback", "decimal")


class TemplateRefused(Exception):
    pass


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
    as a fork template, as `settings` (the JSON text of `_LAMBDALET_TEMPLATE`) say. Never returns
    in the template; in each copy it returns the runtime, restored and ready to serve invocations."""
    runtime = snapshot.runtime
    threads = other_threads()
    if threads:
        runtime._before_snapshot_failed(TemplateRefused(
            f"SnapStart template refused: {len(threads)} thread(s) besides the main thread at the "
            f"snapshot point: {', '.join(threads)}. A forked copy would not have them (and a lock one "
            f"of them held would stay locked). Stop them in a before-snapshot hook and start them again "
            f"in an after-restore hook."))
    for name in _LAZY_IMPORTS:
        __import__(name)
    settings = json.loads(settings)
    private_tmp = None
    if settings.get("mounts") is not None:
        from bootstrap.namespaces import PrivateTmp
        private_tmp = PrivateTmp(mountplan.decode(settings["mounts"]))
    runtime.client.connection.close()  # no copy may share the template's connection
    from bootstrap.rehearsal import rehearse
    rehearse(runtime)
    # Found here, once: importing `resource` in every copy would cost each of them pages of its own.
    max_fd = _max_fd()
    sys.stdout.flush()
    sys.stderr.flush()
    control = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    control.connect("\0" + settings["control"])
    gc.collect()
    gc.freeze()
    _serve(control, private_tmp, max_fd)  # returns only in a copy
    return _restored(snapshot)


def _serve(control, private_tmp, max_fd):
    """The template's loop: one request from the server, the spare handed over, the next spare
    forked. The template exits when the server is gone (and its spare with it); in each copy this
    returns, once the copy has joined its environment. A spare that died, or could not be forked
    (its middle killed, the host out of processes), costs the next request a fork, not the
    template: only a request that cannot get a copy at all is answered with an error."""
    spare = _fork_spare(control, private_tmp, max_fd)
    if spare is None:
        return
    control.send(b"READY")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1 << 16, 4)
        except OSError:
            os._exit(0)
        if not message:  # the server is gone: so is the template (and its spare, with it)
            os._exit(0)
        try:
            reply = _hand_over(spare, message, fds)
        except OSError:  # a fresh spare, at once
            try:
                spare = _fork_spare(control, private_tmp, max_fd)
                if spare is None:
                    return
                reply = _hand_over(spare, message, fds)
            except OSError as exc:
                reply = f"error: {exc}".encode()
        for fd in fds:
            os.close(fd)
        control.send(reply)
        try:
            spare = _fork_spare(control, private_tmp, max_fd)  # the next one, off the restore's path
        except OSError:
            spare = _NO_SPARE
        if spare is None:
            return


_NO_SPARE = (0, None)  # none could be forked after the last restore: the next request forks one


def _hand_over(spare, message, fds):
    """Give the spare its environment; its pid once it has joined it. Until then it is in the
    template's session and cgroups, and whatever ends the template (a rotation) would end it too.
    Raises OSError if there is no spare, or it ended first."""
    pid, channel = spare
    if channel is None:
        raise OSError("no spare")
    try:
        socket.send_fds(channel, [message], fds)
        if channel.recv(16) != b"JOINED":
            raise OSError("the spare ended before joining its environment")
    finally:
        channel.close()
    return str(pid).encode()


def _fork_spare(control, private_tmp, max_fd):
    """Fork the next copy, twice (see the module's docstring). In the template: (its pid, the
    channel its environment comes by); OSError if it could not be forked. In the copy: None, once
    it has joined the environment it was given."""
    channel, spare_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        ready_r, ready_w = os.pipe()
    except OSError:
        channel.close()
        spare_end.close()
        raise
    try:
        middle = os.fork()
    except OSError:
        for end in (ready_r, ready_w):
            os.close(end)
        channel.close()
        spare_end.close()
        raise
    if middle == 0:  # the middle: fork the copy, tell the template its pid, and go
        try:
            copy = os.fork()
        except BaseException:
            os._exit(1)
        if copy != 0:
            os.write(ready_w, str(copy).encode())
            os._exit(0)
        _become_copy(spare_end, (control, channel), private_tmp, max_fd)
        return None
    os.close(ready_w)
    spare_end.close()
    try:
        pid = os.read(ready_r, 32)
    finally:
        os.close(ready_r)
    os.waitpid(middle, 0)  # once the middle is gone, the copy's parent is the server
    if not pid:
        # A copy the middle forked before it died waits on its channel: closing ours ends it.
        channel.close()
        raise OSError("the copy could not be forked")
    return int(pid), channel


def _become_copy(spare_end, template_sockets, private_tmp, max_fd):
    """The copy's side, in order: what it drops of the template's, what it makes its own ahead of
    its environment (as a spare), what it joins once given one. It returns only once joined (then
    `_restored` takes the environment's identity); anything failing ends it, never falling back
    into the template's loop."""
    try:
        # Dropped: the template's sockets (closed as objects, so that collecting them later cannot
        # close a descriptor number reused meanwhile), then every other descriptor it inherited but
        # its channel. (Its Runtime API connection was closed before the template parked.)
        for sock in template_sockets:
            sock.close()
        keep = spare_end.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, max_fd)
        # Its own: a mount namespace with an empty /tmp, and random state.
        if private_tmp is not None:
            private_tmp.enter()
        reseed()
        # Its environment, when the template hands one over:
        message, fds, _, _ = socket.recv_fds(spare_end, 1 << 16, 4)
        if not message:  # never used: the template is gone
            os._exit(0)
        request = json.loads(message)
        os.setsid()  # out of the template's session
        output, report = fds[0], fds[1]
        os.dup2(output, 1)  # stdout and stderr onto the environment's pipe
        os.dup2(output, 2)
        for fd in fds:
            if fd != report:
                os.close(fd)
        for tasks in request.get("cgroup_tasks", ()):  # the environment's cgroups
            fd = os.open(tasks, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        os.environ.update(request.get("environ", {}))  # its Runtime API, its log stream
        try:
            os.write(report, str(os.getpid()).encode())
        finally:
            os.close(report)
        spare_end.send(b"JOINED")
        spare_end.close()
    except BaseException as exc:
        os.write(2, f"lambdalet bootstrap: the restored copy could not join its environment: {exc}\n".encode())
        os._exit(1)


def _restored(snapshot):
    """The copy goes on as a SnapStart runtime in its new environment, under its identity there."""
    from bootstrap.client import RuntimeClient
    from bootstrap.context import FunctionInfo
    runtime = snapshot.runtime
    config = runtime.config
    config.runtime_api = os.environ["AWS_LAMBDA_RUNTIME_API"]
    config.function = FunctionInfo.from_environ(os.environ)
    runtime.client = RuntimeClient(config.runtime_api)
    return snapshot.restore()


def _max_fd():
    try:
        import resource
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError, OSError):
        return 1024
