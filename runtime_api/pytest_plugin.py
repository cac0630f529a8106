"""lambdalet's pytest plugin (the `pytest11` entry point `lambdalet`; without the installed entry
point: `pytest -p runtime_api.pytest_plugin`).

* The `lambdalet` fixture: a running server (`LambdaletThread`) with `invoke()` and `endpoint` (for
  boto3's `endpoint_url`). Its functions come from, first found:
    - the fixture's parameters (`@pytest.mark.parametrize("lambdalet", [{...}], indirect=True)`) or
      the `lambdalet` marker (`@pytest.mark.lambdalet(template="template.yaml")`): `template`,
      `config` (a TOML config file), `functions` (FunctionConfigs, or dicts of their fields),
      `parameter_overrides`, `env_vars`; paths relative to the test file. A server of the test's own.
    - `--lambdalet-template PATH` or `--lambdalet-config PATH` (or the ini settings
      `lambdalet_template`, `lambdalet_config`): one server for the whole session.
  Every environment is shut down when the fixture ends, whether the test passed or not.
* `--lambdalet-moto` (or the ini setting `lambdalet_moto = true`, or LAMBDALET_MOTO=1): moto's Lambda
  functions run through lambdalet for the session (runtime_api/moto/).

Importing this module costs nothing beyond pytest: lambdalet is imported when a fixture or an
option asks for it, since an installed plugin is loaded by every pytest run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_ENABLED = ("1", "true", "yes", "on")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lambdalet", "lambdalet: Lambda functions run locally, without Docker")
    group.addoption("--lambdalet-template", metavar="PATH",
                    help="serve this SAM or CloudFormation template's functions to the `lambdalet` fixture, "
                         "one server for the session")
    group.addoption("--lambdalet-config", metavar="PATH",
                    help="serve this lambdalet TOML config file's functions to the `lambdalet` fixture")
    group.addoption("--lambdalet-moto", action="store_true", default=None,
                    help="moto's Lambda functions run their real code through lambdalet for the session "
                         "(also: LAMBDALET_MOTO=1)")
    parser.addini("lambdalet_template", "the template the `lambdalet` fixture serves (relative to the ini file)")
    parser.addini("lambdalet_config", "the TOML config file the `lambdalet` fixture serves (relative to the ini file)")
    parser.addini("lambdalet_moto", "moto's Lambda functions run through lambdalet", type="bool", default=False)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lambdalet(template=None, config=None, functions=(), parameter_overrides=None, env_vars=None): "
                   "the functions a test's own `lambdalet` server serves")
    if moto_enabled(config):
        from runtime_api import moto

        moto.install()
        config.add_cleanup(moto.uninstall)


def moto_enabled(config: pytest.Config) -> bool:
    option = config.getoption("lambdalet_moto")
    if option is not None:
        return option
    return bool(config.getini("lambdalet_moto")) or os.environ.get("LAMBDALET_MOTO", "").lower() in _ENABLED


@pytest.fixture(scope="session")
def lambdalet_session(pytestconfig: pytest.Config):
    """The session's server over --lambdalet-template or --lambdalet-config; None without either."""
    settings = _session_settings(pytestconfig)
    if settings is None:
        yield None
        return
    lambdalet = _start(settings)
    try:
        yield lambdalet
    finally:
        lambdalet.close()


@pytest.fixture
def lambdalet(request: pytest.FixtureRequest, lambdalet_session):
    """A running lambdalet server (`LambdaletThread`): `invoke(name, payload)` and `endpoint`."""
    marker = request.node.get_closest_marker("lambdalet")
    settings = {**(marker.kwargs if marker is not None else {}), **(getattr(request, "param", None) or {})}
    if not settings:
        if lambdalet_session is None:
            raise pytest.UsageError(
                "the lambdalet fixture serves --lambdalet-template PATH, --lambdalet-config PATH, a "
                "@pytest.mark.lambdalet(...) marker or the fixture's parameters: none was given")
        yield lambdalet_session
        return
    lambdalet = _start(_relative_to(Path(request.path).parent, settings))
    try:
        yield lambdalet
    finally:
        lambdalet.close()


def _session_settings(config: pytest.Config) -> dict | None:
    for name in ("template", "config"):
        given = config.getoption(f"lambdalet_{name}")
        if given:
            return {name: str(Path(given).resolve())}
        ini = config.getini(f"lambdalet_{name}")
        if ini:
            base = config.inipath.parent if config.inipath is not None else config.rootpath
            return {name: str(base / ini)}
    return None


def _relative_to(base: Path, settings: dict) -> dict:
    settings = dict(settings)
    for name in ("template", "config", "env_vars"):
        if settings.get(name) is not None:
            settings[name] = str(base / settings[name])
    return settings


def _start(settings: dict):
    from runtime_api.config import ConfigError
    from runtime_api.embed import LambdaletThread

    try:
        config = server_config(**settings)
    except (ConfigError, TypeError) as exc:
        raise pytest.UsageError(f"lambdalet: {exc}") from None
    return LambdaletThread(config).start()


def server_config(*, template: str | None = None, config: str | None = None, functions=(),
                  parameter_overrides: dict[str, str] | None = None, env_vars: str | None = None):
    """The ServerConfig a fixture's settings describe: on free ports of 127.0.0.1, Event invocations
    queued in memory. ConfigError when they describe nothing to serve or cannot be read."""
    import msgspec

    from runtime_api.config import ConfigError, FunctionConfig, ServerConfig
    from runtime_api.sources import ConfigFileSource, Loaded, TemplateSource

    if config is not None:
        source = ConfigFileSource(config)
        loaded = source.load()
        server = source.config
    else:
        server = ServerConfig()
        loaded = (TemplateSource(template, parameter_overrides=parameter_overrides, env_vars=env_vars).load()
                  if template is not None else Loaded([]))
    try:
        extra = [f if isinstance(f, FunctionConfig) else msgspec.convert(f, FunctionConfig) for f in functions]
    except msgspec.ValidationError as exc:
        raise ConfigError(f"functions: {exc}") from None
    server.function = [*loaded.functions, *extra]
    if not server.function:
        raise ConfigError("; ".join([*loaded.problems, "no function to serve"]))
    server.api = loaded.apis
    server.host, server.port, server.front_door_port = "127.0.0.1", 0, 0
    server.state_dir, server.queue = None, None
    return server
