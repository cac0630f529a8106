"""Shared pieces of the benchmarks: starting a server on free loopback ports and stopping it with
everything it started, a recording pass-through proxy, showing closed directories to an
unprivileged user, percentiles, the machine description, and writing results (JSON + Markdown).
The tests use some of them too (they may import benchmarks; benchmarks never import tests).

Process hygiene: the benchmark process makes itself a child subreaper, so a runtime orphaned by a
crashing server (AWS's RIE puts its runtime in its own process group and panics on concurrent
invokes) is re-parented to us; `Server.stop` kills the server, then every process group it had
started, and reaps them.
"""

from __future__ import annotations

import ctypes
import datetime
import itertools
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PYTHON = sys.executable  # the real interpreter, never a pyenv shim (a shell script started before every run)
REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
HOST = "127.0.0.1"
ECHO_HANDLER = "def handler(e, c):\n    return e\n"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class PassThroughProxy:
    """TCP pass-through from 127.0.0.1:<port> to `upstream` that records every piece of traffic as
    (time.time(), "up" (client to upstream) or "down", connection number, bytes), in the order the
    pieces arrived. Threads, so that it serves blocking and trio programs alike."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.pieces: list[tuple[float, str, int, bytes]] = []
        self.lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        for number in itertools.count():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            for each in (client, server):
                each.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, "up", number), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, "down", number), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str, number: int) -> None:
        try:
            while True:
                data = src.recv(65536)
                at = time.time()
                if not data:
                    break
                with self.lock:
                    self.pieces.append((at, direction, number, data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def recorded(self) -> list[tuple[float, str, int, bytes]]:
        with self.lock:
            return list(self.pieces)

    def close(self) -> None:
        self.sock.close()
        for each in self._sockets:
            try:
                each.close()
            except OSError:
                pass


def function_dir(root: Path, source: str = ECHO_HANDLER, module: str = "app") -> Path:
    directory = root / "function"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{module}.py").write_text(source)
    return directory


# --- processes ------------------------------------------------------------------------------

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Orphans of the servers we start are re-parented to us, so we can reap them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    start: int  # start time in clock ticks: tells a live process from a reused pid


def _stat(pid: int) -> ProcInfo | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()  # after "pid (comm) ": state ppid pgrp ...
    return ProcInfo(pid, int(fields[1]), int(fields[2]), int(fields[19]))


def _all_processes() -> list[ProcInfo]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = _stat(int(name))
            if info is not None:
                out.append(info)
    return out


def descendants(root: int) -> list[ProcInfo]:
    procs = _all_processes()
    children: dict[int, list[ProcInfo]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child.pid)
    return out


def _same_process(info: ProcInfo) -> bool:
    now = _stat(info.pid)
    return now is not None and now.start == info.start


def _reap(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """Reap `pid` if it is (now) our child; wait until it is gone otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not ours: someone else reaps it
            if not os.path.exists(f"/proc/{pid}"):
                return
            done = 0
        if done:
            return
        time.sleep(0.002)


def kill_tree(known: list[ProcInfo]) -> int:
    """SIGKILL each known process's group (never our own) and the process, then reap. Returns how
    many were still alive."""
    own_group = os.getpgrp()
    alive = [p for p in known if _same_process(p)]
    for p in alive:
        if p.pgid not in (own_group, 0):
            try:
                os.killpg(p.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in alive:
        _reap(p.pid)
    return len(alive)


def stray_children(exclude: set[int]) -> list[ProcInfo]:
    """Processes re-parented to us (we are a subreaper) that we did not start directly."""
    me = os.getpid()
    return [p for p in _all_processes() if p.ppid == me and p.pid not in exclude]


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used (0.0 once it is gone); 10 ms resolution."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0.0
    fields = data[data.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = READY_TIMEOUT) -> float:
    """Bounded connect-retry until `port` accepts; returns the seconds it took."""
    started = time.perf_counter()
    deadline = started + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return time.perf_counter() - started
        except OSError:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"port {port} not accepting after {timeout:.0f} s") from None
            time.sleep(0.002)  # retry back-off, not a readiness guess


