"""The cgroup v2 scenarios, run as root inside the guest (tests/vm/test_cgroup_v2.py boots it) against
the real `lambdalet serve` of this checkout. Standard library only: it runs on the host's Python,
seen read-only in the guest.

Usage: python guest_scenarios.py RESULTS_DIR

Each scenario writes one line to RESULTS_DIR/scenarios.txt as soon as it is decided:

    LAMBDALET-VM-SCENARIO <name> PASS|FAIL <one JSON object: what was seen>

and the script ends with `LAMBDALET-VM-DONE <number of scenarios>`. The test accepts nothing else.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests"))
from serve_process import ServeProcess  # noqa: E402  (tests/ is not a package)

CGROUP = "/sys/fs/cgroup"
NOBODY = 65534
BOUND = 240.0  # seconds: only so that a broken server fails its scenario instead of hanging the guest
DELEGATED = os.path.join(CGROUP, "delegated")

HANDLERS = '''
import json, os, socket, subprocess, time

def whoami(event, context):
    return {"pid": os.getpid(), "cgroup": open("/proc/self/cgroup").read().strip()}

def hog(event, context):
    chunks = []
    for _ in range(event.get("mb", 512) // 8):
        chunks.append(b"x" * (8 << 20))  # written, so charged
    return {"allocated_mb": 8 * len(chunks)}

def allocate(event, context):
    data = b"x" * (event["mb"] << 20)
    return {"allocated_mb": len(data) >> 20}

def fork_bomb(event, context):
    children, refused = [], None
    while len(children) < 5000:
        try:
            pid = os.fork()
        except OSError as exc:
            refused = exc.errno
            break
        if pid == 0:
            os.execv("/bin/sleep", ["sleep", "1000"])  # small, so 1024 of them fit in the guest
        children.append(pid)
    for pid in children:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return {"forked": len(children), "refused": refused}

def tree_and_hang(event, context):
    child = subprocess.Popen(["sleep", "1000"])
    read_end, write_end = os.pipe()
    first = os.fork()
    if first == 0:
        os.setsid()  # out of the runtime's process group and session
        second = os.fork()
        if second == 0:
            os.execvp("sleep", ["sleep", "1000"])
        os.write(write_end, str(second).encode())
        os._exit(0)
    os.waitpid(first, 0)
    daemon = int(os.read(read_end, 32))
    pids = {"runtime": os.getpid(), "child": child.pid, "daemon": daemon}
    with socket.create_connection(("127.0.0.1", int(os.environ["REPORT_PORT"]))) as report:
        report.sendall(json.dumps(pids).encode())
    while True:
        time.sleep(1000)

def spin(event, context):
    start = time.perf_counter()
    n = 0
    for _ in range(event["n"]):
        n += 1
    return {"seconds": time.perf_counter() - start, "cgroup": open("/proc/self/cgroup").read().strip()}

def hold(event, context):
    time.sleep(event.get("hold", 0))
    return {"pid": os.getpid(), "cgroup": open("/proc/self/cgroup").read().strip()}
'''


class Results:
    def __init__(self, directory: str) -> None:
        self.file = open(os.path.join(directory, "scenarios.txt"), "w")
        self.count = 0
        self.started = time.monotonic()

    def say(self, name: str, passed: bool, seen: dict) -> None:
        self.count += 1
        seen = {**seen, "at_s": round(time.monotonic() - self.started, 1)}
        line = f"LAMBDALET-VM-SCENARIO {name} {'PASS' if passed else 'FAIL'} {json.dumps(seen, sort_keys=True)}"
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def run(self, name: str, scenario, *args) -> None:
        try:
            passed, seen = scenario(*args)
        except Exception as exc:  # one scenario's failure is its line; the others still run
            passed, seen = False, {"exception": repr(exc), "trace": traceback.format_exc()[-1500:]}
        self.say(name, passed, seen)

    def done(self) -> None:
        self.file.write(f"LAMBDALET-VM-DONE {self.count}\n")
        self.file.close()


def function(name: str, handler: str, **settings) -> str:
    lines = [f'name = "{name}"', 'code = "fn"', f'handler = "app.{handler}"', 'sdk = "none"',
             'isolation = "standard"']
    for key, value in settings.items():
        lines.append(f"{key} = {json.dumps(value) if not isinstance(value, dict) else _table(value)}")
    return "[[function]]\n" + "\n".join(lines) + "\n\n"


def _table(values: dict) -> str:
    return "{ " + ", ".join(f"{key} = {json.dumps(value)}" for key, value in values.items()) + " }"


class Server(ServeProcess):
    """`lambdalet serve --config` as root, or wrapped by `prefix` (setpriv: as `owner`)."""

    def __init__(self, root: str, config: str, prefix: list[str] | None = None, owner: int | None = None) -> None:
        home = os.path.join(root, "home")
        os.makedirs(home, exist_ok=True)
        libraries = os.environ.get("LAMBDALET_VM_LIBRARIES")
        if libraries:  # what the managed runtime includes, fetched by the host: the guest is offline
            shutil.copytree(libraries, os.path.join(home, "cache", "lambdalet", "libraries",
                                                    os.path.basename(libraries)))
        if owner is not None:
            for directory, _, files in os.walk(root):
                for path in (directory, *(os.path.join(directory, name) for name in files)):
                    os.chown(path, owner, owner)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": home, "PYTHONPATH": REPO,
               "LANG": "C.UTF-8", "XDG_CACHE_HOME": os.path.join(home, "cache"),
               "XDG_STATE_HOME": os.path.join(home, "state"), "PYTHONDONTWRITEBYTECODE": "1"}
        argv = [*(prefix or []), sys.executable, "-m", "runtime_api.cli", "serve", "--config", config, "--port", "0"]
        super().__init__(argv, env, root, subprocess.DEVNULL, BOUND)


def max_memory_used(tail: str) -> int:
    return int(re.search(r"Max Memory Used: (\d+) MB", tail)[1])


def our_cgroups(top: str = CGROUP) -> list[str]:
    found = []
    for directory, subdirectories, _ in os.walk(top):
        found += [os.path.join(directory, name) for name in subdirectories if name.startswith("lambdalet-")]
    return found


def cgroup_of(cgroup_line: str) -> str:
    """The directory of a `0::/path` line of /proc/<pid>/cgroup."""
    return CGROUP + cgroup_line.rpartition("::")[2]


def pidfds(pids: dict[str, int]) -> dict[str, int | None]:
    """A pidfd per process (None: already gone), so that waiting on them cannot meet a reused pid."""
    fds: dict[str, int | None] = {}
    for name, pid in pids.items():
        try:
            fds[name] = os.pidfd_open(pid)
        except OSError:  # ESRCH, or EINVAL once reaped
            fds[name] = None
    return fds


def wait_gone(fds: dict[str, int | None], timeout: float) -> dict[str, bool]:
    """Wait (on the pidfds, not by polling) until each process has ended; which have. Closes them."""
    deadline = time.monotonic() + timeout
    try:
        for fd in fds.values():
            if fd is not None:
                select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        return {name: fd is None or bool(select.select([fd], [], [], 0)[0]) for name, fd in fds.items()}
    finally:
        for fd in fds.values():
            if fd is not None:
                os.close(fd)


# -- the scenarios ---------------------------------------------------------------------------------

def stale_cgroup() -> tuple[str, int]:
    """A cgroup of a lambdalet that no longer runs, with a process still in it."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    directory = os.path.join(CGROUP, f"lambdalet-{dead.pid}-7")
    os.mkdir(directory)
    sleeper = subprocess.Popen(["/bin/sh", "-c", f"echo 0 > {directory}/cgroup.procs && exec sleep 1000"])
    return directory, sleeper


