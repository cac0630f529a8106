"""The platform's log lines, from the pure formatter (runtime_api/platform_log.py): which lines an
environment writes for each phase and outcome, and their exact text. No clock, no server: times are
values."""

from __future__ import annotations

import pytest

from runtime_api.outcomes import OutcomeKind
from runtime_api.platform_log import (
    LogStyle,
    PlatformLog,
    init_report_line,
    report_line,
    restore_report_line,
    start_line,
)


def test_report_lines_in_lambdas_and_ries_order():
    lambda_line = report_line(LogStyle.LAMBDA, "id", duration_ms=1.234, memory_mb=128, max_memory_used_mb=20,
                              init_duration_ms=50.5, status="error", error_type="Runtime.ExitError")
    assert lambda_line == ("REPORT RequestId: id\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\t"
                           "Max Memory Used: 20 MB\tInit Duration: 50.50 ms\tStatus: error\tError Type: Runtime.ExitError\t\n")
    rie_line = report_line(LogStyle.RIE, "id", duration_ms=613.66, memory_mb=3008, max_memory_used_mb=20,
                           init_duration_ms=50.5)
    assert rie_line == ("REPORT RequestId: id\tInit Duration: 50.50 ms\tDuration: 613.66 ms\tBilled Duration: 614 ms\t"
                        "Memory Size: 3008 MB\tMax Memory Used: 20 MB\t\n")
    assert start_line("id", "$LATEST") == "START RequestId: id Version: $LATEST\n"


def test_a_restored_environments_report_carries_its_restore():
    line = report_line(LogStyle.LAMBDA, "id", duration_ms=2.5, memory_mb=128, max_memory_used_mb=30,
                       restore_duration_ms=0.41)
    assert line.endswith("Max Memory Used: 30 MB\tRestore Duration: 0.41 ms\tBilled Restore Duration: 1 ms\t\n")
    assert restore_report_line(duration_ms=12.0, status="error", error_type="Runtime.ExitError") == (
        "RESTORE_REPORT Restore Duration: 12.00 ms\tStatus: error\tError Type: Runtime.ExitError\n")
    assert init_report_line(duration_ms=3.0, phase="init", status="success", error_type=None) == (
        "INIT_REPORT Init Duration: 3.00 ms\tPhase: init\tStatus: success\n")


def test_only_the_first_report_carries_the_init_duration():
    log = PlatformLog(LogStyle.LAMBDA, "$LATEST", 128)
    log.launched(10.0)
    assert log.init_done(10.25, snapshot=False) == ""  # no INIT_REPORT for an ordinary init
    first = log.report("a", duration_ms=1.0, max_memory_used_mb=40)
    second = log.report("b", duration_ms=1.0, max_memory_used_mb=40)
    assert first.startswith("END RequestId: a\nREPORT RequestId: a\t") and "Init Duration: 250.00 ms" in first
    assert "Init Duration" not in second


def test_a_provisioned_environment_reports_no_init():
    log = PlatformLog(LogStyle.LAMBDA, "$LATEST", 128, provisioned=True)
    log.launched(0.0)
    log.init_done(1.0, snapshot=False)
    assert "Init Duration" not in log.report("a", duration_ms=1.0, max_memory_used_mb=None)


def test_max_memory_used_is_capped_at_the_memory_size_and_defaults_to_it():
    log = PlatformLog(LogStyle.LAMBDA, "$LATEST", 128)
    assert "Max Memory Used: 128 MB" in log.report("a", duration_ms=1.0, max_memory_used_mb=500)
    assert "Max Memory Used: 128 MB" in log.report("b", duration_ms=1.0, max_memory_used_mb=None)


def test_snapstarts_contract_reports_the_init_and_the_restore():
    log = PlatformLog(LogStyle.LAMBDA, "$LATEST", 128)
    log.launched(100.0)
    assert log.init_done(100.5, snapshot=True) == (
        "INIT_REPORT Init Duration: 500.00 ms\tPhase: init\tStatus: success\n")
    assert log.restore_started(101.0, copy=False) == "RESTORE_START Runtime Version: lambdalet:0.1.0\n"
    assert log.restoring
    assert log.restore_done(101.002) == "RESTORE_REPORT Restore Duration: 2.00 ms\n"
    assert not log.restoring
    report = log.report("a", duration_ms=1.0, max_memory_used_mb=10)
    assert "Restore Duration: 2.00 ms" in report and "Init Duration" not in report


def test_a_copys_phases_count_from_its_restore():
    log = PlatformLog(LogStyle.LAMBDA, "$LATEST", 128)
    log.launched(5.0)
    log.restore_started(9.0, copy=True)
    assert log.launched_at == 9.0
    log.init_done(9.001, snapshot=False)  # its restore/next
    assert log.init_duration_ms == pytest.approx(1.0)


