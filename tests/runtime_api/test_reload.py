"""Reloading while serving (runtime_api/reload.py, Server.apply): a template's functions, their code
and their configuration change under a running server, which applies each change as it is saved.
Every wait is for the reload itself (`Reloader.wait_reload`), never for time."""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager

import pytest
import trio

from helpers import CapturedLog, Gate, write_function
from runtime_api import Server, ServerConfig
from runtime_api.codewatch import CodeWatch
from runtime_api.config import ConfigError, FunctionConfig
from runtime_api.invoke_api import ServiceError
from runtime_api.reload import Reloader
from runtime_api.server import function_names
from runtime_api.sources import Overrides, TemplateSource

VERSIONED = Gate.handler_snippet.replace("{", "{{").replace("}", "}}") + '''
VERSION = "{version}"

def handler(event, context):
    if event.get("wait"):
        wait_at_gate(context)
    return VERSION
'''


def write_template(path, functions: dict[str, dict]) -> None:
    """A SAM template (JSON, which YAML readers read too) with these functions' properties."""
    resources = {name: {"Type": "AWS::Serverless::Function",
                        "Properties": {"Handler": "app.handler", "Runtime": "python3.12", **props}}
                 for name, props in functions.items()}
    path.write_text(json.dumps({"AWSTemplateFormatVersion": "2010-09-09",
                                "Transform": "AWS::Serverless-2016-10-31", "Resources": resources}, indent=1))


@asynccontextmanager
async def serving(template, overrides: Overrides = Overrides(), *, log: CapturedLog | None = None):
    source = TemplateSource(str(template), overrides=overrides)
    loaded = source.load()
    async with Server(ServerConfig(port=0, function=loaded.functions), sink=log or CapturedLog()) as server:
        async with trio.open_nursery() as nursery:
            reloader = await nursery.start(Reloader(server, source, loaded, name=template.name).run)
            yield server, reloader
            nursery.cancel_scope.cancel()


async def payload(server, name, event=b"{}"):
    result = await server.invoke(name, event)
    assert result.function_error is None, result.payload
    return json.loads(result.payload)


@pytest.fixture
def project(tmp_path, gate):
    write_function(tmp_path / "src", VERSIONED.format(version="one"))
    env = {"Variables": {"GATE_PORT": str(gate.port)}}
    write_template(tmp_path / "template.yaml", {"Hello": {"CodeUri": "src", "Environment": env}})
    return tmp_path


async def test_a_saved_code_change_is_what_the_next_invocation_runs(project):
    async with serving(project / "template.yaml") as (server, reloader):
        assert await payload(server, "Hello") == "one"
        write_function(project / "src", VERSIONED.format(version="two"))
        reload = await reloader.wait_reload()
        assert reload.changes.replaced == ("Hello",) and reload.error is None
        assert await payload(server, "Hello") == "two"


async def test_an_invocation_in_flight_finishes_on_the_old_code_while_new_ones_run_the_new(project, gate):
    async with serving(project / "template.yaml") as (server, reloader), trio.open_nursery() as nursery:
        results = []

        async def invoke_waiting():
            results.append(await payload(server, "Hello", b'{"wait": true}'))

        nursery.start_soon(invoke_waiting)
        await gate.wait_arrivals(1)
        old = server.functions["Hello"]
        (busy,) = old.environments
        write_function(project / "src", VERSIONED.format(version="two"))
        await reloader.wait_reload()
        assert server.functions["Hello"] is not old and old.retired
        assert await payload(server, "Hello") == "two"  # a new environment, the old one still busy
        assert not busy.closing
        await gate.release_all()
        await busy.closed.wait()  # retired: it stops once its invocation is over
    assert results == ["one"]


async def test_a_function_added_to_the_template_is_served_without_a_restart(project):
    write_function(project / "other", "def handler(event, context):\n    return 'other'\n")
    async with serving(project / "template.yaml") as (server, reloader):
        with pytest.raises(ServiceError):
            await server.invoke("Other")
        write_template(project / "template.yaml", {"Hello": {"CodeUri": "src"},
                                                   "Other": {"CodeUri": "other", "FunctionName": "other-fn"}})
        reload = await reloader.wait_reload()
        assert reload.changes.added == ("Other",)
        assert await payload(server, "Other") == "other"
        assert await payload(server, "other-fn") == "other"  # by its FunctionName too


async def test_a_function_removed_from_the_template_is_not_found_any_more(project):
    write_function(project / "other", "def handler(event, context):\n    return 'other'\n")
    write_template(project / "template.yaml", {"Hello": {"CodeUri": "src"}, "Other": {"CodeUri": "other"}})
    async with serving(project / "template.yaml") as (server, reloader):
        assert await payload(server, "Other") == "other"
        old = server.functions["Other"]
        write_template(project / "template.yaml", {"Hello": {"CodeUri": "src"}})
        reload = await reloader.wait_reload()
        assert reload.changes.removed == ("Other",)
        with pytest.raises(ServiceError) as missing:
            await server.invoke("Other")
        assert (missing.value.status, missing.value.error_type) == (404, "ResourceNotFoundException")
        for env in list(old.environments):  # its idle environment is stopped at once
            await env.closed.wait()
        assert await payload(server, "Hello") == "one"


