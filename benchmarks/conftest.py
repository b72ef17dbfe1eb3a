"""pytest-benchmark speed report: convkit vs torch nn.Conv2d (and the naive loop).

`pytest benchmarks` runs every case; `pytest benchmarks --quick` (or
CONVKIT_BENCH_QUICK=1) runs the CI subset with short timing. The cases and the
interleaved timing helper live in convkit/bench.py, shared with
`python -m convkit bench`.
"""
import os

import pytest

from convkit import bench

RESULTS = []  # rows from bench.measure, printed at the end


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", default=False,
                     help="convkit benchmarks: a few cases and short timing (also CONVKIT_BENCH_QUICK=1)")


def quick_mode(config):
    return config.getoption("--quick") or os.environ.get("CONVKIT_BENCH_QUICK", "") not in ("", "0")


def pytest_generate_tests(metafunc):
    if "case_pass" in metafunc.fixturenames:
        params = [(c, p) for c in bench.selected_cases(quick_mode(metafunc.config)) for p in c.passes()]
        metafunc.parametrize("case_pass", params, ids=[f"{c.name}-{p}" for c, p in params])


@pytest.fixture
def quick(request):
    return quick_mode(request.config)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RESULTS:
        return
    terminalreporter.write_sep("=", "convkit vs torch nn.Conv2d (interleaved medians)")
    terminalreporter.write_line(f"machine: {bench.machine_line()}")
    for line in bench.format_table(RESULTS).splitlines():
        terminalreporter.write_line(line)
    met = sum(r["met"] for r in RESULTS)
    terminalreporter.write_line(f"{met}/{len(RESULTS)} targets met")
