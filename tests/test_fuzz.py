"""Fuzzing: random argument tuples, valid and invalid, straight into
torch.ops.convkit.* and through the Python API. Every call must either return
the right answer or raise a Python exception; a crash fails the run (and under
scripts/sanitize.sh any out-of-bounds access or undefined behaviour aborts it).

Tuples start from a valid call and take a few random mutations (wrong ranks,
dtypes, sizes, hyper-parameters, huge values, list lengths, layouts), so both
the checks and the kernels behind them are exercised. The oracle is
F.conv2d where a call is cheap, and integer arithmetic on the geometry where
it would need more memory than any machine has.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, event, given, note
from hypothesis import strategies as st

import convkit
from conftest import budget

ops = torch.ops.convkit
ERRORS = (RuntimeError, ValueError, TypeError)
SUPPORTED = (torch.float32, torch.float64)
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.uint8,
          torch.bool, torch.complex64]
HUGE = [2**31 - 1, 2**31, 2**32 + 1, 2**40, 2**61, 2**62, 2**63 - 1, -(2**63), -(2**31)]
# A call whose geometry needs more elements than this is not run for real:
# above CHEAP and below IMPOSSIBLE it would just be slow; above IMPOSSIBLE no
# machine can allocate it, so the only right answer is an exception.
CHEAP, IMPOSSIBLE = 2**22, 2**45



# Building blocks ---------------------------------------------------------------

def make_tensor(shape, dtype, seed, layout="contiguous"):
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point or dtype.is_complex:
        base = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    elif dtype == torch.bool:
        base = torch.randint(0, 2, shape, generator=g).bool()
    else:
        base = torch.randint(-3, 4, shape, generator=g).to(dtype)
    if layout == "channels_last" and base.dim() == 4:
        return base.contiguous(memory_format=torch.channels_last)
    if layout == "transposed" and base.dim() >= 2:
        return base.transpose(-1, -2).contiguous().transpose(-1, -2)
    if layout == "sliced" and base.dim() >= 1:
        host = torch.zeros(*shape[:-1], 2 * shape[-1] + 1, dtype=dtype)
        view = host[..., 1::2]
        view.copy_(base)
        return view
    if layout == "expanded" and base.dim() >= 1 and base.numel() > 0:
        return base[:1].expand(shape)
    return base


def geometry(x_shape, w_shape, stride, padding, dilation):
    """Exact integer geometry of an op call with 4-D operands and int[2]
    hyper-parameters: None when it is invalid (the call must raise), else
    (largest tensor a kernel allocates in elements, hyper-parameters reduced to
    small equivalents that F.conv2d's own int64 arithmetic handles)."""
    if min(stride) <= 0 or min(dilation) <= 0 or min(padding) < 0:
        return None
    padded = [x_shape[2 + i] + 2 * padding[i] for i in range(2)]
    extent = [dilation[i] * (w_shape[2 + i] - 1) + 1 for i in range(2)]
    if any(p < e for p, e in zip(padded, extent)) or min(w_shape[2:]) <= 0:
        return None
    out = [(p - e) // s + 1 for p, e, s in zip(padded, extent, stride)]
    elements = max(x_shape[0] * x_shape[1] * padded[0] * padded[1], x_shape[0] * w_shape[0] * out[0] * out[1])
    # a stride beyond the padded size and the dilation of a 1-wide kernel do
    # not change the answer
    small_stride = [min(s, p - e + 1) for s, p, e in zip(stride, padded, extent)]
    small_dilation = [1 if w_shape[2 + i] == 1 else dilation[i] for i in range(2)]
    return elements, small_stride, small_dilation


def assert_raises_cleanly(call):
    try:
        result = call()
    except ERRORS:
        return
    raise AssertionError(f"expected an exception, got a result: {result!r}")


def outcome(call, errors=ERRORS):
    try:
        return call(), None
    except errors as error:
        return None, error


def reference_outcome(call):
    """torch's own errors are of several types (IndexError too); any will do."""
    return outcome(call, Exception)


def assert_matches(actual, expected, what):
    assert isinstance(actual, torch.Tensor), what
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    tol = dict(rtol=1e-9, atol=1e-9) if expected.dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(actual, expected, equal_nan=True, **tol, msg=lambda m: f"{what}: {m}")


def reference_conv2d(x, w, b, stride, padding, dilation, groups):
    if w.dim() == 4 and w.shape[0] == 0 and groups != 0 and not isinstance(groups, bool):
        # torch refuses a weight without output channels; the answer is the
        # empty output of the same call with one channel per group.
        if b is not None and tuple(b.shape) != (0,):
            raise RuntimeError("bias must have as many elements as the weight has output channels")
        one = w.new_zeros((groups,) + tuple(w.shape[1:])) if isinstance(groups, int) and 0 < groups < 64 else w
        return F.conv2d(x, one, None, stride, padding, dilation, groups)[:, :0]
    try:
        out = F.conv2d(x, w, b, stride, padding, dilation, groups)
    except RuntimeError as error:
        # torch refuses an input with no rows or columns even where padding
        # gives the kernel room; the answer is the convolution of the padded input
        pads = [padding] * 2 if isinstance(padding, int) and not isinstance(padding, bool) else padding
        if ("Only zero batch or zero channel" not in str(error) or not isinstance(pads, (list, tuple))
                or len(pads) != 2 or not all(isinstance(p, int) and p >= 0 for p in pads)):
            raise
        padded = F.pad(x, (pads[1], pads[1], pads[0], pads[0]))
        return F.conv2d(padded, w, b, stride, 0, dilation, groups)
    if x.dim() == 4 and x.shape[1] == 0 and out.shape[1] != w.shape[0]:
        # torch returns no output channels for an input without channels; the
        # empty sum is zero, plus the bias, for each of the weight's channels.
        shape = (x.shape[0], w.shape[0]) + tuple(out.shape[2:])
        out = torch.zeros(shape, dtype=x.dtype) + (0 if b is None else b.view(1, -1, 1, 1))
    return out


# Argument tuples ----------------------------------------------------------------

small = st.integers(0, 4)
bad_int = st.one_of(st.integers(-3, 5), st.sampled_from(HUGE))
layouts = st.sampled_from(["contiguous", "contiguous", "channels_last", "transposed", "sliced", "expanded"])
MUTATIONS = ["input_rank", "weight_rank", "input_dtype", "weight_dtype", "bias_dtype", "bias_shape", "channels",
             "groups", "stride", "padding", "dilation", "list_length", "huge_kernel", "empty_dim", "kernel_empty",
             "grad_shape", "grad_dtype", "mask"]


@st.composite
def conv_calls(draw):
    """(input, weight, bias, stride, padding, dilation, groups, grad_output, output_mask, description)."""
    groups = draw(st.integers(1, 3))
    n, cg, kg = draw(st.integers(0, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    stride = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    padding = [draw(small), draw(small)]
    dilation = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    size = [dilation[i] * (kernel[i] - 1) + 1 + draw(st.integers(0, 5)) for i in range(2)]
    x_shape, w_shape = [n, cg * groups] + size, [kg * groups, cg] + kernel
    b_shape = [kg * groups] if draw(st.booleans()) else None
    dtypes = {"input": draw(st.sampled_from(SUPPORTED))}
    dtypes["weight"] = dtypes["bias"] = dtypes["input"]
    mask = [draw(st.booleans()) for _ in range(3)]
    grad_shape, grad_dtype = None, None  # None: whatever the forward produces

    mutations = draw(st.lists(st.sampled_from(MUTATIONS), max_size=3))
    for m in mutations:
        if m == "input_rank":
            x_shape = draw(st.lists(small, min_size=0, max_size=5))
        elif m == "weight_rank":
            w_shape = draw(st.lists(small, min_size=0, max_size=5))
        elif m in ("input_dtype", "weight_dtype", "bias_dtype"):
            dtypes[m.split("_")[0]] = draw(st.sampled_from(DTYPES))
        elif m == "bias_shape":
            b_shape = draw(st.lists(small, min_size=0, max_size=2))
        elif m == "channels":
            x_shape = list(x_shape)
            if len(x_shape) >= 2:
                x_shape[1] = draw(small)
        elif m == "groups":
            groups = draw(bad_int)
        elif m in ("stride", "padding", "dilation"):
            values = {"stride": stride, "padding": padding, "dilation": dilation}[m]
            if values:  # a list_length mutation may have emptied it
                values[draw(st.integers(0, len(values) - 1))] = draw(bad_int)
        elif m == "list_length":
            name = draw(st.sampled_from(["stride", "padding", "dilation"]))
            values = draw(st.lists(st.integers(0, 3), max_size=4))
            stride, padding, dilation = [values if name == k else v for k, v in
                                         (("stride", stride), ("padding", padding), ("dilation", dilation))]
        elif m == "huge_kernel" and len(w_shape) == 4:
            w_shape = list(w_shape[:2]) + [draw(st.integers(1, 12)), draw(st.integers(1, 12))]
        elif m == "empty_dim":
            target = draw(st.sampled_from(["x", "w"]))
            shape = list(x_shape if target == "x" else w_shape)
            if shape:
                shape[draw(st.integers(0, len(shape) - 1))] = 0
            x_shape, w_shape = (shape, w_shape) if target == "x" else (x_shape, shape)
        elif m == "kernel_empty" and len(w_shape) == 4:
            w_shape = list(w_shape[:2]) + [0, draw(small)]
        elif m == "grad_shape":
            grad_shape = draw(st.lists(small, min_size=0, max_size=5))
        elif m == "grad_dtype":
            grad_dtype = draw(st.sampled_from(DTYPES))
        elif m == "mask":
            mask = draw(st.lists(st.booleans(), max_size=4))

    seed = draw(st.integers(0, 2**20))
    x = make_tensor(x_shape, dtypes["input"], seed, draw(layouts))
    w = make_tensor(w_shape, dtypes["weight"], seed + 1, draw(layouts))
    b = None if b_shape is None else make_tensor(b_shape, dtypes["bias"], seed + 2)
    return dict(x=x, w=w, b=b, stride=stride, padding=padding, dilation=dilation, groups=groups,
                grad_shape=grad_shape, grad_dtype=grad_dtype, grad_seed=seed + 3, mask=mask, mutations=mutations)


def describe(c):
    return (f"x {c['x'].dtype} {tuple(c['x'].shape)} strides {c['x'].stride()}, w {c['w'].dtype} {tuple(c['w'].shape)}, "
            f"b {None if c['b'] is None else (c['b'].dtype, tuple(c['b'].shape))}, stride {c['stride']}, "
            f"padding {c['padding']}, dilation {c['dilation']}, groups {c['groups']}, mutations {c['mutations']}")


def classify(c):
    """What an op call must do: 'raise', or 'run' (F.conv2d is the oracle,
    with c['oracle_hyper'] as its hyper-parameters), or 'skip' (valid but too
    big for a test)."""
    x, w = c["x"], c["w"]
    hyper = (c["stride"], c["padding"], c["dilation"])
    if x.dim() != 4 or w.dim() != 4 or any(len(v) != 2 for v in hyper):
        return "raise"
    found = geometry(tuple(x.shape), tuple(w.shape), *hyper)
    if found is None:
        return "raise"
    elements, stride, dilation = found
    if elements >= IMPOSSIBLE:
        return "raise"
    if elements > CHEAP:
        return "skip"
    if not 0 < c["groups"] <= 64:  # only a 0-channel input divides by a huge group count
        return "raise" if c["groups"] <= 0 or x.shape[1] != 0 or w.shape[1] != 0 or w.shape[0] != 0 else "skip"
    c["oracle_hyper"] = (stride, c["padding"], dilation, c["groups"])
    return "run"


def convkit_may_refuse(c):
    """Calls F.conv2d accepts that convkit rightly rejects."""
    dtypes = {c["x"].dtype, c["w"].dtype} | ({c["b"].dtype} if c["b"] is not None else set())
    return (c["x"].dtype not in SUPPORTED or len(dtypes) > 1
            # F.conv2d skips most of its checks when the input is empty
            or c["x"].numel() == 0)


def call_args(c):
    return (c["x"], c["w"], c["b"], c["stride"], c["padding"], c["dilation"], c["groups"])


# Fuzz targets -------------------------------------------------------------------------

@budget(400)
@given(call=conv_calls())
def test_fuzz_conv2d_op(call):
    c = call
    note(describe(c))
    kind = classify(c)
    event(kind)
    assume(kind != "skip")
    if kind == "raise":
        assert_raises_cleanly(lambda: ops.conv2d(*call_args(c)))
        return
    expected, expected_error = reference_outcome(lambda: reference_conv2d(c["x"], c["w"], c["b"], *c["oracle_hyper"]))
    actual, error = outcome(lambda: ops.conv2d(*call_args(c)))
    event("convkit returned" if error is None else "convkit raised")
    if expected_error is not None:
        assert actual is None, f"F.conv2d raised {expected_error!r} but convkit returned {actual!r}"
    elif error is not None:
        assert convkit_may_refuse(c), f"convkit raised {error!r} on a call F.conv2d accepts"
    else:
        assert_matches(actual, expected, "conv2d")


@budget(300)
@given(call=conv_calls())
def test_fuzz_conv2d_backward_op(call):
    c = call
    note(describe(c) + f", grad_output {c['grad_shape']} {c['grad_dtype']}, mask {c['mask']}")
    kind = classify(c)
    event(kind)
    assume(kind != "skip")
    x, w = c["x"], c["w"]
    # grad_output: the forward's shape unless mutated, so valid calls are common
    expected_out, forward_error = (None, None) if kind == "raise" else reference_outcome(
        lambda: reference_conv2d(x, w, None, *c["oracle_hyper"]))
    shape = c["grad_shape"] if c["grad_shape"] is not None else (
        list(expected_out.shape) if expected_out is not None else [1, 1, 1, 1])
    grad_dtype = c["grad_dtype"] or (x.dtype if x.dtype.is_floating_point else torch.float32)
    grad_output = make_tensor(shape, grad_dtype, c["grad_seed"], "transposed")
    args = (grad_output, x, w, c["stride"], c["padding"], c["dilation"], c["groups"], c["mask"])
    if kind == "raise":
        assert_raises_cleanly(lambda: ops.conv2d_backward(*args))
        return
    actual, error = outcome(lambda: ops.conv2d_backward(*args))
    event("convkit returned" if error is None else "convkit raised")
    valid = (forward_error is None and list(grad_output.shape) == list(expected_out.shape)
             and grad_output.dtype == x.dtype and len(c["mask"]) == 3)
    if not valid:
        assert actual is None, f"convkit accepted an invalid backward call and returned {actual!r}"
        return
    if error is not None:
        assert convkit_may_refuse(c), f"convkit raised {error!r} on a valid backward call"
        return
    leaves = [x.detach().requires_grad_(), w.detach().requires_grad_()]
    bias = torch.zeros(w.shape[0], dtype=x.dtype, requires_grad=True)
    out = reference_conv2d(leaves[0], leaves[1], bias, *c["oracle_hyper"])
    expected = torch.autograd.grad(out, leaves + [bias], grad_output, allow_unused=True)
    for name, wanted, got, want, like in zip(("input", "weight", "bias"), c["mask"], actual, expected,
                                             (x, w, bias)):
        if wanted:
            assert_matches(got, want if want is not None else torch.zeros_like(like), f"grad {name}")
        else:
            assert got.numel() == 0, f"grad {name} was not asked for but came back as {tuple(got.shape)}"


@st.composite
def corr2d_calls(draw):
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    x_shape, k_shape = [h, w], [draw(st.integers(1, h)), draw(st.integers(1, w))]
    dtype = draw(st.sampled_from(SUPPORTED))
    dtypes = [dtype, dtype]
    for m in draw(st.lists(st.sampled_from(["x_rank", "k_rank", "x_dtype", "k_dtype", "big_k", "empty"]),
                           max_size=2)):
        if m == "x_rank":
            x_shape = draw(st.lists(small, max_size=4))
        elif m == "k_rank":
            k_shape = draw(st.lists(small, max_size=4))
        elif m in ("x_dtype", "k_dtype"):
            dtypes[m == "k_dtype"] = draw(st.sampled_from(DTYPES))
        elif m == "big_k":
            k_shape = [draw(st.integers(1, 8)), draw(st.integers(1, 8))]
        elif m == "empty":
            shapes = [x_shape, k_shape]
            target = shapes[draw(st.integers(0, 1))]
            if target:
                target[draw(st.integers(0, len(target) - 1))] = 0
    seed = draw(st.integers(0, 2**20))
    return (make_tensor(x_shape, dtypes[0], seed, draw(layouts)),
            make_tensor(k_shape, dtypes[1], seed + 1, draw(layouts)))


@budget(150)
@given(call=corr2d_calls())
def test_fuzz_corr2d_op(call):
    x, k = call
    note(f"X {x.dtype} {tuple(x.shape)}, K {k.dtype} {tuple(k.shape)}")
    valid = (x.dim() == 2 and k.dim() == 2 and x.dtype in SUPPORTED and k.dtype == x.dtype and k.numel() > 0
             and k.shape[0] <= x.shape[0] and k.shape[1] <= x.shape[1])
    actual, error = outcome(lambda: ops.corr2d(x, k))
    event("convkit returned" if error is None else "convkit raised")
    if not valid:
        assert actual is None, f"convkit accepted an invalid corr2d call and returned {actual!r}"
        return
    assert error is None, f"convkit raised {error!r} on a valid corr2d call"
    assert_matches(actual, F.conv2d(x[None, None], k[None, None])[0, 0], "corr2d")
    assert_matches(convkit.reference.corr2d(x, k).to(x.dtype), actual, "reference corr2d")


# The Python API --------------------------------------------------------------------------

# Mostly plausible values, so that calls often get past the checks, with a
# tail of odd ones: non-positive, wrong lengths, wrong types.
odd_hyper_values = st.one_of(st.integers(-2, 0), st.tuples(st.integers(-1, 3), st.integers(-1, 3)),
                             st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)),
                             st.lists(st.integers(0, 2), max_size=3),
                             st.sampled_from([None, 1.0, True, "1", [], (1.5, 1), (1,)]))


def mostly(plain, odd):
    """plain three times in four (hypothesis alone favours the odd branch)."""
    return st.sampled_from([True, True, True, False]).flatmap(lambda p: plain if p else odd)


hyper_values = mostly(st.one_of(st.integers(1, 2), st.tuples(st.integers(1, 2), st.integers(1, 2))),
                      odd_hyper_values)
padding_values = mostly(st.one_of(st.integers(0, 2), st.sampled_from(["same", "valid"])),
                        st.one_of(odd_hyper_values, st.sampled_from(["SAME", "full", ""])))


@st.composite
def shapes(draw):
    """Input and weight shapes, mostly consistent ones."""
    if draw(st.sampled_from([False, False, False, True])):
        return draw(st.lists(st.integers(0, 5), min_size=1, max_size=5)), draw(
            st.lists(st.integers(0, 3), min_size=3, max_size=5))
    c, k = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    size = [draw(st.integers(1, 6)), draw(st.integers(1, 6))]
    batch = [draw(st.integers(0, 2))] if draw(st.booleans()) else []
    return batch + [c] + size, [k, c] + kernel


@budget(200)
@given(shapes=shapes(), dtype=mostly(st.sampled_from(SUPPORTED), st.sampled_from(DTYPES)),
       bias=st.sampled_from([None, "right", "wrong"]), stride=hyper_values, padding=padding_values,
       dilation=hyper_values, groups=mostly(st.just(1), st.one_of(st.integers(-1, 3), st.sampled_from([None, 1.0, True]))),
       seed=st.integers(0, 2**20))
def test_fuzz_functional_conv2d(shapes, dtype, bias, stride, padding, dilation, groups, seed):
    shape, w_shape = shapes
    x, w = make_tensor(shape, dtype, seed), make_tensor(w_shape, dtype, seed + 1)
    b = None if bias is None else make_tensor([w_shape[0] + (bias == "wrong")], dtype, seed + 2)
    args = (x, w, b, stride, padding, dilation, groups)
    note(f"x {tuple(x.shape)} w {tuple(w.shape)} {dtype} bias {bias} stride {stride!r} padding {padding!r} "
         f"dilation {dilation!r} groups {groups!r}")
    expected, expected_error = reference_outcome(lambda: reference_conv2d(*args))
    actual, error = outcome(lambda: convkit.conv2d(*args))
    event("convkit returned" if error is None else "convkit raised")
    if expected_error is not None:
        assert actual is None, f"F.conv2d raised {expected_error!r} but convkit.conv2d returned {actual!r}"
    elif error is not None:
        # F.conv2d skips most of its checks when the input is empty
        assert dtype not in SUPPORTED or x.numel() == 0, f"convkit.conv2d raised {error!r} on a call F.conv2d accepts"
    else:
        assert_matches(actual, expected, "convkit.conv2d")


@budget(150)
@given(cin=st.integers(-1, 4), cout=st.integers(-1, 4), kernel=hyper_values, stride=hyper_values,
       padding=padding_values, dilation=hyper_values, groups=st.integers(-1, 3), bias=st.booleans(),
       padding_mode=st.sampled_from(["zeros", "reflect", "replicate", "circular", "bogus"]),
       size=st.integers(1, 6), seed=st.integers(0, 2**20))
def test_fuzz_nn_conv2d(cin, cout, kernel, stride, padding, dilation, groups, bias, padding_mode, size, seed):
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias,
                  padding_mode=padding_mode)
    note(f"Conv2d({cin}, {cout}, {kernel!r}, **{kwargs})")
    torch_layer, torch_error = reference_outcome(lambda: torch.nn.Conv2d(cin, cout, kernel, **kwargs))
    layer, error = outcome(lambda: convkit.nn.Conv2d(cin, cout, kernel, **kwargs))
    if torch_error is not None:
        assert layer is None and type(error) is type(torch_error), (
            f"nn.Conv2d raised {torch_error!r}, convkit.nn.Conv2d gave {layer if error is None else repr(error)}")
        return
    assert error is None, f"convkit.nn.Conv2d raised {error!r} where nn.Conv2d did not"
    assert repr(layer) == repr(torch_layer)
    layer.load_state_dict(torch_layer.state_dict())
    x = make_tensor([2, max(cin, 0), size, size + 1], torch.float32, seed)
    expected, expected_error = reference_outcome(lambda: torch_layer(x))
    actual, error = outcome(lambda: layer(x))
    if x.numel() == 0 or cout == 0:
        return  # torch skips its checks on empty operands and disagrees with itself; no crash is the test
    if expected_error is not None:
        assert actual is None, f"nn.Conv2d raised {expected_error!r} but convkit returned {actual!r}"
    else:
        assert error is None, f"convkit.nn.Conv2d raised {error!r} where nn.Conv2d did not"
        assert_matches(actual, expected, "convkit.nn.Conv2d")


# Known inputs that once slipped through ---------------------------------------------------

@pytest.mark.parametrize("args", [
    # dilation * (kernel - 1) + 1 wraps around int64 to a small extent
    dict(x=(1, 1, 10, 7), w=(1, 1, 9, 1), dilation=[2**61, 1]),
    dict(x=(1, 1, 10, 7), w=(1, 1, 1, 5), dilation=[1, 2**62]),
    dict(x=(1, 1, 10, 7), w=(1, 1, 3, 3), dilation=[2**63 - 1, 2**63 - 1]),
    # H + 2 * padding wraps around int64
    dict(x=(1, 1, 10, 7), w=(1, 1, 3, 3), padding=[2**62, 0]),
    dict(x=(1, 1, 10, 7), w=(1, 1, 3, 3), padding=[2**63 - 1, 2**63 - 1]),
    dict(x=(1, 1, 10, 7), w=(1, 1, 3, 3), padding=[2**62 - 1, 2**62 - 1], stride=[2**62, 2**62]),
], ids=lambda a: ",".join(f"{k}={v}" for k, v in a.items() if k not in ("x", "w")))
def test_hyper_parameters_that_overflow_int64_are_rejected(args):
    x, w = torch.randn(args["x"]), torch.randn(args["w"])
    hyper = (args.get("stride", [1, 1]), args.get("padding", [0, 0]), args.get("dilation", [1, 1]), 1)
    assert_raises_cleanly(lambda: ops.conv2d(x, w, None, *hyper))
    go = torch.randn(1, 1, 1, 1)
    assert_raises_cleanly(lambda: ops.conv2d_backward(go, x, w, *hyper, [True, True, True]))