async def test_a_template_that_no_longer_parses_leaves_the_functions_as_they_were(project, caplog):
    caplog.set_level(logging.WARNING, logger="lambdalet")
    async with serving(project / "template.yaml") as (server, reloader):
        assert await payload(server, "Hello") == "one"
        function = server.functions["Hello"]
        (project / "template.yaml").write_text("Resources: [unclosed\n")
        reload = await reloader.wait_reload()
        assert reload.error is not None and "template.yaml" in reload.error and not reload.changes
        assert server.functions["Hello"] is function
        assert await payload(server, "Hello") == "one"
        assert any("still serving the functions as they were" in r.getMessage() and "template.yaml" in r.getMessage()
                   for r in caplog.records)
        # Once it parses again, the change applies.
        write_template(project / "template.yaml", {"Hello": {"CodeUri": "src", "MemorySize": 256}})
        reload = await reloader.wait_reload(2)
        assert reload.error is None and reload.changes.replaced == ("Hello",)
        assert server.configs["Hello"].memory == 256


async def test_a_changed_configuration_takes_effect_for_new_invocations(project):
    write_function(project / "src", "import os\ndef handler(event, context):\n    return os.environ['WORD']\n")
    write_template(project / "template.yaml", {"Hello": {"CodeUri": "src", "Environment": {"Variables": {"WORD": "a"}}}})
    async with serving(project / "template.yaml") as (server, reloader):
        assert await payload(server, "Hello") == "a"
        write_template(project / "template.yaml", {"Hello": {"CodeUri": "src", "Environment": {"Variables": {"WORD": "b"}}}})
        assert (await reloader.wait_reload()).changes.replaced == ("Hello",)
        assert await payload(server, "Hello") == "b"


async def test_a_snapstart_function_restores_the_new_code_not_a_stale_copy(project):
    async with serving(project / "template.yaml", Overrides(snapstart=True)) as (server, reloader):
        assert await payload(server, "Hello") == "one"
        old = server.functions["Hello"]
        parked = old.template.environment if old.template is not None else None
        write_function(project / "src", VERSIONED.format(version="two"))
        await reloader.wait_reload()
        assert await payload(server, "Hello") == "two"
        if parked is not None:  # SnapStart by fork: the old template went with the old version
            await parked.closed.wait()


async def test_eager_warm_initialises_one_environment_before_the_first_invocation(tmp_path):
    write_function(tmp_path / "src", "import os\nprint('init ran', flush=True)\n"
                                     "def handler(event, context):\n    return os.getpid()\n")
    log = CapturedLog()
    function = FunctionConfig(name="fn", code=str(tmp_path / "src"))
    async with Server(ServerConfig(port=0, function=[function]), sink=log, warm=True) as server:
        assert "init ran" in log.text and "START" not in log.text  # init ran before any invocation
        (env,) = server.functions["fn"].environments
        assert env.initialised
        pid = (await server.invoke("fn")).payload
        assert int(pid) == env.pid and len(server.functions["fn"].environments) == 1
    # On-demand, as Lambda's proactive initialisation: the first REPORT carries the init it had.
    (report,) = [line for line in log.text.splitlines() if line.startswith("REPORT")]
    assert "Init Duration: " in report


def test_two_functions_answering_to_one_name_are_refused():
    one = FunctionConfig(name="One", aliases=["shared"])
    two = FunctionConfig(name="Two", aliases=["shared"])
    with pytest.raises(ConfigError, match="One and Two both answer to the name shared"):
        function_names([one, two])
    assert function_names([one]) == {"One": "One", "shared": "One"}


def test_serving_only_named_functions_refuses_a_name_that_is_not_there():
    functions = [FunctionConfig(name="One", aliases=["one-fn"]), FunctionConfig(name="Two")]
    assert [f.name for f in Overrides(functions=("one-fn",)).select(functions, "t.yaml")] == ["One"]
    with pytest.raises(ConfigError, match="t.yaml: no function Three"):
        Overrides(functions=("Three",)).select(functions, "t.yaml")


async def test_a_watch_says_which_files_changed_and_not_what_editors_leave_beside_them(tmp_path):
    code = write_function(tmp_path / "code", "x = 1\n")
    template = tmp_path / "template.yaml"
    template.write_text("{}")
    watch = CodeWatch((str(code),), (str(template),))
    try:
        (code / ".app.py.swp").write_text("vim")
        (code / "app.py~").write_text("emacs")
        (tmp_path / "unrelated.txt").write_text("not watched")
        (code / "app.py").write_text("x = 2\n")
        assert await watch.wait() == {str(code / "app.py")}
        (tmp_path / "template.yaml.tmp").write_text("{}")  # as an editor saves: a new file renamed over
        (tmp_path / "template.yaml.tmp").rename(template)
        assert await watch.wait() == {str(template)}
    finally:
        watch.close()
