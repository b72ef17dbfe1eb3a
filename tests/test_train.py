"""The `train` sub-command on a small Fashion-MNIST-shaped set written by the test."""
import json
import os

import pytest
import torch
from torch import nn

import convkit
from convkit import data, train
from convkit.__main__ import main as cli
from convkit.models import LeNet

N_TRAIN, N_TEST = 640, 128


def write_learnable(directory, n_train=N_TRAIN, n_test=N_TEST, seed=0):
    """Noisy images where class k lights up row band k, so a few epochs can learn something."""
    g = torch.Generator().manual_seed(seed)
    os.makedirs(directory, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = torch.randint(0, 10, (n,), generator=g)
        images = torch.randint(0, 100, (n, 28, 28), generator=g)
        for k in range(10):
            images[labels == k, 2 + 2 * k:4 + 2 * k, 4:24] += 150
        data.write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"), images.to(torch.uint8))
        data.write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"), labels.to(torch.uint8))
    return directory


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(write_learnable(tmp_path_factory.mktemp("fashion")))


def run(capsys, *argv):
    code = cli(["train", "--quiet", "--threads", "1", "--device", "cpu", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as e:
        cli(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--epochs", "--lr", "--batch-size", "--conv", "--modern", "--device", "--data-dir", "--threads",
                 "--seed", "--limit", "--metrics-json", "--plot", "--save", "--compare", "--ddp", "--quiet",
                 "--schedule"):
        assert flag in out


def test_defaults_are_the_books():
    args = train.build_parser().parse_args([])
    assert (args.epochs, args.batch_size, args.conv, args.modern, args.seed) == (10, 256, "convkit", False, 0)
    assert args.lr is None and train.BOOK_LR == 0.9  # None: 0.9 for the book's net, MODERN_LR with --modern
    assert args.schedule is None  # None: constant for the book's net, cosine with --modern


def test_cosine_schedule_decays_to_zero(tmp_path, data_dir, capsys):
    """--modern decays the rate per step to 0 by the last step; the book's run keeps it constant."""
    for argv, schedule in ((["--modern"], "cosine"), ([], "constant"), (["--modern", "--schedule", "constant"], "constant")):
        metrics = tmp_path / "m.json"
        code, _, _ = run(capsys, "--data-dir", data_dir, "--epochs", 2, "--batch-size", 64, "--limit", 128,
                         "--metrics-json", metrics, *argv)
        m = json.loads(metrics.read_text())
        assert code == 0 and m["schedule"] == schedule
        if schedule == "cosine":
            assert 0 < m["lr_end"][0] < m["lr"] and abs(m["lr_end"][1]) < 1e-9
        else:
            assert m["lr_end"] == [m["lr"], m["lr"]]


def test_metrics_plot_and_saved_weights(tmp_path, data_dir, capsys):
    metrics, png, weights = tmp_path / "m.json", tmp_path / "curves.png", tmp_path / "lenet.pt"
    code, out, _ = run(capsys, "--data-dir", data_dir, "--epochs", 2, "--batch-size", 64, "--limit", 320,
                       "--metrics-json", metrics, "--plot", png, "--save", weights)
    assert code == 0
    assert "epoch 1/2" in out and "epoch 2/2" in out and "test acc" in out and "examples/s" in out
    m = json.loads(metrics.read_text())
    for key in ("train_loss", "train_acc", "test_acc", "examples_per_sec", "seconds"):
        assert len(m[key]) == 2 and all(isinstance(v, float) for v in m[key]), key
    assert m["device"] == "cpu" and m["conv"] == "convkit" and m["lr"] == 0.9 and m["n_train"] == 320
    assert all(0 <= a <= 1 for a in m["train_acc"] + m["test_acc"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The saved weights load into the torch twin and reproduce the printed test accuracy.
    twin = LeNet(conv=nn.Conv2d)
    twin.load_state_dict(torch.load(weights))
    *_, test_x, test_y = data.load_fashion_mnist(data_dir)
    with torch.no_grad():
        acc = (twin(test_x).argmax(1) == test_y).float().mean().item()
    assert acc == pytest.approx(m["test_acc"][-1], abs=1.5 / N_TEST)


@pytest.mark.parametrize("modern", [False, True], ids=["book", "modern"])
def test_compare_first_20_losses_match_the_twin(tmp_path, data_dir, capsys, modern):
    metrics = tmp_path / "m.json"
    code, out, _ = run(capsys, "--data-dir", data_dir, "--compare", "--epochs", 1, "--batch-size", 32,
                       "--metrics-json", metrics, *(["--modern"] if modern else []))
    assert code == 0
    assert "speed: convkit" in out and "x the torch twin" in out
    m = json.loads(metrics.read_text())
    a, b = m["convkit"], m["torch"]
    assert (a["conv"], b["conv"]) == ("convkit", "torch")
    assert len(a["first_losses"]) == len(b["first_losses"]) == 20
    for x, y in zip(a["first_losses"], b["first_losses"]):
        assert x == pytest.approx(y, abs=1e-4)
    assert m["first_losses_max_diff"] < 1e-4
    assert abs(a["test_acc"][0] - b["test_acc"][0]) <= 2 / N_TEST
    assert m["speed_ratio"] > 0


def test_seed_changes_batch_order(tmp_path, data_dir, capsys):
    losses = []
    for seed in (0, 0, 1):
        path = tmp_path / f"{seed}.json"
        run(capsys, "--data-dir", data_dir, "--epochs", 1, "--batch-size", 64, "--limit", 320, "--seed", seed,
            "--conv", "torch", "--metrics-json", path)
        losses.append(json.loads(path.read_text())["first_losses"])
    assert losses[0] == losses[1] and losses[0] != losses[2]


def test_modern_learns(tmp_path, data_dir, capsys):
    metrics = tmp_path / "m.json"
    code, out, _ = run(capsys, "--data-dir", data_dir, "--modern", "--epochs", 4, "--limit", 640, "--batch-size", 32,
                       "--metrics-json", metrics)
    m = json.loads(metrics.read_text())
    assert m["lr"] == train.MODERN_LR
    assert m["train_loss"][-1] < m["train_loss"][0] and m["test_acc"][-1] > 0.5


def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "SYSTEM_DIR", str(tmp_path / "none"))
    code, _, err = run(capsys, "--data-dir", tmp_path)
    assert code == 2 and "apt-get install dataset-fashion-mnist" in err and data.ENV_VAR in err


@pytest.mark.parametrize("argv,message", [
    (["--ddp"], "torchrun"),
    (["--epochs", "0"], "--epochs must be positive"),
    (["--limit", "0"], "--limit must be positive"),
])
def test_bad_arguments(data_dir, capsys, argv, message):
    with pytest.raises(SystemExit, match=message):
        run(capsys, "--data-dir", data_dir, *argv)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a build without GPU kernels")
def test_no_gpu_kernels_message(data_dir, capsys):
    if torch._C._dispatch_has_kernel_for_dispatch_key("convkit::conv2d", "CUDA"):
        pytest.skip("this build has CUDA kernels")
    with pytest.raises(SystemExit, match="no cuda kernels"):
        cli(["train", "--device", "cuda", "--data-dir", data_dir])


def test_python_api_returns_runs(data_dir):
    args = train.build_parser().parse_args(["--data-dir", data_dir, "--epochs", "1", "--limit", "64",
                                            "--quiet", "--device", "cpu", "--conv", "torch"])
    runs = train.train(args)
    assert len(runs) == 1 and isinstance(runs[0].net, nn.Sequential)
    assert runs[0].metrics["replica_max_diff"] == 0.0
    assert convkit.try_gpu().type in ("cpu", "cuda")
