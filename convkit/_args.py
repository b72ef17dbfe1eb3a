"""Argument normalisation shared by the functional API, the autograd Function and the reference loop."""
import torch

PADDING_STRINGS = ("same", "valid")


def pair(value, name):
    """An int or a pair of ints, as F.conv2d accepts, as a tuple of two ints."""
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        return value  # already normalised: the common case, kept cheap
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        return (value, value)
    try:
        values = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return values


def resolve_padding(padding, kernel_size, stride, dilation):
    """Turns padding (int, pair, 'same' or 'valid') into symmetric padding plus
    any extra right/bottom padding that 'same' needs for even kernel extents,
    as torch does: returns ((pad_h, pad_w), (extra_h, extra_w))."""
    if not isinstance(padding, str):
        return pair(padding, "padding"), (0, 0)
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding != "same":
        raise ValueError(f"Invalid padding string {padding!r}, should be one of {set(PADDING_STRINGS)}")
    if any(s != 1 for s in stride):
        raise ValueError("padding='same' is not supported for strided convolutions")
    symmetric, extra = [], []
    for d, k in zip(dilation, kernel_size):
        total = d * (k - 1)
        symmetric.append(total // 2)
        extra.append(total - 2 * (total // 2))
    return tuple(symmetric), tuple(extra)


def normalize(input, weight, stride, padding, dilation):
    """Validates the Python-level arguments and returns (input, stride, padding,
    dilation, unbatched) with input 4-D and padded for an uneven 'same'."""
    if not isinstance(input, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError("conv2d expects input and weight to be tensors, got "
                        f"{type(input).__name__} and {type(weight).__name__}")
    if input.dim() not in (3, 4):
        raise RuntimeError(f"Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: "
                           f"{list(input.shape)}")
    if weight.dim() != 4:
        raise RuntimeError(f"Expected 4-D weight (out_channels, in_channels/groups, kH, kW) for conv2d, but got "
                           f"weight of size: {list(weight.shape)}")
    stride = pair(stride, "stride")
    dilation = pair(dilation, "dilation")
    padding, extra = resolve_padding(padding, weight.shape[2:], stride, dilation)
    unbatched = input.dim() == 3
    if unbatched:
        input = input.unsqueeze(0)
    if extra != (0, 0):
        input = torch.nn.functional.pad(input, (0, extra[1], 0, extra[0]))
    return input, stride, padding, dilation, unbatched
