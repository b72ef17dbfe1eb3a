"""Bad input gets a clear exception, from the Python API and from the raw ops."""
import pytest
import torch

import convkit

ops = torch.ops.convkit
x4 = torch.randn(2, 4, 8, 8)
w4 = torch.randn(6, 4, 3, 3)

# (description, call, exception type, message pattern)
FUNCTIONAL_CASES = [
    ("2-D input", lambda: convkit.conv2d(torch.randn(8, 8), w4), RuntimeError, "3D \\(unbatched\\) or 4D"),
    ("5-D input", lambda: convkit.conv2d(torch.randn(1, 2, 4, 8, 8), w4), RuntimeError, "3D \\(unbatched\\) or 4D"),
    ("3-D weight", lambda: convkit.conv2d(x4, torch.randn(6, 4, 3)), RuntimeError, "4-D weight"),
    ("channel mismatch", lambda: convkit.conv2d(torch.randn(2, 3, 8, 8), w4), RuntimeError,
     "expected input\\[2, 3, 8, 8\\] to have 4 channels, but got 3 channels"),
    ("groups 0", lambda: convkit.conv2d(x4, w4, groups=0), RuntimeError, "non-positive groups"),
    ("groups -1", lambda: convkit.conv2d(x4, w4, groups=-1), RuntimeError, "non-positive groups"),
    ("groups not dividing out channels", lambda: convkit.conv2d(x4, torch.randn(5, 1, 3, 3), groups=4),
     RuntimeError, "divisible by 4"),
    ("groups not dividing in channels", lambda: convkit.conv2d(torch.randn(2, 5, 8, 8), torch.randn(6, 2, 3, 3),
                                                               groups=2), RuntimeError, "channels"),
    ("stride 0", lambda: convkit.conv2d(x4, w4, stride=0), RuntimeError, "non-positive stride"),
    ("negative stride", lambda: convkit.conv2d(x4, w4, stride=(1, -2)), RuntimeError, "non-positive stride"),
    ("negative padding", lambda: convkit.conv2d(x4, w4, padding=-1), RuntimeError, "negative padding"),
    ("dilation 0", lambda: convkit.conv2d(x4, w4, dilation=0), RuntimeError, "dilation should be greater than zero"),
    ("kernel larger than input", lambda: convkit.conv2d(torch.randn(1, 4, 2, 2), w4), RuntimeError,
     "Kernel size can't be greater than actual input size"),
    ("dilated kernel larger than input", lambda: convkit.conv2d(torch.randn(1, 4, 5, 5), w4, dilation=3),
     RuntimeError, "Kernel size can't be greater"),
    ("empty kernel", lambda: convkit.conv2d(x4, torch.randn(6, 4, 0, 3)), RuntimeError, "kernel size must be positive"),
    ("bias wrong size", lambda: convkit.conv2d(x4, w4, torch.randn(5)), RuntimeError, "bias to be 1-dimensional with 6"),
    ("bias wrong rank", lambda: convkit.conv2d(x4, w4, torch.randn(6, 1)), RuntimeError, "bias to be 1-dimensional"),
    ("integer input", lambda: convkit.conv2d(x4.long(), w4.long()), RuntimeError, "floating-point"),
    ("bool input", lambda: convkit.conv2d(x4 > 0, w4 > 0), RuntimeError, "floating-point"),
    ("mismatched dtypes", lambda: convkit.conv2d(x4, w4.double()), RuntimeError, "should be the same"),
    ("mismatched bias dtype", lambda: convkit.conv2d(x4, w4, torch.randn(6).double()), RuntimeError,
     "should be the same"),
    ("half on CPU", lambda: convkit.conv2d(x4.half(), w4.half()), RuntimeError, "not supported on CPU"),
    ("unknown padding string", lambda: convkit.conv2d(x4, w4, padding="full"), ValueError, "Invalid padding string"),
    ("same with stride 2", lambda: convkit.conv2d(x4, w4, padding="same", stride=2), ValueError,
     "padding='same' is not supported for strided convolutions"),
    ("stride of 3 values", lambda: convkit.conv2d(x4, w4, stride=(1, 1, 1)), TypeError, "stride must be"),
    ("float stride", lambda: convkit.conv2d(x4, w4, stride=1.5), TypeError, "stride must be"),
    ("non-tensor input", lambda: convkit.conv2d([[1.0]], w4), TypeError, "tensors"),
    ("float groups", lambda: convkit.conv2d(x4, w4, groups=1.0), TypeError, "groups must be an int"),
    ("corr2d 3-D input", lambda: convkit.corr2d(torch.randn(1, 4, 4), torch.randn(2, 2)), RuntimeError, "2-D input"),
    ("corr2d kernel too large", lambda: convkit.corr2d(torch.randn(3, 3), torch.randn(4, 2)), RuntimeError,
     "larger than the input"),
    ("corr2d empty kernel", lambda: convkit.corr2d(torch.randn(3, 3), torch.randn(0, 2)), RuntimeError, "empty"),
    ("corr2d integer", lambda: convkit.corr2d(torch.ones(3, 3, dtype=torch.int32), torch.ones(2, 2, dtype=torch.int32)),
     RuntimeError, "floating-point"),
    ("corr2d mismatched dtypes", lambda: convkit.corr2d(torch.randn(3, 3), torch.randn(2, 2).double()), RuntimeError,
     "should be the same"),
]

