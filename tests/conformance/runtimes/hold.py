"""The hand-driven runtime: it makes no Runtime API calls itself, the test does them.

It reports its start (pid, argv, environment, cwd) to the test through the FIFO named by
CONFORMANCE_EVENTS, then waits. On SIGUSR1 it exits with the code the test wrote to
CONFORMANCE_DIR/exit-<pid>, so a scenario can end the runtime at an exact point of the protocol.
"""

import json
import os
import signal
import sys


def exit_as_told(signum, frame):
    with open(os.path.join(os.environ["CONFORMANCE_DIR"], f"exit-{os.getpid()}")) as f:
        os._exit(int(f.read()))


signal.signal(signal.SIGUSR1, exit_as_told)
pid = os.getpid()
info = {"pid": pid, "pgid": os.getpgid(0), "argv": sys.argv[1:], "cwd": os.getcwd(),
        "env": dict(os.environ)}
with open(os.path.join(os.environ["CONFORMANCE_DIR"], f"runtime-{pid}.json"), "w") as f:
    json.dump(info, f)
fd = os.open(os.environ["CONFORMANCE_EVENTS"], os.O_WRONLY)
os.write(fd, f"{pid}\n".encode())
os.close(fd)
while True:
    signal.pause()