def out_of_memory(server: Server) -> tuple[bool, dict]:
    before = server.invoke("ok")
    error, answer = server.invoke("hog", {"mb": 512})
    tail = server.last_log
    after_error, after = server.invoke("ok")
    seen = {"function_error": error, "errorType": answer.get("errorType"),
            "report_has_oom": "Error Type: Runtime.OutOfMemory" in tail,
            "max_memory_used": max_memory_used(tail), "serves_on": after_error is None and after["pid"] == before[1]["pid"]}
    return (error == "Unhandled" and answer.get("errorType") == "Runtime.OutOfMemory" and seen["report_has_oom"]
            and seen["max_memory_used"] == 128 and seen["serves_on"]), seen


def max_memory(server: Server) -> tuple[bool, dict]:
    server.invoke("alloc", {"mb": 0})
    baseline = max_memory_used(server.last_log)
    _, answer = server.invoke("alloc", {"mb": 100})
    peak = max_memory_used(server.last_log)
    seen = {"baseline_mb": baseline, "peak_mb": peak, "allocated_mb": answer.get("allocated_mb"),
            "grown_mb": peak - baseline}
    return answer.get("allocated_mb") == 100 and 95 <= peak - baseline <= 125, seen


def fork_bomb(server: Server) -> tuple[bool, dict]:
    error, answer = server.invoke("bomb")
    other_error, _ = server.invoke("ok")
    seen = {"function_error": error, **answer, "others_serve": other_error is None}
    return error is None and answer["forked"] < 1024 and answer["refused"] == 11 and other_error is None, seen