RAW_OP_CASES = [
    ("raw 3-D input", lambda: ops.conv2d(torch.randn(4, 8, 8), w4, None, [1, 1], [0, 0], [1, 1], 1), "4-D input"),
    ("raw stride list of 1", lambda: ops.conv2d(x4, w4, None, [1], [0, 0], [1, 1], 1), "stride"),
    ("raw groups 0", lambda: ops.conv2d(x4, w4, None, [1, 1], [0, 0], [1, 1], 0), "non-positive groups"),
    ("raw negative padding", lambda: ops.conv2d(x4, w4, None, [1, 1], [0, -1], [1, 1], 1), "negative padding"),
    ("raw integer dtype", lambda: ops.conv2d(x4.int(), w4.int(), None, [1, 1], [0, 0], [1, 1], 1), "floating-point"),
    ("raw corr2d int", lambda: ops.corr2d(torch.ones(3, 3, dtype=torch.long), torch.ones(2, 2, dtype=torch.long)),
     "floating-point"),
    ("raw corr2d rank", lambda: ops.corr2d(torch.randn(3), torch.randn(2, 2)), "2-D input"),
    ("raw backward wrong grad shape",
     lambda: ops.conv2d_backward(torch.randn(2, 6, 5, 5), x4, w4, [1, 1], [0, 0], [1, 1], 1, [True, True, True]),
     "expected grad_output of size \\[2, 6, 6, 6\\]"),
    ("raw backward grad dtype",
     lambda: ops.conv2d_backward(torch.randn(2, 6, 6, 6).double(), x4, w4, [1, 1], [0, 0], [1, 1], 1,
                                 [True, True, True]), "should be the same"),
    ("raw backward bad groups",
     lambda: ops.conv2d_backward(torch.randn(2, 6, 6, 6), x4, w4, [1, 1], [0, 0], [1, 1], 3, [True, True, True]),
     "to have 12 channels"),
]


@pytest.mark.parametrize("call,error,pattern", [c[1:] for c in FUNCTIONAL_CASES], ids=[c[0] for c in FUNCTIONAL_CASES])
def test_functional_bad_input(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


@pytest.mark.parametrize("call,pattern", [c[1:] for c in RAW_OP_CASES], ids=[c[0] for c in RAW_OP_CASES])
def test_raw_op_bad_input(call, pattern):
    with pytest.raises(RuntimeError, match=pattern):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_tensors_on_different_devices():
    with pytest.raises(RuntimeError, match="same device"):
        convkit.conv2d(x4.cuda(), w4)
    with pytest.raises(RuntimeError, match="same device"):
        ops.conv2d(x4.cuda(), w4.cuda(), torch.randn(6), [1, 1], [0, 0], [1, 1], 1)


def test_tensors_on_different_devices_meta():
    """The device check, exercised without a GPU: a meta weight with a CPU input."""
    with pytest.raises(RuntimeError, match="same device"):
        convkit.conv2d(x4, w4.to("meta"))


def test_layer_rejects_wrong_channels():
    layer = convkit.nn.Conv2d(3, 6, 3)
    with pytest.raises(RuntimeError, match="to have 3 channels, but got 4 channels"):
        layer(x4)
