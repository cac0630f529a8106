"""runtime_api.logs: the platform's START and REPORT lines (Lambda's and RIE's orders) and the
4 KB log tail."""

from __future__ import annotations

from runtime_api import logs


def test_report_lines_in_lambdas_and_ries_order():
    lambda_line = logs.report_line(logs.LogStyle.LAMBDA, "id", duration_ms=1.234, memory_mb=128, max_memory_used_mb=20,
                                   init_duration_ms=50.5, status="error", error_type="Runtime.ExitError")
    assert lambda_line == ("REPORT RequestId: id\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\t"
                           "Max Memory Used: 20 MB\tInit Duration: 50.50 ms\tStatus: error\tError Type: Runtime.ExitError\t\n")
    rie_line = logs.report_line(logs.LogStyle.RIE, "id", duration_ms=613.66, memory_mb=3008, max_memory_used_mb=20,
                                init_duration_ms=50.5)
    assert rie_line == ("REPORT RequestId: id\tInit Duration: 50.50 ms\tDuration: 613.66 ms\tBilled Duration: 614 ms\t"
                        "Memory Size: 3008 MB\tMax Memory Used: 20 MB\t\n")
    assert logs.start_line("id", "$LATEST") == "START RequestId: id Version: $LATEST\n"


def test_the_tail_keeps_the_last_4_kb():
    tail = logs.TailBuffer()
    for i in range(3000):
        tail.append(f"line {i}\n".encode())
    value = tail.value()
    assert len(value) == 4096 and value.endswith(b"line 2999\n")
