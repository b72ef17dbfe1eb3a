"""`torchrun --nproc_per_node=2 -m convkit train --ddp` on CPU (gloo) with a small set."""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed

import convkit
from convkit import train

from test_train import write_learnable


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_two_cpu_processes_stay_in_step(tmp_path):
    data_dir = write_learnable(tmp_path / "data", n_train=128, n_test=32)
    common = ["--data-dir", str(data_dir), "--epochs", "2", "--batch-size", "32", "--quiet", "--device", "cpu",
              "--threads", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(convkit.__file__)),
                                           os.environ.get("PYTHONPATH", "")]))
    # --standalone: a local rendezvous on a free port.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "convkit",
           "train", "--ddp", *common, "--metrics-json", str(tmp_path / "m.json"), "--save", str(tmp_path / "w.pt")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "x 2 processes" in done.stdout and "epoch 2/2" in done.stdout
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["world_size"] == 2 and m["n_train"] == 128
    # Both ranks' weights compared in the run itself (all-reduced max difference): DDP keeps them identical.
    assert m["replica_max_diff"] == 0.0
    # The global batch is split over the ranks, so two processes take the single process's steps.
    args = train.build_parser().parse_args(common + ["--conv", "convkit"])
    single = train.train(args)[0]
    ddp = torch.load(tmp_path / "w.pt")
    for name, value in single.net.state_dict().items():
        torch.testing.assert_close(ddp[name], value, rtol=1e-4, atol=1e-5)
    assert m["train_loss"] == pytest.approx(single.metrics["train_loss"], abs=1e-5)
