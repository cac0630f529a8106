"""The runtime's configuration, read from argv and the environment once, at start-up."""

from bootstrap.context import FunctionInfo
from bootstrap.logs import format_from_env, level_from_env

# awslambdaric writes UTF-8 (not \\u escapes) in its JSON for these execution environments.
UTF8_JSON_ENVS = frozenset({"AWS_Lambda_python3.12", "AWS_Lambda_python3.13",
                            "AWS_Lambda_python3.14", "AWS_Lambda_python3.15"})


class ConfigError(Exception):
    pass


class Config:
    __slots__ = ("handler", "runtime_api", "task_root", "python_path_set", "log_format",
                 "log_level", "telemetry_fd", "initialization_type", "ensure_ascii", "function",
                 "template")

    def __init__(self, handler, runtime_api, task_root=None, python_path_set=False,
                 log_format="text", log_level="", telemetry_fd=None, initialization_type=None,
                 ensure_ascii=True, function=None, template=None):
        self.handler = handler
        self.runtime_api = runtime_api
        self.task_root = task_root
        self.python_path_set = python_path_set
        self.log_format = log_format
        self.log_level = log_level
        self.telemetry_fd = telemetry_fd
        self.initialization_type = initialization_type
        self.ensure_ascii = ensure_ascii
        self.function = function or FunctionInfo()
        # lambdalet's SnapStart: the control socket to become a fork template on (bootstrap.template).
        self.template = template

    @classmethod
    def from_environ(cls, argv, environ):
        handler = argv[1] if len(argv) > 1 else environ.get("_HANDLER")
        if not handler:
            raise ConfigError("Handler not set")
        runtime_api = environ.get("AWS_LAMBDA_RUNTIME_API")
        if not runtime_api:
            raise ConfigError("AWS_LAMBDA_RUNTIME_API not set")
        fd = environ.get("_LAMBDA_TELEMETRY_LOG_FD")
        return cls(
            handler=handler,
            runtime_api=runtime_api,
            task_root=environ.get("LAMBDA_TASK_ROOT") or None,
            python_path_set="PYTHONPATH" in environ,
            log_format=format_from_env(environ.get("AWS_LAMBDA_LOG_FORMAT")),
            log_level=level_from_env(environ.get("AWS_LAMBDA_LOG_LEVEL")),
            telemetry_fd=int(fd) if fd is not None else None,
            initialization_type=environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
            ensure_ascii=environ.get("AWS_EXECUTION_ENV") not in UTF8_JSON_ENVS,
            function=FunctionInfo.from_environ(environ),
            template=environ.get("_LAMBDALET_TEMPLATE") or None,
        )