def timeout_kills_daemon(server: Server, listener: socket.socket) -> tuple[bool, dict]:
    result: dict = {}
    caller = threading.Thread(target=lambda: result.update(answer=server.invoke("hang")))
    caller.start()
    listener.settimeout(BOUND)
    connection, _ = listener.accept()
    with connection:
        pids = json.loads(connection.recv(4096))
    pinned = pidfds(pids)  # before the kill: no pid can be reused under the wait
    caller.join(BOUND)
    error, answer = result["answer"]
    gone = wait_gone(pinned, 60.0)
    seen = {"errorType": answer.get("errorType"), "gone": gone}
    return answer.get("errorType") == "Sandbox.Timedout" and all(gone.values()), seen


def cpu_model(server: Server) -> tuple[bool, dict]:
    n = 300_000
    server.invoke("cpu_host", {"n": 1000})  # the environments are up before anything is timed
    error, answer = server.invoke("cpu_lambda", {"n": 1000})
    if error is not None:
        return False, {"cold_start": answer}
    unlimited = server.invoke("cpu_host", {"n": n})[1]["seconds"]
    limited = server.invoke("cpu_lambda", {"n": n})[1]["seconds"]
    cpu_max = open(os.path.join(cgroup_of(answer["cgroup"]), "cpu.max")).read().strip()
    ratio = limited / unlimited
    seen = {"unlimited_s": round(unlimited, 3), "lambda_s": round(limited, 3), "ratio": round(ratio, 1),
            "expected_ratio": round(1769 / 128, 1), "cpu.max": cpu_max}
    return ratio > 4 and cpu_max == "7236 100000", seen


