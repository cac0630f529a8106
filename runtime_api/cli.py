"""The `lambdalet` command: `serve` functions behind the Lambda Invoke API, `invoke` one of them.

Arguments are parsed and the configuration built synchronously; then `trio.run` takes over.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import signal
import sys
from functools import partial
from pathlib import Path
from urllib.parse import quote, urlsplit

import trio

from sandbox.cgroups import CpuModel
from sandbox.isolation import DEFAULT_EPHEMERAL_MB, Isolation

from . import logs
from .config import ConfigError, FunctionConfig, ServerConfig
from .invoke_api import ServiceError
from .reload import Reloader
from .server import InvokeResult, Server, function_names
from .sources import ConfigFileSource, Loaded, Overrides, StaticSource, TemplateSource
from .store import StoreError, default_state_dir

EXAMPLE_CODE = Path(__file__).parent / "examples"


def parse_pairs(flag: str, pairs: list[str], expected: str, convert=str, *, empty_value: bool = False) -> dict[str, str]:
    """A repeatable `FLAG KEY=VALUE` option: {KEY: convert(VALUE)}; ConfigError naming `expected`."""
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not (value or empty_value):
            raise ConfigError(f"{flag} {pair!r}: expected {expected}")
        found[key] = convert(value)
    return found


def _absolute(path: str) -> str:
    return str(Path(path).absolute())


def _resolved(path: str) -> str:
    return str(Path(path).resolve())


def runtime_settings(args: argparse.Namespace) -> dict:
    """The runtime flags given on the command line, as FunctionConfig settings."""
    settings: dict = {}
    if args.runtime_id is not None:
        settings["runtime_id"] = args.runtime_id
    if args.python_path:
        settings["interpreters"] = parse_pairs("--python-path", args.python_path,
                                                "VERSION=PATH, e.g. 3.12=/usr/bin/python3.12", _absolute)
    if args.allow_other_python:
        settings["allow_other_python"] = True
    if args.sdk is not None:
        settings["sdk"] = args.sdk if args.sdk in ("bundled", "none") else str(Path(args.sdk).resolve())
    return settings


def overrides(args: argparse.Namespace) -> Overrides:
    """The settings given on the command line for every function of a template or config file."""
    return Overrides(
        isolation=Isolation(args.isolation) if args.isolation is not None else None,
        cpu_model=CpuModel(args.cpu_model) if args.cpu_model is not None else None,
        ephemeral_storage=args.ephemeral_storage,
        snapstart=args.snapstart,
        provisioned=args.provisioned,
        layers=tuple(args.layer),
        user=args.user,
        debug_port=args.debug_port,
        debug_function=args.debug_function,
        functions=tuple(args.function),
        runtime=runtime_settings(args),
        jwks=parse_pairs("--jwks", getattr(args, "jwks", []), "AUTHORIZER=FILE", _resolved),
    )


def template_source(args: argparse.Namespace, path: str, selected: Overrides) -> TemplateSource:
    from .template import TemplateError, parse_parameter_overrides  # read only when a template is

    layer_map = parse_pairs("--layer-map", args.layer_map, "ARN=DIR", _resolved)
    try:
        parameters = parse_parameter_overrides(" ".join(args.parameter_overrides))
    except (TemplateError, ValueError) as exc:
        raise ConfigError(f"--parameter-overrides: {exc}") from None
    return TemplateSource(path, parameter_overrides=parameters, layer_map=layer_map, overrides=selected,
                          env_vars=str(Path(args.env_vars).resolve()) if args.env_vars else None)


def found_template() -> Path | None:
    """The template SAM would find in the current directory, if there is one."""
    from .template import find_template

    return find_template(Path.cwd())


def serve_source(args: argparse.Namespace) -> tuple[ServerConfig, StaticSource | TemplateSource | ConfigFileSource]:
    """Where the functions come from (a template, a config file, or these flags), and the server's
    own settings. ConfigError (one line) for what cannot be served."""
    host = args.host or "127.0.0.1"
    port = 8080 if args.port is None else args.port
    flags_given = args.code is not None or args.handler is not None
    template = args.template or (None if args.config or flags_given else found_template())
    if template is not None:
        return ServerConfig(host=host, port=port), template_source(args, str(template), overrides(args))
    if args.config:
        def listen_as_asked(config: ServerConfig) -> None:
            config.host, config.port = args.host or config.host, args.port if args.port is not None else config.port

        source = ConfigFileSource(args.config, overrides=overrides(args), adjust=listen_as_asked)
        return ServerConfig(), source  # its own, once read
    example = not flags_given
    code = str(EXAMPLE_CODE) if example else (args.code or ".")
    function = FunctionConfig(
        name=args.function_name or ("hello" if example else "function"),
        handler=args.handler or "app.handler",
        code=str(Path(code).resolve()),
        runtime=args.runtime,
        timeout=args.timeout,
        memory=args.memory,
        concurrency=args.concurrency,
        idle_timeout=args.idle_timeout,
        env=parse_pairs("--env", args.env, "KEY=VALUE", empty_value=True),
        isolation=args.isolation,
        ephemeral_storage=DEFAULT_EPHEMERAL_MB if args.ephemeral_storage is None else args.ephemeral_storage,
        cpu_model=CpuModel(args.cpu_model or CpuModel.HOST.value),
        snapstart=args.snapstart,
        provisioned=args.provisioned or 0,
        layers=[str(Path(layer).resolve()) for layer in args.layer],
        user=args.user,
        **runtime_settings(args),
    )
    # Its settings are the flags already: only the debugger is laid over it.
    function = Overrides(debug_port=args.debug_port).apply(function, only=True)
    return ServerConfig(host=host, port=port), StaticSource([function])


def serve_config(args: argparse.Namespace) -> ServerConfig:
    """The server's settings, with the functions to serve now."""
    return serve_setup(args)[0]


