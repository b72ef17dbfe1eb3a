"""LeNet as the textbook builds it, on convkit's Conv2d or torch's."""
from torch import nn

from . import nn as cnn


def LeNet(conv=cnn.Conv2d, modern=False):
    """The textbook's LeNet-5 for 1 x 28 x 28 inputs and 10 classes.

    conv: the Conv2d class (convkit.nn.Conv2d, or torch.nn.Conv2d for the torch twin; both
    draw the same default initialisation from the RNG, so a seed gives both the same weights).
    modern: ReLU and max-pooling instead of sigmoid and average pooling."""
    act = nn.ReLU if modern else nn.Sigmoid
    pool = nn.MaxPool2d if modern else nn.AvgPool2d
    return nn.Sequential(
        conv(1, 6, kernel_size=5, padding=2), act(),
        pool(kernel_size=2, stride=2),
        conv(6, 16, kernel_size=5), act(),
        pool(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), act(),
        nn.Linear(120, 84), act(),
        nn.Linear(84, 10))


def init_weights(m):
    """Xavier-uniform weights for Linear and Conv2d layers, as the textbook's train_ch6; use
    with net.apply(init_weights). convkit.nn.Conv2d is an nn.Conv2d, so it is reached too."""
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.xavier_uniform_(m.weight)
