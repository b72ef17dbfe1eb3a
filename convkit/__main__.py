"""Command line: `python -m convkit {check,bench,train}` (also the `convkit` console script)."""
import argparse
import importlib
import sys

COMMANDS = {
    "check": ("convkit.check", "check convkit against the naive loop and nn.Conv2d, with a quick speed line"),
    "bench": ("convkit.bench", "measure convkit against nn.Conv2d and write a markdown table and a PNG chart"),
    "train": ("convkit.train", "train LeNet on Fashion-MNIST with convkit (or torch) convolutions"),
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="convkit", description=__doc__)
    parser.add_argument("command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()))
    args, rest = parser.parse_known_args(argv[:1])
    module = importlib.import_module(COMMANDS[args.command][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