def test_ries_style_has_no_init_report_nor_restore_lines_and_prints_start_at_arrival():
    log = PlatformLog(LogStyle.RIE, "$LATEST", 3008)
    log.launched(0.0)
    assert log.init_done(1.0, snapshot=True) == ""
    assert log.restore_started(1.0, copy=False) == ""
    assert log.arrived("a") == "START RequestId: a Version: $LATEST\n"
    assert log.delivered("a") == ("START RequestId: a Version: $LATEST\n", False)
    assert PlatformLog(LogStyle.LAMBDA, "$LATEST", 128).arrived("a") == ""


@pytest.mark.parametrize("kind", [OutcomeKind.EXIT_ERROR, OutcomeKind.INIT_ERROR])
def test_a_runtime_that_failed_before_its_invocation_reports_its_init(kind):
    log = PlatformLog(LogStyle.LAMBDA, "$LATEST", 128)
    log.launched(1.0)
    settled = log.settled(kind, "Runtime.ExitError", now=1.5, delivered=False)
    assert settled.lines == "INIT_REPORT Init Duration: 500.00 ms\tPhase: init\tStatus: error\tError Type: Runtime.ExitError\n"
    assert (settled.report, settled.status, settled.error_type) == (True, "error", "Runtime.ExitError")
    assert log.settled(kind, "Runtime.ExitError", now=1.5, delivered=True).lines == ""


def test_a_failed_restore_reports_the_restore():
    log = PlatformLog(LogStyle.LAMBDA, "$LATEST", 128)
    log.restore_started(2.0, copy=True)
    settled = log.settled(OutcomeKind.RESTORE_ERROR, "Runtime.AfterRestoreError", now=2.25, delivered=False)
    assert settled.lines == ("RESTORE_REPORT Restore Duration: 250.00 ms\tStatus: error\t"
                             "Error Type: Runtime.AfterRestoreError\n")
    timeout = log.settled(OutcomeKind.RESTORE_TIMEOUT, "Sandbox.Timedout", now=12.0, delivered=False)
    assert timeout.lines == "RESTORE_REPORT Restore Duration: 10000.00 ms\tStatus: timeout\n"
    assert (timeout.status, timeout.error_type) == ("timeout", "Sandbox.Timedout")


def test_rie_writes_no_report_for_a_runtime_that_failed():
    log = PlatformLog(LogStyle.RIE, "$LATEST", 3008)
    assert not log.settled(OutcomeKind.EXIT_ERROR, "Runtime.ExitError", now=1.0, delivered=True).report
    assert log.settled(OutcomeKind.TIMEOUT, "Sandbox.Timedout", now=1.0, delivered=True).status == "timeout"


def test_success_and_function_errors_add_nothing_before_the_report():
    log = PlatformLog(LogStyle.LAMBDA, "$LATEST", 128)
    for kind in (OutcomeKind.SUCCESS, OutcomeKind.FUNCTION_ERROR):
        settled = log.settled(kind, None, now=1.0, delivered=True)
        assert (settled.lines, settled.report, settled.status) == ("", True, None)


def test_json_format_writes_lambdas_records_and_filters_them_by_the_system_log_level():
    import json

    from runtime_api.platform_log import JsonLog

    arn = "arn:aws:lambda:us-east-1:123456789012:function:fn"
    log = PlatformLog(LogStyle.LAMBDA, "$LATEST", 128, json_log=JsonLog(arn, "INFO", wall_offset=1_700_000_000.0))
    log.launched(10.0)
    log.init_done(10.5, snapshot=False)
    line, shown = log.delivered("a", now=11.0)
    assert shown and json.loads(line) == {
        "time": "2023-11-14T22:13:31.000Z", "type": "platform.start",
        "record": {"requestId": "a", "functionArn": arn, "version": "$LATEST"}}
    (report,) = [json.loads(text) for text in log.report("a", duration_ms=1.2345, max_memory_used_mb=40,
                                                         now=11.25).splitlines()]
    assert report["type"] == "platform.report"  # runtimeDone is DEBUG: below INFO
    assert report["record"] == {"requestId": "a", "status": "success", "metrics": {
        "durationMs": 1.234, "billedDurationMs": 2, "memorySizeMB": 128, "maxMemoryUsedMB": 40,
        "initDurationMs": 500.0}}
    failed = log.report("b", duration_ms=3000.0, max_memory_used_mb=40, status="timeout",
                        error_type="Sandbox.Timedout", now=14.0)
    assert json.loads(failed)["record"]["status"] == "timeout"
    assert json.loads(failed)["record"]["errorType"] == "Sandbox.Timedout"

    debug = PlatformLog(LogStyle.LAMBDA, "$LATEST", 128, json_log=JsonLog(arn, "DEBUG"))
    types = [json.loads(text)["type"] for text in debug.report("c", duration_ms=1.0, max_memory_used_mb=1).splitlines()]
    assert types == ["platform.runtimeDone", "platform.report"]
    warn = PlatformLog(LogStyle.LAMBDA, "$LATEST", 128, json_log=JsonLog(arn, "WARN"))
    assert warn.delivered("d")[0] == "" and warn.report("d", duration_ms=1.0, max_memory_used_mb=1) == ""
    assert json.loads(warn.template_failed(1.0, "Runtime.ExitError") or "null") is None