def serve_setup(args: argparse.Namespace) -> tuple[ServerConfig, StaticSource | TemplateSource | ConfigFileSource,
                                                   Loaded]:
    """The server's settings, its source, and the functions the source gives now (checked: every
    name answers for one function, there is at least one to serve)."""
    config, source = serve_source(args)
    loaded = source.load()
    if isinstance(source, ConfigFileSource):
        config = source.config
    function_names(loaded.functions)
    if not loaded.functions:
        raise ConfigError("\n".join([*loaded.problems, "no function to serve"]))
    config.function = loaded.functions
    queue_settings(config, args)
    config.api = loaded.apis
    if getattr(args, "api_port", None) is not None:
        config.front_door_port = args.api_port
    return config, source, loaded


def queue_settings(config: ServerConfig, args: argparse.Namespace) -> None:
    """Where Event invocations are queued and how they are timed: the flags, over the config file's,
    over the defaults (the user's state directory)."""
    if args.queue is not None:
        config.queue, config.state_dir = args.queue, None
    elif args.state_dir is not None:
        config.state_dir, config.queue = str(Path(args.state_dir).expanduser().resolve()), None
    if config.queue is None and config.state_dir is None:
        config.state_dir = str(default_state_dir())
    if args.async_time_scale is not None:
        config.async_time_scale = args.async_time_scale
    if args.queue_lease is not None:
        config.queue_lease = args.queue_lease
    if args.durable_time_scale is not None:
        config.durable_time_scale = args.durable_time_scale
    config.service_endpoints.update(parse_pairs("--service-endpoint", args.service_endpoint,
                                                "SERVICE=URL, e.g. sqs=http://localhost:4566"))
    config.__post_init__()  # the checks a config file's values get


def runtime_name(function: FunctionConfig) -> str:
    if function.runtime_id:
        return function.runtime_id
    return Path(function.runtime[0]).name if function.runtime else "lambdalet's Python runtime"


def describe(function: FunctionConfig) -> str:
    """One line for the start-up listing: its names, runtime, memory, timeout."""
    names = f"function {function.name}" + (f" (also {', '.join(function.aliases)})" if function.aliases else "")
    if function.package_type == "Image":
        return f"  {names}: a container image (run the image: its lambdalet-rie answers the same Invoke API)"
    return (f"  {names}: {runtime_name(function)}, {function.memory} MB, {function.timeout:g} s timeout, "
            f"concurrency {1 if function.debug_port is not None else function.concurrency}"
            + (f", debugger at 127.0.0.1:{function.debug_port}" if function.debug_port is not None else ""))