def stop_process(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT, *, group: bool = False) -> int:
    """SIGTERM, SIGKILL if it has not exited within `timeout` seconds, and reap; its exit status.
    `group`: signal its whole process group (it was started with start_new_session), even when the
    process itself has already exited."""
    def send(signum: int) -> None:
        try:
            if group:
                os.killpg(proc.pid, signum)
            elif proc.poll() is None:
                proc.send_signal(signum)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
    return proc.wait()


@dataclass
class Server:
    """One running server: `argv` is built from (invoke_port, runtime_api_port)."""

    name: str
    argv: list[str]
    cwd: Path
    invoke_port: int
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None
    proc: subprocess.Popen | None = None
    known: dict[int, ProcInfo] = field(default_factory=dict)
    ready_seconds: float = 0.0
    exit_code: int | None = None
    max_runtimes: int = 0

    def start(self) -> "Server":
        log_dir = self.log_dir or Path(tempfile.gettempdir())
        self._out = open(log_dir / f"{self.name}.stdout.log", "ab")
        self._err = open(log_dir / f"{self.name}.stderr.log", "ab")
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env={**os.environ, **self.env},
                                     stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err)
        try:
            self.ready_seconds = wait_for_port(self.invoke_port, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def snapshot(self) -> int:
        """Remember every process the server has started so far (to kill after a crash); returns
        how many are alive now."""
        found = descendants(self.proc.pid)
        for p in found:
            self.known[p.pid] = p
        self.max_runtimes = max(self.max_runtimes, len(found))
        return len(found)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.snapshot()
        self.exit_code = stop_process(self.proc)
        self.leftovers = kill_tree(list(self.known.values()))
        self._out.close()
        self._err.close()

    def stderr_tail(self, n: int = 2000) -> str:
        path = Path(self._err.name)
        return path.read_bytes()[-n:].decode(errors="replace") if path.exists() else ""

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- as an unprivileged user -----------------------------------------------------------------

def closed_ancestor(path: str | Path) -> str | None:
    """The outermost directory on `path` that others cannot traverse, or None."""
    current = "/"
    for part in Path(path).parts[1:]:
        current = os.path.join(current, part)
        if os.path.isdir(current) and not os.stat(current).st_mode & 0o001:
            return current
    return None


def shown_to_others(paths: list[str], stage: Path) -> tuple[list[str], dict[str, str]]:
    """A command prefix under which every user reaches `paths` where a directory closed to others
    hides them (pyenv in root's 0700 home, a checkout in a `mktemp -d` directory): a private mount
    namespace, made by root around the command, with a 0755 tmpfs over each closed directory and
    the paths bound back (through `stage`, a directory root can write). Nothing changes on the host.
    Also {path: the closed directory hiding it}; ([], {}) when nothing is hidden or util-linux's
    unshare is missing."""
    unshare = shutil.which("unshare")
    shown = {path: closed for path in sorted(set(paths)) if (closed := closed_ancestor(path)) is not None}
    if not shown or unshare is None:
        return [], {}
    closed_dirs = sorted(set(shown.values()), key=len)
    outermost = [c for c in closed_dirs if not any(c.startswith(o + "/") for o in closed_dirs if o != c)]
    staged = [(shlex.quote(path), shlex.quote(str(stage / str(n)))) for n, path in enumerate(shown)]
    steps = [f"mkdir -p {at} && mount --no-mtab --bind {path} {at}" for path, at in staged]
    steps += [f"mount --no-mtab -t tmpfs -o mode=755 tmpfs {shlex.quote(c)}" for c in outermost]  # hides the rest
    steps += [f"mkdir -p {path} && mount --no-mtab --move {at} {path}" for path, at in staged]
    script = " && ".join(steps) + ' && exec "$@"'
    return [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", script, "lambdalet-shown"], shown


def private_opt(opt: Path) -> list[str]:
    """A command prefix that runs the command in a private mount namespace with `opt` bound at
    /opt, so that a server reading the fixed /opt/extensions (AWS's RIE, lambdalet-rie) finds this
    run's extensions and nothing else; the host's /opt is untouched. Needs root (see
    `private_opt_unavailable`)."""
    script = 'mount --no-mtab --bind "$0" /opt && exec "$@"'
    return [shutil.which("unshare") or "unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script,
            str(opt)]


def private_opt_unavailable() -> str | None:
    """Why `private_opt` cannot work here, or None."""
    if os.geteuid() != 0:
        return "a private /opt (a mount namespace with a bind mount) needs root"
    if shutil.which("unshare") is None:
        return "util-linux's unshare is not installed"
    probe = subprocess.run(private_opt(Path("/opt")) + ["true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"no private mount namespace here: {probe.stderr.strip()}"
    return None


# --- statistics -----------------------------------------------------------------------------

def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); q in [0, 100]."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def median(values: list[float]) -> float:
    return percentile(sorted(values), 50)


def latency_summary(samples_ns: list[int]) -> dict[str, float]:
    """p50/p90/p99/mean/max in milliseconds."""
    ms = sorted(s / 1e6 for s in samples_ns)
    return {
        "n": len(ms),
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "mean": sum(ms) / len(ms) if ms else float("nan"),
        "max": ms[-1] if ms else float("nan"),
    }


# --- machine and output ---------------------------------------------------------------------

def python_version(python: str) -> str:
    """The full version of interpreter `python` (e.g. "3.12.1")."""
    if python == PYTHON:
        return platform.python_version()
    return subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                          capture_output=True, text=True, check=True, timeout=30).stdout.strip()


def machine_info() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "nproc": affinity,
        "cpu_model": model,
        "loadavg": list(os.getloadavg()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_executable": PYTHON,
    }


def git_revision() -> tuple[str, list[str]]:
    """The commit measured, "+dirty" when the code under test has uncommitted changes (others work in
    the same tree), and those changed paths."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--", "runtime_api", "bootstrap", "sandbox"],
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", []
    dirty = [line[3:] for line in status.splitlines() if line.strip()]
    return rev + ("+dirty" if dirty else ""), dirty


LAMBDALET_PACKAGES = ("runtime_api", "sandbox", "bootstrap")


def export_tree(ref: str, dest: Path) -> str:
    """Extract lambdalet's packages as committed at `ref` into `dest` (for PYTHONPATH), so that a
    benchmark measures a commit rather than a working tree others are editing. Returns the commit."""
    import io
    import tarfile

    commit = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    archive = subprocess.run(["git", "archive", "--format=tar", commit, *LAMBDALET_PACKAGES], cwd=REPO_ROOT,
                             capture_output=True, check=True, timeout=60).stdout
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return commit


def imported_from(modules: list[str], env: dict[str, str], cwd: Path) -> dict[str, str]:
    """Where a server started with `env` in `cwd` imports each module from (a record of what was
    measured)."""
    code = "import importlib.util, sys\nfor m in sys.argv[1:]:\n    s = importlib.util.find_spec(m)\n" \
           "    print(m, s.submodule_search_locations[0] if s and s.submodule_search_locations else None)"
    out = subprocess.run([PYTHON, "-c", code, *modules], cwd=cwd, env={**os.environ, **env},
                         capture_output=True, text=True, timeout=60).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def command_line(module: str, argv: list[str]) -> str:
    return shlex.join(["python", "-m", module, *argv])


def markdown_table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """`align`: one character per column, 'l' or 'r' (default: first column left, others right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(cells[0]) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join(lines)


def write_results(name: str, data: dict, markdown: str, directory: Path = RESULTS_DIR) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / f"{name}.json", directory / f"{name}.md"
    json_path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    md_path.write_text(markdown.rstrip() + "\n")
    return json_path, md_path