def snapstart_copies(server: Server) -> tuple[bool, dict]:
    answers: list = []
    callers = [threading.Thread(target=lambda: answers.append(server.invoke("snap", {"hold": 4})[1])) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(BOUND)
    groups = [cgroup_of(answer["cgroup"]) for answer in answers]
    limits = [open(os.path.join(group, "memory.max")).read().strip() for group in groups]
    members = [answer["pid"] in [int(pid) for pid in open(os.path.join(group, "cgroup.procs")).read().split()]
               for answer, group in zip(answers, groups)]
    copies = "fork templates" in " ".join(server.lines)
    # The template (and its spare) is in the one cgroup of those processes whose limit was lifted.
    templates = sorted({group for group in (cgroup_of(open(f"/proc/{pid}/cgroup").read().strip())
                                            for pid in templates_running())
                        if open(os.path.join(group, "memory.max")).read().strip() == "max"})
    seen = {"cgroups": groups, "memory.max": limits, "members": members, "fork_template": copies,
            "template_cgroups": templates}
    # Each copy's limit is the memory size less what it shares with its template (charged there),
    # as a restored snapshot's memory counts on Lambda: the same for copies of one template.
    return (copies and len(set(groups)) == 2 and all(os.path.basename(g).startswith("lambdalet-") for g in groups)
            and len(set(limits)) == 1 and 4 << 20 <= int(limits[0]) < 128 << 20 and all(members)
            and len(templates) == 1 and templates[0] not in groups), seen


def templates_running() -> list[int]:
    """The SnapStart templates, their spares and copies (_LAMBDALET_TEMPLATE in their environment)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if b"\0_LAMBDALET_TEMPLATE=" in b"\0" + f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def nothing_left(server: Server, pids: dict[str, int], stale: str) -> tuple[bool, dict]:
    status = server.stop()
    left = our_cgroups()
    gone = wait_gone(pidfds(pids), 30.0)
    seen = {"exit_status": status, "cgroups_left": left, "gone": gone, "stale_removed": not os.path.exists(stale)}
    return not left and all(gone.values()) and seen["stale_removed"], seen


def delegated(root: str) -> tuple[bool, dict]:
    """As nobody, in a subtree delegated as systemd's Delegate=yes does it: the cgroup and its
    cgroup.procs, cgroup.subtree_control and cgroup.threads owned by the user."""
    os.makedirs(DELEGATED, exist_ok=True)
    for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
        os.chown(os.path.join(DELEGATED, name), NOBODY, NOBODY)
    join = f'echo $$ > {DELEGATED}/cgroup.procs && exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups "$@"'
    server = Server(root, os.path.join(root, "functions.toml"), ["/bin/sh", "-c", join, "sh"], owner=NOBODY)
    try:
        error, answer = server.invoke("hog", {"mb": 512})
        _, where = server.invoke("ok")
        environment = cgroup_of(where["cgroup"])
        host_cgroup = open(f"/proc/{server.proc.pid}/cgroup").read().strip()
    finally:
        status = server.stop()
    seen = {"errorType": answer.get("errorType"), "environment_cgroup": environment, "server_cgroup": host_cgroup,
            "warnings": server.warnings, "exit_status": status}
    leftovers = [entry.name for entry in os.scandir(DELEGATED) if entry.is_dir()]
    seen["subdirectories_left"] = leftovers
    return (answer.get("errorType") == "Runtime.OutOfMemory" and environment.startswith(DELEGATED + "/lambdalet-")
            and host_cgroup.endswith("-host") and not any("cgroup" in w for w in server.warnings)
            and not leftovers), seen


def undelegated(root: str) -> tuple[bool, dict]:
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    server = Server(root, os.path.join(root, "functions.toml"), drop, owner=NOBODY)
    try:
        error, answer = server.invoke("ok")
    finally:
        server.stop()
    about = [w for w in server.warnings if "cgroup" in w or "memory limit" in w or "process limit" in w]
    seen = {"cgroup_warnings": about, "serves": error is None}
    return (len(about) == 1 and "no cgroup is writable" in about[0] and "Delegate=yes" in about[0]
            and error is None and not our_cgroups()), seen


def doctor_host() -> tuple[bool, dict]:
    """`lambdalet doctor --host` as root (every controller usable on v2) and as nobody (none)."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": REPO, "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"}
    reports = {}
    for who, prefix in (("root", []), ("nobody", ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"])):
        run = subprocess.run([*prefix, sys.executable, "-m", "runtime_api.cli", "doctor", "--host", "--json"],
                             env=env, cwd="/", capture_output=True, text=True, timeout=BOUND)
        if run.returncode != 0:
            return False, {who: run.stderr[-1500:]}
        report = json.loads(run.stdout)
        reports[who] = {"mode": report["cgroup_mode"],
                        "controllers": {c["name"]: [c["hierarchy"], c["usable"], c["problem"]]
                                        for c in report["controllers"]},
                        "standard_gets": [level for level in report["levels"] if level["isolation"] == "standard"][0]["gets"]}
    root, nobody = reports["root"], reports["nobody"]
    return (root["mode"] == nobody["mode"] == "v2"
            and all(c[:2] == ["cgroup v2", True] for c in root["controllers"].values())
            and all(c[:2] == ["cgroup v2", False] and "not writable" in c[2] for c in nobody["controllers"].values())
            and any(item.startswith("memory limit through cgroup v2") for item in root["standard_gets"])
            and our_cgroups() == []), reports


def cgroup_namespace(root: str) -> tuple[bool, dict]:
    """As root of a container with its own cgroup namespace: lambdalet sees its cgroup as "/",
    which is not the hierarchy's real root, so it moves itself into a leaf there too."""
    container = os.path.join(CGROUP, "container")
    os.mkdir(container)
    enter = os.path.join(root, "enter.sh")
    with open(enter, "w") as f:
        f.write(f"echo $$ > {container}/cgroup.procs\n"
                "exec unshare --cgroup --mount --propagation private /bin/sh -c "
                "'umount /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec \"$@\"' sh \"$@\"\n")
    server = Server(root, os.path.join(root, "functions.toml"), ["/bin/sh", enter])
    try:
        error, answer = server.invoke("hog", {"mb": 512})
        _, where = server.invoke("ok")
        inside = where["cgroup"]
        host_cgroup = open(f"/proc/{server.proc.pid}/cgroup").read().strip()
    finally:
        status = server.stop()
    left = [entry.name for entry in os.scandir(container) if entry.is_dir()]
    os.rmdir(container)
    seen = {"errorType": answer.get("errorType"), "environment_cgroup_inside": inside, "server_cgroup": host_cgroup,
            "cgroup_warnings": [w for w in server.warnings if "cgroup" in w], "exit_status": status,
            "subdirectories_left": left}
    return (answer.get("errorType") == "Runtime.OutOfMemory" and inside.startswith("0::/lambdalet-")
            and host_cgroup.startswith("0::/container/lambdalet-") and host_cgroup.endswith("-host")
            and not seen["cgroup_warnings"] and not left), seen


def unprivileged_root(name: str) -> str:
    root = tempfile.mkdtemp(prefix=f"lambdalet-vm-{name}-")
    os.chmod(root, 0o755)
    code = os.path.join(root, "fn")
    os.mkdir(code)
    with open(os.path.join(code, "app.py"), "w") as f:
        f.write(textwrap.dedent(HANDLERS))
    with open(os.path.join(root, "functions.toml"), "w") as f:
        f.write(function("ok", "whoami") + function("hog", "hog", memory=128, timeout=120.0))
    return root


def main(results_dir: str) -> None:
    results = Results(results_dir)
    root = tempfile.mkdtemp(prefix="lambdalet-vm-")
    code = os.path.join(root, "fn")
    os.mkdir(code)
    with open(os.path.join(code, "app.py"), "w") as f:
        f.write(textwrap.dedent(HANDLERS))
    listener = socket.create_server(("127.0.0.1", 0))
    functions = (function("ok", "whoami")
                 + function("hog", "hog", memory=128, timeout=120.0)
                 + function("alloc", "allocate", memory=256, timeout=120.0, concurrency=1)
                 + function("bomb", "fork_bomb", memory=512, timeout=240.0)
                 + function("hang", "tree_and_hang", timeout=5.0, env={"REPORT_PORT": str(listener.getsockname()[1])})
                 + function("cpu_host", "spin", memory=128, timeout=240.0, concurrency=1)
                 # Its runtime starts at Lambda's 7% of a core of an emulated CPU: a longer init.
                 + function("cpu_lambda", "spin", memory=128, timeout=240.0, init_timeout=240.0, concurrency=1,
                            cpu_model="lambda")
                 + function("snap", "hold", memory=128, timeout=60.0, snapstart=True, concurrency=2))
    config = os.path.join(root, "functions.toml")
    with open(config, "w") as f:
        f.write(functions)
    stale, sleeper = stale_cgroup()
    server = None
    try:
        server = Server(root, config)
        results.say("root_starts", not any("cgroup" in w for w in server.warnings), {"warnings": server.warnings})
        results.run("out_of_memory", out_of_memory, server)
        results.run("max_memory_used", max_memory, server)
        results.run("fork_bomb", fork_bomb, server)
        results.run("timeout_kills_daemon", timeout_kills_daemon, server, listener)
        results.run("cpu_model_lambda", cpu_model, server)
        results.run("snapstart_copies", snapstart_copies, server)
        results.run("nothing_left_after_stop", nothing_left, server, {"stale_member": sleeper.pid}, stale)
        sleeper.wait()
    except Exception as exc:
        results.say("root_server", False, {"exception": repr(exc), "lines": server.lines[-30:] if server else []})
        if server is not None:
            server.stop()
    results.run("container_cgroup_namespace", cgroup_namespace, unprivileged_root("container"))
    results.run("delegated_user", delegated, unprivileged_root("delegated"))
    results.run("undelegated_user", undelegated, unprivileged_root("undelegated"))
    results.run("doctor_host", doctor_host)
    listener.close()
    shutil.rmtree(root, ignore_errors=True)
    results.done()


if __name__ == "__main__":
    main(sys.argv[1])