def usage_hint(server: Server, problems: list[str] = ()) -> str:
    lines = [f"lambdalet: Invoke API on {server.endpoint}"]
    lines += [describe(function) for function in server.configs.values()]
    lines += [f"lambdalet: {problem}" for problem in problems]
    lines += server.gateway.table()
    name = next(iter(server.configs))
    url = f"{server.endpoint}/2015-03-31/functions/{name}/invocations"
    lines += [
        "Invoke one with curl:",
        f"  curl -s {url} -d '{{\"name\": \"you\"}}'",
        "or with boto3:",
        "  import boto3",
        f"  client = boto3.client('lambda', endpoint_url='{server.endpoint}', region_name='us-east-1',",
        "                        aws_access_key_id='x', aws_secret_access_key='x')",
        f"  print(client.invoke(FunctionName='{name}', Payload=b'{{\"name\": \"you\"}}')['Payload'].read())",
        "or: lambdalet invoke " + name + " --payload '{\"name\": \"you\"}'",
        "A change to a function's code, its layers or its template is applied as it is saved.",
        "Ctrl-C stops the server and every function environment.",
    ]
    return "\n".join(lines)


async def run_server(config: ServerConfig, source, loaded: Loaded, *, warm: bool = False, name: str = "") -> None:
    # Ctrl-C and SIGTERM both end in an orderly stop: every environment killed and reaped.
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with Server(config, warm=warm) as server, trio.open_nursery() as nursery:
            await nursery.start(Reloader(server, source, loaded, name=name).run)
            print(usage_hint(server, loaded.problems), file=sys.stderr, flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


def invoke(args: argparse.Namespace) -> int:
    """`lambdalet invoke NAME`: through a running server's Invoke API, or, with --template, once
    without a server (as `sam local invoke`): the payload on stdout, the logs on stderr; exit status
    1 when the function failed, 2 for what kept it from running."""
    try:
        payload = event_payload(args)
    except OSError as exc:
        print(f"lambdalet invoke: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    if args.template:
        return invoke_locally(args, payload)
    url = urlsplit(args.endpoint)
    headers = {"X-Amz-Invocation-Type": args.type, "Content-Type": "application/json"}
    if args.log_type:
        headers["X-Amz-Log-Type"] = args.log_type
    if args.tenant_id:
        headers["X-Amz-Tenant-Id"] = args.tenant_id
    path = f"/2015-03-31/functions/{quote(args.name, safe='')}/invocations"
    if args.qualifier:
        path += f"?Qualifier={quote(args.qualifier)}"
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=960)
    try:
        conn.request("POST", path, body=payload, headers=headers)
        response = conn.getresponse()
        body = response.read()
    except OSError as exc:
        print(f"lambdalet invoke: cannot reach {args.endpoint}: {exc}", file=sys.stderr)
        return 2
    finally:
        conn.close()
    if response.getheader("X-Amz-Log-Result"):
        sys.stderr.write(base64.b64decode(response.getheader("X-Amz-Log-Result")).decode(errors="replace"))
    if response.status >= 400:
        kind = response.getheader("x-amzn-ErrorType", "Error")
        print(f"lambdalet invoke: {response.status} {kind}: {body.decode(errors='replace')}", file=sys.stderr)
        return 2
    return show_result(response.status, body, response.getheader("X-Amz-Executed-Version"),
                       response.getheader("X-Amz-Function-Error"))


def event_payload(args: argparse.Namespace) -> bytes:
    """--event FILE (- for standard input), or --payload TEXT (@FILE)."""
    if args.event == "-":
        return sys.stdin.buffer.read()
    if args.event is not None:
        return Path(args.event).read_bytes()
    if args.payload.startswith("@"):
        return Path(args.payload[1:]).read_bytes()
    return args.payload.encode()


def show_result(status: int, body: bytes, version: str | None, function_error: str | None) -> int:
    sys.stdout.buffer.write(body)
    if body and not body.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()
    summary = {"StatusCode": status, "ExecutedVersion": version, "FunctionError": function_error}
    print(json.dumps({k: v for k, v in summary.items() if v}), file=sys.stderr)
    return 1 if function_error else 0


def invoke_locally(args: argparse.Namespace, payload: bytes) -> int:
    try:
        source = template_source(args, args.template, Overrides(functions=(args.name,)))
        loaded = source.load()
    except ConfigError as exc:
        print(f"lambdalet invoke: {exc}", file=sys.stderr)
        return 2
    result = trio.run(invoke_once, loaded.functions, args.name, payload, args.tenant_id)
    if isinstance(result, ServiceError):
        print(f"lambdalet invoke: {result.status} {result.error_type}: {result.message}", file=sys.stderr)
        return 2
    return show_result(result.status_code, result.payload, result.executed_version, result.function_error)


async def invoke_once(functions: list[FunctionConfig], name: str, payload: bytes,
                      tenant_id: str | None) -> InvokeResult | ServiceError:
    """One invocation by an in-process server with no Invoke API port, its log on stderr."""
    config = ServerConfig(function=functions)
    async with Server(config, sink=logs.LogSink(sys.stderr.buffer), listen=False) as server:
        try:
            return await server.invoke(name, payload, tenant_id=tenant_id)
        except ServiceError as exc:  # as the Invoke API would have answered
            return exc


def doctor(args: argparse.Namespace) -> int:
    """`lambdalet doctor PATH`: 0 when PATH will run on provided.al2023, 1 when not, 2 when unreadable.
    `lambdalet doctor --package DIR|ZIP --runtime ID`: the same for a deployment package."""
    if args.host:
        return doctor_host(args)
    if args.package is not None:
        return doctor_package(args)
    if args.path is None:
        print("lambdalet doctor: give the bootstrap to check, or --package DIR|ZIP --runtime ID", file=sys.stderr)
        return 2
    from sandbox import doctor as checks

    path = Path(args.path)
    if path.is_dir():  # a code directory: judge the bootstrap Lambda would start from it
        path = path / "bootstrap"
    try:
        diagnosis = checks.diagnose(path, arch=args.arch)
    except OSError as exc:
        print(f"lambdalet doctor: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return report(diagnosis, checks.render, args.json)


def doctor_host(args: argparse.Namespace) -> int:
    """`lambdalet doctor --host`: the cgroup mode, each controller, what each isolation level gets."""
    import msgspec

    from sandbox import host_doctor

    found = host_doctor.diagnose()
    if args.json:
        sys.stdout.buffer.write(msgspec.json.encode(found) + b"\n")
    else:
        print(host_doctor.render(found))
    return 0


def report(diagnosis, render, as_json: bool) -> int:
    """Print a doctor's diagnosis (as JSON, or as `render` writes it); its exit status."""
    from sandbox.doctor import to_json

    if as_json:
        sys.stdout.buffer.write(to_json(diagnosis) + b"\n")
    else:
        print(render(diagnosis))
    return 0 if diagnosis.will_run else 1


def doctor_package(args: argparse.Namespace) -> int:
    from sandbox import package_doctor
    from sandbox.runtimes import UnknownRuntime, lookup

    if args.runtime_id is None:
        print("lambdalet doctor: --package needs --runtime (python3.12, nodejs20.x, provided.al2023, ...): it "
              "decides the Python version and the operating system the package is judged against", file=sys.stderr)
        return 2
    try:
        runtime = lookup(args.runtime_id, "to check")
        diagnosis = package_doctor.diagnose_package(args.package, runtime, arch=args.arch, layers=tuple(args.layer),
                                                    handler=args.handler)
    except UnknownRuntime as exc:
        print(f"lambdalet doctor: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"lambdalet doctor: cannot read {exc.filename or args.package}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return report(diagnosis, package_doctor.render, args.json)


# Commands installed beside lambdalet rather than part of it (`bench`: the benchmarks, which import
# the product, never the other way round), found through this entry-point group of pyproject.toml.
COMMANDS_GROUP = "lambdalet.commands"
INSTALLED_COMMANDS = ("bench",)


def run_installed_command(name: str, argv: list[str]) -> int:
    from importlib.metadata import entry_points  # looked up only when such a command is asked for

    found = entry_points(group=COMMANDS_GROUP, name=name)
    try:
        command = next(iter(found)).load()
    except (StopIteration, ImportError) as exc:  # metadata older than the code, or no such entry
        reason = f"cannot import {exc.name}" if isinstance(exc, ImportError) else f"no entry point in {COMMANDS_GROUP}"
        print(f"lambdalet {name}: not installed ({reason}); install lambdalet again "
              "(in a checkout: pip install -e .)", file=sys.stderr)
        return 2
    return command(argv)


def add_template_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parameter-overrides", action="append", default=[], metavar="'K=V K2=V2'",
                        help="the template's parameters, in SAM's form")
    parser.add_argument("--env-vars", metavar="FILE",
                        help='SAM\'s environment variables file: {"Parameters": {...}} for every function, '
                             '{"NameOrLogicalId": {...}} for one')
    parser.add_argument("--layer-map", action="append", default=[], metavar="ARN=DIR",
                        help="the local directory of a layer the template names by ARN (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lambdalet", description="Run AWS Lambda functions locally.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve", help="serve functions behind the Lambda Invoke API",
        description="Serve one function (flags) or several (--config). With no flags, a bundled example. "
                    "A runtime command may follow `--` (default: lambdalet's Python runtime client).",
    )
    source = serve.add_mutually_exclusive_group()
    source.add_argument("--template", metavar="PATH",
                        help="a SAM or CloudFormation template (YAML or JSON; default: the template.yaml SAM would "
                             "find here, when neither --config nor --code is given)")
    source.add_argument("--config", help="TOML file describing several functions (see runtime_api/config.py)")
    serve.add_argument("--handler", help="the handler, e.g. app.handler (_HANDLER)")
    serve.add_argument("--code", help="the function's code directory (LAMBDA_TASK_ROOT)")
    serve.add_argument("--function-name", help="the function's name (default: function)")
    serve.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    serve.add_argument("--memory", type=int, default=128, help="MB (default 128)")
    serve.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="an environment variable (repeatable)")
    serve.add_argument("--concurrency", type=int, default=10, help="environments at once (default 10); beyond, 429")
    serve.add_argument("--idle-timeout", type=float, default=300.0, help="seconds before an idle environment is shut down")
    serve.add_argument("--isolation", choices=[level.value for level in Isolation],
                       help="none: plain processes; standard: memory and pids limits, a private /tmp, the code "
                            "read-only at /var/task; strict: standard, plus a network namespace of its own "
                            "(the Runtime API at 127.0.0.1:9001, nothing else reachable) and a seccomp deny-list "
                            "(default: standard where permitted, else none)")
    serve.add_argument("--cpu-model", choices=[model.value for model in CpuModel],
                       help="host: no CPU limit; lambda: Lambda's CPU share for the memory (1,769 MB = 1 vCPU, "
                            "128 MB about 7%%), through a cpu cgroup (isolation standard) (default: host)")
    serve.add_argument("--ephemeral-storage", type=int, metavar="MB",
                       help=f"size of each environment's private /tmp (default {DEFAULT_EPHEMERAL_MB}; Lambda: 512-10240)")
    serve.add_argument("--provisioned", type=int, metavar="N",
                       help="provisioned concurrency: N environments initialised at start-up and kept warm")
    serve.add_argument("--snapstart", action="store_true",
                       help="SnapStart's contract: init type snap-start, hooks, restore/next, restore durations")
    serve.add_argument("--layer", action="append", default=[], metavar="DIR",
                       help="a layer: a directory shown read-only at /opt (repeatable, up to 5, in Lambda's order: "
                            "a later layer's files win); with --config, added to every function's own")
    serve.add_argument("--user", metavar="USER",
                       help="run the runtime as this user: a name, uid or uid:gid (sbx_user1051: Lambda's, uid 993 "
                            "gid 990); needs root (default: lambdalet's own user)")
    add_template_arguments(serve)
    serve.add_argument("--function", action="append", default=[], metavar="NAME",
                       help="serve only this function of the template or config file (repeatable)")
    serve.add_argument("--warm", choices=["lazy", "eager"], default="lazy",
                       help="lazy: an environment starts with the first invocation that needs it; eager: one "
                            "environment of every function is initialised at start-up (default lazy)")
    serve.add_argument("--debug-port", type=int, metavar="N",
                       help="Python: the function's runtime waits for a debugger (debugpy) at 127.0.0.1:N before it "
                            "runs; one environment, no timeout while debugging")
    serve.add_argument("--debug-function", metavar="NAME",
                       help="the function --debug-port debugs, when several are served")
    serve.add_argument("--runtime", dest="runtime_id", metavar="ID",
                       help="Lambda's runtime: python3.9 ... python3.14, nodejs18.x ... nodejs24.x, provided.al2, "
                            "provided.al2023 (default: the Python runtime of lambdalet's own version); with --config, "
                            "for every function")
    serve.add_argument("--python-path", action="append", default=[], metavar="VERSION=PATH",
                       help="the Python a python runtime runs on, e.g. 3.12=/usr/bin/python3.12 (repeatable; "
                            "default: found on PATH, under pyenv or uv)")
    serve.add_argument("--allow-other-python", action="store_true",
                       help="run a Python runtime whose version is not installed on lambdalet's own Python, "
                            "with a warning naming both")
    serve.add_argument("--sdk", metavar="bundled|none|DIR",
                       help="the AWS SDK on a Python function's path: bundled (the runtime's boto3, installed once "
                            "from PyPI into the cache), none, or a directory of your own (default: bundled)")
    events = serve.add_argument_group("asynchronous invocation (Event)")
    where = events.add_mutually_exclusive_group()
    where.add_argument("--state-dir", metavar="DIR",
                       help="where Event invocations are queued, in SQLite, so that none is lost when the server "
                            "stops or crashes (default: $XDG_STATE_HOME/lambdalet, else ~/.local/state/lambdalet)")
    where.add_argument("--queue", metavar="postgresql://...",
                       help="a PostgreSQL queue shared by every lambdalet serve given the same URL, on any host "
                            "(needs psycopg: pip install 'lambdalet[postgresql]')")
    events.add_argument("--async-time-scale", type=float, metavar="FACTOR",
                        help="multiply every delay and age of asynchronous invocation (retries after 1 and 2 "
                             "minutes, a maximum age of 6 hours) by FACTOR, e.g. 0.01 for tests (default 1)")
    events.add_argument("--service-endpoint", action="append", default=[], metavar="SERVICE=URL",
                        help="where records for an AWS service destination go: sqs, sns, events or s3 "
                             "(repeatable), e.g. sqs=http://localhost:4566 for LocalStack")
    events.add_argument("--queue-lease", type=float, metavar="SECONDS",
                        help="with --queue: how long an event a server runs stays its own without being renewed; "
                             "a server that stops loses its events to the others after this (default 10)")
    serve.add_argument("--durable-time-scale", type=float, metavar="FACTOR",
                       help="multiply every durable function's waits, step retry delays, callback timeouts and "
                            "execution timeout by FACTOR, e.g. 0.01 for tests (default 1)")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 8080)")
    serve.add_argument("--jwks", action="append", default=[], metavar="AUTHORIZER=FILE",
                       help="a local JWKS file a JWT authorizer checks tokens' signatures against (repeatable; "
                            "without one, claims are checked and signatures are not)")
    serve.add_argument("--api-port", type=int, metavar="PORT",
                       help="where Function URLs and API Gateway APIs listen, by host name (and the APIs on the plain "
                            "address, as sam local start-api serves them) (default 3000)")
    serve.add_argument("runtime", nargs=argparse.REMAINDER, help="-- RUNTIME COMMAND...")

    inv = commands.add_parser(
        "invoke", help="invoke a function: through a running server's Invoke API, or once from a template",
        description="Without --template: through the Invoke API of a running lambdalet serve (--endpoint). With "
                    "--template: once, without a server, as sam local invoke does: the payload on stdout, the "
                    "function's log on stderr. Exit status 1 when the function failed, 2 when it could not run.")
    inv.add_argument("name", help="function name (either of its names) or ARN")
    payload = inv.add_mutually_exclusive_group()
    payload.add_argument("--payload", default="{}", help="JSON text, or @file")
    payload.add_argument("--event", metavar="FILE", help="the event: a JSON file, or - for standard input")
    inv.add_argument("--type", default="RequestResponse", choices=["RequestResponse", "Event", "DryRun"])
    inv.add_argument("--log-type", choices=["None", "Tail"])
    inv.add_argument("--qualifier")
    inv.add_argument("--tenant-id", help="the tenant (X-Amz-Tenant-Id), for a function with tenant isolation")
    inv.add_argument("--endpoint", default="http://127.0.0.1:8080")
    inv.add_argument("--template", metavar="PATH", help="run the function from this template, without a server")
    add_template_arguments(inv)

    doc = commands.add_parser(
        "doctor", help="will this bootstrap run on provided.al2023? will this deployment package import on Lambda?",
        description="Check a bootstrap (a compiled program or a script, or a code directory holding one) "
                    "against provided.al2023: architecture, loader, glibc and libstdc++ versions, libraries, "
                    "#! line, line endings, executable bit. With --package, a whole deployment package and its "
                    "layers against a runtime: native files, wheels, Requires-Python, size limits, permissions, "
                    "the handler (sandbox/package_doctor.py). Exit status 0 when it will run, 1 when not, 2 when "
                    "it cannot be read.",
    )
    doc.add_argument("path", nargs="?", help="the bootstrap, or the directory holding it")
    doc.add_argument("--host", action="store_true",
                     help="this machine instead: the cgroup mode (v1, v2, hybrid), each controller's hierarchy and "
                          "whether it is usable, and what each isolation level gets here (sandbox/host_doctor.py)")
    doc.add_argument("--package", metavar="DIR|ZIP", help="a deployment package: a directory or a .zip")
    doc.add_argument("--layer", action="append", default=[], metavar="DIR|ZIP",
                     help="a layer of the package's function (repeatable, in Lambda's order)")
    doc.add_argument("--runtime", dest="runtime_id", metavar="ID",
                     help="the function's runtime, with --package: python3.12, nodejs20.x, provided.al2023, ...")
    doc.add_argument("--handler", help="with --package: the handler whose module and function must exist")
    doc.add_argument("--arch", default="x86_64", choices=["x86_64", "arm64"], help="the function's architecture (default x86_64)")
    doc.add_argument("--json", action="store_true", help="print the facts and findings as JSON")

    from .asynchronous.events import add_events_parser  # its own module: `lambdalet events`

    add_events_parser(commands)
    from .durable.cli import add_durable_parser  # `lambdalet durable`

    add_durable_parser(commands)

    bench = commands.add_parser(
        "bench", help="cold start vs SnapStart restore vs warm, beside RIE + awslambdaric (benchmarks/coldstart.py)",
        add_help=False)
    bench.add_argument("options", nargs="*", help="its own options: lambdalet bench --help")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in INSTALLED_COMMANDS:  # its options are its own (argparse cannot pass `--help` through)
        return run_installed_command(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "invoke":
        return invoke(args)
    if args.command == "doctor":
        return doctor(args)
    if args.command == "events":
        from .asynchronous.events import events

        return events(args)
    if args.command == "durable":
        from .durable.cli import durable

        return durable(args)
    if args.runtime and args.runtime[0] == "--":
        args.runtime = args.runtime[1:]
    try:
        config, source, loaded = serve_setup(args)
        name = Path(source.path).name if isinstance(source, TemplateSource | ConfigFileSource) else ""
        trio.run(partial(run_server, config, source, loaded, warm=args.warm == "eager", name=name))
    except (ConfigError, StoreError) as exc:
        print("\n".join(f"lambdalet: {line}" for line in str(exc).splitlines()), file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"lambdalet: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except BaseExceptionGroup as group:  # a function that cannot start here (its runtime is missing)
        config_errors, rest = group.split((ConfigError, StoreError))
        if config_errors is None or rest is not None:
            raise
        for error in _leaves(config_errors):
            print(f"lambdalet: {error}", file=sys.stderr)
        return 2
    return 0


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    return [leaf for error in group.exceptions
            for leaf in (_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])]


if __name__ == "__main__":
    sys.exit(main())
