"""`python -m bootstrap [handler]`: the entry point of the runtime.

Reads argv and the environment once (`Config`), sets up sys.path as the managed Python runtimes do,
then hands everything to `bootstrap.runtime.start`. Imports only what reaching the first `GET next`
needs.
"""

import os
import sys


def setup_sys_path(config, *, managed=False, sdk=None):
    """sys.path as the managed runtimes' bootstrap.py leaves it: LAMBDA_TASK_ROOT first, then (when
    PYTHONPATH is not set) the layers' /opt/python/lib/python3.X/site-packages and /opt/python,
    `.pth` files honoured in all three (site.addsitedir, which also appends the layer directories
    again when they do not exist, as seen on Lambda).

    `managed` (lambdalet's python3.X runtimes, bootstrap/managed.py): sys.path[0] is the runtime
    directory, and `sdk` (the runtime-included SDK, if any) goes where Lambda has it: for Python
    3.11 and later in the interpreter's site-packages (at the end, where `site` puts it) and, without
    PYTHONPATH, again ahead of the runtime directory; for 3.9 and 3.10 in the runtime directory
    itself, that is just after it."""
    import site
    if managed and sys.flags.no_site:  # started with -S: what `site` would have given the builtins
        site.setquit()
        site.setcopyright()
        site.sethelper()
    if managed and sdk:
        if sys.version_info >= (3, 11):
            site.addsitedir(sdk)
            if not config.python_path_set:
                sys.path.insert(0, sdk)
        else:
            sys.path.insert(1, sdk)
    layer_paths = []
    if not config.python_path_set:
        layer_paths = ["/opt/python/lib/python{}.{}/site-packages".format(*sys.version_info[:2]),
                       "/opt/python"]
        sys.path[0:0] = layer_paths
    if config.task_root:
        sys.path.insert(0, config.task_root)
        site.addsitedir(config.task_root)
    for path in layer_paths:
        site.addsitedir(path)


def main(argv=None, environ=None, *, managed=False, sdk=None):
    # Started with `python -c` (the shell bootstrap does, to skip importing runpy), sys.path[0] is ""
    # where `-m` would have put the working directory: make it the same, so handler modules get
    # absolute file names (in stack traces) exactly as under `-m`.
    if sys.path and sys.path[0] == "":
        sys.path[0] = os.getcwd()
    from bootstrap.config import Config, ConfigError
    environ = os.environ if environ is None else environ
    try:
        config = Config.from_environ(sys.argv if argv is None else argv, environ)
    except ConfigError as e:
        sys.stderr.write(f"lambdalet bootstrap: {e}\n")
        return 1
    # The telemetry fd is ours alone: child processes must not inherit the contract.
    environ.pop("_LAMBDA_TELEMETRY_LOG_FD", None)
    environ.pop("_LAMBDALET_TEMPLATE", None)
    setup_sys_path(config, managed=managed, sdk=sdk)
    if managed and not config.python_path_set and environ.get("LAMBDA_RUNTIME_DIR"):
        # As bootstrap.py does, for the function's child processes (Lambda's documented PYTHONPATH).
        environ["PYTHONPATH"] = environ["LAMBDA_RUNTIME_DIR"]

    from bootstrap import logs
    from bootstrap.client import RuntimeClient
    from bootstrap.runtime import start

    logs.wrap_std_streams()
    runtime_logs = logs.Logs(config.log_format, config.log_level,
                             logs.open_sink(config.telemetry_fd, config.log_format),
                             config.ensure_ascii)
    runtime_logs.install_logging()
    start(RuntimeClient(config.runtime_api), config, runtime_logs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
