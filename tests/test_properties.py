"""Property tests: convkit.conv2d against torch.nn.functional.conv2d, forward and
every gradient, over random shapes, hyper-parameters, dtypes and memory layouts,
plus algebraic identities (linearity, groups, padding).

The budget is small and the search derandomized by default, so CI is
reproducible; CONVKIT_HYPOTHESIS_PROFILE=thorough runs ten times as many fresh
random examples.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import convkit
from conftest import assert_same_format, budget

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
DTYPES = [torch.float32, torch.float64]
# float64 is held to near machine precision; float32 to what a different
# summation order can cost over a few hundred terms.
TOLERANCE = {torch.float64: dict(rtol=1e-9, atol=1e-10), torch.float32: dict(rtol=1e-4, atol=2e-4)}



def generator(seed):
    return torch.Generator().manual_seed(seed)


# Configurations ---------------------------------------------------------------

@st.composite
def conv_configs(draw):
    """Arguments of one conv2d call, with input sizes that make it valid."""
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    ambiguous = draw(st.integers(0, 7)) == 0  # N x C x 1 x 1, where NCHW and NHWC strides coincide
    kernel = (1, 1) if ambiguous else (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding_kind = draw(st.sampled_from(["int", "pair", "same", "valid"]))
    stride = (1, 1) if padding_kind == "same" else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    if padding_kind == "int":
        padding = draw(st.integers(0, 3))
    elif padding_kind == "pair":
        padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    else:
        padding = padding_kind
    numeric = {"int": (padding, padding), "pair": padding}.get(padding_kind, (0, 0))
    size = []
    for axis in range(2):
        extent = dilation[axis] * (kernel[axis] - 1) + 1
        smallest = 1 if padding_kind == "same" else max(1, extent - 2 * numeric[axis])
        size.append(1 if ambiguous else smallest + draw(st.integers(0, 6)))
    # stride/dilation as an int or a pair, as F.conv2d takes either
    stride = stride[0] if stride[0] == stride[1] and draw(st.booleans()) else stride
    dilation = dilation[0] if dilation[0] == dilation[1] and draw(st.booleans()) else dilation
    batch = draw(st.sampled_from([None, 0, 1, 2, 3]))  # None: unbatched (C, H, W)
    return dict(batch=batch, cin=cin, cout=cout, size=tuple(size), kernel=kernel, groups=groups, stride=stride,
                padding=padding, dilation=dilation, bias=draw(st.booleans()), ambiguous=ambiguous)


def input_shape(c):
    return ((c["batch"],) if c["batch"] is not None else ()) + (c["cin"],) + c["size"]


def weight_shape(c):
    return (c["cout"], c["cin"] // c["groups"]) + c["kernel"]


def hyper(c):
    return dict(stride=c["stride"], padding=c["padding"], dilation=c["dilation"], groups=c["groups"])


# Layouts ------------------------------------------------------------------------
# A layout turns a leaf tensor into an operand with the same values but other
# strides, differentiably, so gradients are compared on the leaves.

LAYOUTS = ["contiguous", "channels_last", "permuted", "sliced", "expanded"]


@st.composite
def layouts(draw, dim):
    kind = draw(st.sampled_from(LAYOUTS))
    if kind == "permuted":
        return kind, tuple(draw(st.permutations(range(dim))))
    if kind == "expanded":
        return kind, draw(st.integers(0, dim - 1))
    return kind, None


def leaf_shape(shape, layout):
    kind, arg = layout
    if kind == "expanded":  # the leaf has size 1 where the operand is broadcast (stride 0)
        return tuple(1 if i == arg else n for i, n in enumerate(shape))
    return shape


def apply_layout(leaf, shape, layout):
    kind, arg = layout
    if kind == "contiguous":
        return leaf
    if kind == "channels_last":
        perm = (0, 2, 3, 1) if leaf.dim() == 4 else (1, 2, 0)
    elif kind == "permuted":
        perm = arg
    if kind in ("channels_last", "permuted"):
        inverse = [perm.index(i) for i in range(leaf.dim())]
        return leaf.permute(*perm).contiguous().permute(*inverse)
    if kind == "expanded":
        return leaf.expand(shape)
    # "sliced": a strided window with a storage offset into a NaN-filled
    # buffer, so any read outside the view shows up in the result.
    host = torch.full([2 * n + 3 for n in shape], float("nan"), dtype=leaf.dtype, device=leaf.device)
    view = host[tuple(slice(1, 1 + 2 * n, 2) if i == leaf.dim() - 1 else slice(2, 2 + n) for i, n in enumerate(shape))]
    view.copy_(leaf)
    return view


def operand(shape, layout, dtype, device, seed, requires_grad):
    leaf = torch.randn(leaf_shape(shape, layout), generator=generator(seed), dtype=dtype).to(device)
    leaf.requires_grad_(requires_grad)
    return leaf


# Parity with F.conv2d -------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@budget(120)
@given(config=conv_configs(), data=st.data())
def test_forward_and_gradients_match_torch(device, dtype, config, data):
    c = config
    x_shape, w_shape = input_shape(c), weight_shape(c)
    x_layout = data.draw(layouts(len(x_shape)), "input layout")
    w_layout = data.draw(layouts(4), "weight layout")
    if c["ambiguous"]:
        x_layout = data.draw(st.sampled_from([("contiguous", None), ("channels_last", None)]), "ambiguous layout")
    needs = data.draw(st.tuples(st.booleans(), st.booleans(), st.booleans()), "requires_grad")
    seed = data.draw(st.integers(0, 2**31 - 1), "seed")
    x_leaf = operand(x_shape, x_layout, dtype, device, seed, needs[0])
    w_leaf = operand(w_shape, w_layout, dtype, device, seed + 1, needs[1])
    b_leaf = operand((c["cout"],), ("contiguous", None), dtype, device, seed + 2, needs[2]) if c["bias"] else None

    def run(conv):
        x = apply_layout(x_leaf, x_shape, x_layout)
        w = apply_layout(w_leaf, w_shape, w_layout)
        return conv(x, w, b_leaf, **hyper(c))

    out, ref = run(convkit.conv2d), run(F.conv2d)
    assert out.shape == ref.shape and out.dtype == ref.dtype and out.device == ref.device
    torch.testing.assert_close(out, ref, **TOLERANCE[dtype])
    assert_same_format(out, ref)

    leaves = [t for t in (x_leaf, w_leaf, b_leaf) if t is not None and t.requires_grad]
    if not leaves:
        return
    grad_layout = data.draw(st.sampled_from([("contiguous", None), ("channels_last", None), ("sliced", None)])
                            if out.dim() == 4 else st.just(("contiguous", None)), "grad_output layout")
    grad_output = apply_layout(torch.randn(out.shape, generator=generator(seed + 3), dtype=dtype).to(device),
                               out.shape, grad_layout)
    grads = torch.autograd.grad(out, leaves, grad_output, allow_unused=True)
    expected = torch.autograd.grad(ref, leaves, grad_output, allow_unused=True)
    for name, got, want in zip(("input", "weight", "bias"), grads, expected):
        if want is None:  # F.conv2d's graph did not reach it (e.g. empty output)
            assert got is None or not got.any(), name
            continue
        torch.testing.assert_close(got, want, **TOLERANCE[dtype], msg=lambda m: f"grad {name}: {m}")


# Algebraic identities (float64, tight) ---------------------------------------------

def numeric_configs():
    return conv_configs().filter(lambda c: not isinstance(c["padding"], str))


@pytest.mark.parametrize("device", DEVICES)
@budget(40)
@given(config=conv_configs(), seed=st.integers(0, 2**31 - 1),
       scales=st.tuples(st.floats(-3, 3, allow_nan=False), st.floats(-3, 3, allow_nan=False)))
def test_linear_in_input_and_in_weight(device, config, seed, scales):
    c, (a, b) = config, scales
    g = generator(seed)
    x1, x2 = (torch.randn(input_shape(c), generator=g, dtype=torch.float64).to(device) for _ in range(2))
    w1, w2 = (torch.randn(weight_shape(c), generator=g, dtype=torch.float64).to(device) for _ in range(2))
    conv = lambda x, w: convkit.conv2d(x, w, None, **hyper(c))  # noqa: E731
    tight = dict(rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(conv(a * x1 + b * x2, w1), a * conv(x1, w1) + b * conv(x2, w1), **tight)
    torch.testing.assert_close(conv(x1, a * w1 + b * w2), a * conv(x1, w1) + b * conv(x1, w2), **tight)


@pytest.mark.parametrize("device", DEVICES)
@budget(40)
@given(config=conv_configs(), seed=st.integers(0, 2**31 - 1))
def test_grouped_is_concatenation_of_groups(device, config, seed):
    c = config
    g = generator(seed)
    x = torch.randn(input_shape(c), generator=g, dtype=torch.float64).to(device)
    w = torch.randn(weight_shape(c), generator=g, dtype=torch.float64).to(device)
    b = torch.randn(c["cout"], generator=g, dtype=torch.float64).to(device) if c["bias"] else None
    groups, channel_dim = c["groups"], x.dim() - 3
    whole = convkit.conv2d(x, w, b, **hyper(c))
    single = dict(hyper(c), groups=1)
    parts = [convkit.conv2d(xg, wg, None if b is None else bg, **single) for xg, wg, bg in
             zip(x.chunk(groups, channel_dim), w.chunk(groups, 0),
                 (b.chunk(groups) if b is not None else [None] * groups))]
    torch.testing.assert_close(whole, torch.cat(parts, channel_dim), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@budget(40)
@given(config=numeric_configs(), seed=st.integers(0, 2**31 - 1))
def test_padding_is_zero_padding_of_input(device, config, seed):
    c = config
    g = generator(seed)
    x = torch.randn(input_shape(c), generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(weight_shape(c), generator=g, dtype=torch.float64, requires_grad=True)
    x_, w_ = x.to(device), w.to(device)
    ph, pw = (c["padding"], c["padding"]) if isinstance(c["padding"], int) else c["padding"]
    padded = convkit.conv2d(x_, w_, None, **hyper(c))
    explicit = convkit.conv2d(F.pad(x_, (pw, pw, ph, ph)), w_, None, **dict(hyper(c), padding=0))
    torch.testing.assert_close(padded, explicit, rtol=1e-12, atol=1e-12)
    go = torch.randn(padded.shape, generator=g, dtype=torch.float64).to(device)
    for a, b in zip(torch.autograd.grad(padded, (x, w), go), torch.autograd.grad(explicit, (x, w), go)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
