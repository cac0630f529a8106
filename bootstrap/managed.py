"""The entry of lambdalet's managed Python runtimes (python3.9 ... python3.14): copied as
`bootstrap.py` into the runtime directory (shown at /var/runtime, LAMBDA_RUNTIME_DIR) and run as a
script, as Lambda runs its own `/var/runtime/bootstrap.py`:

    /var/lang/bin/python3.12 -S /var/runtime/bootstrap.py [SDK]

`-S`: no `site` at start-up, so nothing of the host's site-packages, user site or `.pth` files
reaches the function; the script's directory (the runtime directory) is sys.path[0], as on Lambda.
SDK is the directory of the runtime's bundled AWS SDK (absent or empty: none), which
`bootstrap.__main__.setup_sys_path` puts where the managed runtime has it. The handler then sees
Lambda's `sys.argv`, `['/var/runtime/bootstrap.py']`.

Standard library only, like the rest of the runtime client.
"""

import sys


def start():
    import os
    debug = os.environ.pop("_LAMBDALET_DEBUG", None)  # `lambdalet serve --debug-port` (runtime_api/debug.py)
    if debug:
        wait_for_debugger(*debug.split(":", 2))
    sdk = sys.argv[1] if len(sys.argv) > 1 else ""
    del sys.argv[1:]
    from bootstrap.__main__ import main
    return main(managed=True, sdk=sdk or None)


def wait_for_debugger(host, port, location):
    """debugpy listening on host:port, and a debugger attached, before any of the function runs.
    debugpy's directory is on sys.path only while it is imported."""
    sys.path.append(location)
    try:
        import debugpy
    finally:
        sys.path.remove(location)
    debugpy.listen((host, int(port)))
    print(f"debugpy: the runtime waits for a debugger at {host}:{port}", file=sys.stderr, flush=True)
    debugpy.wait_for_client()


if __name__ == "__main__":
    sys.exit(start())
