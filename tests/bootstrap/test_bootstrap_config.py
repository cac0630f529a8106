"""bootstrap.config: the runtime's configuration, read from its command line and environment."""

import pytest

from bootstrap.config import Config, ConfigError


def test_config_from_environment():
    config = Config.from_environ(["bootstrap"], {"_HANDLER": "app.h", "AWS_LAMBDA_RUNTIME_API": "h:1",
                                                 "AWS_LAMBDA_LOG_FORMAT": "json",
                                                 "_LAMBDA_TELEMETRY_LOG_FD": "7",
                                                 "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13"})
    assert (config.handler, config.runtime_api, config.log_format, config.telemetry_fd,
            config.ensure_ascii, config.python_path_set) == ("app.h", "h:1", "json", 7, False, False)
    assert Config.from_environ(["b", "argv.h"], {"_HANDLER": "env.h",
                                                 "AWS_LAMBDA_RUNTIME_API": "x:1"}).handler == "argv.h"
    with pytest.raises(ConfigError):
        Config.from_environ(["b"], {"AWS_LAMBDA_RUNTIME_API": "x:1"})
    with pytest.raises(ConfigError):
        Config.from_environ(["b", "a.h"], {})
