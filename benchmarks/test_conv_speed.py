"""One benchmark group per case and pass: convkit, torch nn.Conv2d and, where it
finishes in seconds, the naive loop. The ratio to torch comes from an
interleaved measurement (bench.measure) and is stored in extra_info together
with GFLOP/s and % of the machine's peak (nominal, and as measured right
before the case); speed is reported, never asserted."""
import pytest

from convkit import bench

from .conftest import RESULTS

_measured = {}


def _row(case, pass_name, quick):
    key = (case.name, pass_name)
    if key not in _measured:
        _measured[key] = bench.measure(case, pass_name, quick=quick)
        RESULTS.append(_measured[key])
    return _measured[key]


@pytest.mark.parametrize("impl", ["convkit", "torch", "naive"])
def test_speed(benchmark, case_pass, impl, quick):
    case, pass_name = case_pass
    fns = bench.make_callables(case, pass_name, include_naive=impl == "naive")
    if impl not in fns:
        pytest.skip("the naive loop takes too long for this case")
    row = _row(case, pass_name, quick)
    benchmark.group = f"{case.name} {pass_name}"
    benchmark.extra_info.update({k: row[k] for k in ("shape", "torch_ms", "convkit_ms", "ratio", "gflops",
                                                     "peak_pct", "peak_now_gflops", "peak_now_pct", "target", "naive_speedup", "met") if k in row})
    fn = fns[impl]
    fn()
    if quick:
        benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=0)
    else:
        benchmark(fn)
