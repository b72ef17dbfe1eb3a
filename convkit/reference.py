"""Naive Python loops: the ground truth every kernel is checked against."""
import torch

from . import _args


def corr2d(X, K):
    """The textbook's 2-D cross-correlation, loop for loop."""
    h, w = K.shape
    Y = torch.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1), dtype=X.dtype, device=X.device)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()
    return Y


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """F.conv2d semantics as a loop over output pixels and groups: each output
    pixel is the sum of its receptive field times the kernel."""
    input, (sh, sw), (ph, pw), (dh, dw), unbatched = _args.normalize(input, weight, stride, padding, dilation)
    n, c, h, w = input.shape
    k, cg, r, s = weight.shape
    if c != cg * groups or k % groups:
        raise RuntimeError(f"reference.conv2d: channels {c} and weight {list(weight.shape)} do not fit groups={groups}")
    x = torch.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=input.dtype, device=input.device)
    x[:, :, ph:ph + h, pw:pw + w] = input
    out_h = (h + 2 * ph - dh * (r - 1) - 1) // sh + 1
    out_w = (w + 2 * pw - dw * (s - 1) - 1) // sw + 1
    kg = k // groups
    y = torch.zeros((n, k, out_h, out_w), dtype=input.dtype, device=input.device)
    for g in range(groups):
        xg = x[:, g * cg:(g + 1) * cg]
        wg = weight[g * kg:(g + 1) * kg]
        for i in range(out_h):
            for j in range(out_w):
                window = xg[:, :, i * sh:i * sh + dh * (r - 1) + 1:dh, j * sw:j * sw + dw * (s - 1) + 1:dw]
                y[:, g * kg:(g + 1) * kg, i, j] = (window[:, None] * wg[None]).sum(dim=(2, 3, 4))
    if bias is not None:
        y += bias.view(1, -1, 1, 1)
    return y.squeeze(0) if unbatched else y


def activation_avg_pool2d(z, activation, window):
    """act(z), then the mean of each window x window block (stride window,
    floor mode), block by block."""
    act = {"none": lambda t: t, "relu": torch.relu, "sigmoid": torch.sigmoid}[activation]
    y = act(z)
    n, c, h, w = z.shape
    out = torch.zeros((n, c, h // window, w // window), dtype=z.dtype, device=z.device)
    for i in range(h // window):
        for j in range(w // window):
            out[:, :, i, j] = y[:, :, i * window:(i + 1) * window, j * window:(j + 1) * window].mean(dim=(2, 3))
    return out
