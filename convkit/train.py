"""`python -m convkit train`: LeNet on Fashion-MNIST, as the textbook's train_ch6 does it.

Examples:
  python -m convkit train                                  # the book's run: 10 epochs, lr 0.9, batch 256
  python -m convkit train --compare --epochs 1 --limit 10000   # convkit vs the torch twin, side by side
  torchrun --nproc_per_node=2 -m convkit train --ddp       # DistributedDataParallel, one shard per process
"""
import argparse
import json
import math
import os
import sys
import time

import torch
from torch import nn

from . import data as cdata
from . import models
from . import nn as cnn
from .devices import try_gpu

BOOK_LR = 0.9
# ReLU + max-pooling needs a smaller step than the sigmoid net, and settles best with a warmed-up, decayed
# rate. 10 epochs, batch 256, test accuracy (convkit layers unless marked twin):
#   constant rate, seed 0 (twin): lr 0.1: 0.863, 0.2: 0.877, 0.3: 0.884, 0.4: 0.880, 0.5: stuck at chance;
#   cosine without warm-up: lr 0.3: 0.890 (seed 0), 0.875 (seed 2); lr 0.4: 0.897 (0), 0.871 (2), twin 0.857 (0);
#   warm-up + cosine: lr 0.4: 0.892 (0), 0.890 (2), twin 0.893 (0), 0.887 (2); lr 0.5: 0.894 (0), 0.891 (2).
MODERN_LR = 0.5
FIRST_LOSSES = 20
CONVS = {"convkit": None, "torch": nn.Conv2d}  # None: convkit.nn.Conv2d (the default of models.LeNet)


def build_parser():
    p = argparse.ArgumentParser(prog="convkit train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10, help="passes over the training set (default 10)")
    p.add_argument("--lr", type=float, default=None,
                   help=f"SGD learning rate (default {BOOK_LR}, or {MODERN_LR} with --modern)")
    p.add_argument("--batch-size", type=int, default=256,
                   help="minibatch size (default 256); with --ddp the global size, split over the processes")
    p.add_argument("--conv", choices=sorted(CONVS), default="convkit",
                   help="convolution layers: convkit's or torch's nn.Conv2d (the twin); default convkit")
    p.add_argument("--compare", action="store_true",
                   help="train convkit and the torch twin from the same seed, epochs interleaved, and print "
                        "accuracy and examples/s side by side with the speed ratio")
    p.add_argument("--modern", action="store_true", help="ReLU and max-pooling instead of sigmoid and average pooling")
    p.add_argument("--no-fuse", action="store_true",
                   help="convkit: keep each conv, sigmoid and pooling a layer of its own (default: convkit.fuse)")
    p.add_argument("--schedule", choices=["constant", "cosine"], default=None,
                   help="learning rate over the run: constant (the book's; default) or a one-epoch linear "
                        "warm-up, then cosine decay to 0 by the last step (default with --modern)")
    p.add_argument("--device", default=None, help="torch device (default: convkit.try_gpu())")
    p.add_argument("--data-dir", default=None,
                   help=f"Fashion-MNIST IDX directory (default: ${cdata.ENV_VAR}, then {cdata.SYSTEM_DIR})")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--seed", type=int, default=0, help="seed for initial weights and batch order (default 0)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="train on the first N images only")
    p.add_argument("--metrics-json", default=None, metavar="PATH", help="write per-epoch metrics here")
    p.add_argument("--plot", default=None, metavar="PATH", help="write the training curves here (PNG)")
    p.add_argument("--save", default=None, metavar="PATH",
                   help="save the trained state_dict here (loads into the torch twin too)")
    p.add_argument("--ddp", action="store_true",
                   help="DistributedDataParallel under torchrun (gloo on CPU, nccl on GPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


class Dist:
    """Rank and world size; a single process when not under --ddp."""

    def __init__(self, enabled, device):
        self.enabled = enabled
        self.rank, self.world = 0, 1
        self.local_rank = 0
        if not enabled:
            return
        import torch.distributed as dist
        if "RANK" not in os.environ:
            raise SystemExit("convkit train --ddp: start it with torchrun, e.g. "
                             "torchrun --nproc_per_node=2 -m convkit train --ddp")
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    @property
    def main(self):
        return self.rank == 0

    def sum(self, values, device):
        """Sums a list of floats over the processes."""
        t = torch.tensor(values, dtype=torch.float64, device=device)
        if self.enabled:
            torch.distributed.all_reduce(t)
        return t.tolist()

    def close(self):
        if self.enabled:
            torch.distributed.destroy_process_group()

    def finish_together(self):
        # A gloo group torn down while a peer still uses its connections can
        # abort the process at exit (1 run in 5 of the two-process test).
        if self.enabled:
            torch.distributed.barrier()


def _resolve_device(arg, ddp):
    device = torch.device(arg) if arg else try_gpu()
    if ddp and device.type == "cuda":  # one GPU per process
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def _check_kernels(conv, device):
    if conv != "convkit" or device.type == "cpu":
        return
    key = {"cuda": "CUDA"}.get(device.type, device.type.upper())
    if not torch._C._dispatch_has_kernel_for_dispatch_key("convkit::conv2d", key):
        raise SystemExit(f"convkit train: this convkit build has no {device.type} kernels; "
                         f"rebuild it with {device.type} support or pass --device cpu")


class Run:
    """One model (convkit or the torch twin) being trained; epoch() runs one epoch."""

    def __init__(self, conv, args, data, device, dist):
        self.conv, self.args, self.device, self.dist = conv, args, device, dist
        train_x, train_y, test_x, test_y = data
        # The same seed before construction gives convkit and the twin identical weights: convkit.nn.Conv2d
        # is an nn.Conv2d and draws its default initialisation the same way, then Xavier overwrites it.
        torch.manual_seed(args.seed)
        conv_cls = CONVS[conv]
        net = models.LeNet(modern=args.modern) if conv_cls is None else models.LeNet(conv=conv_cls,
                                                                                     modern=args.modern)
        net.apply(models.init_weights)
        if conv_cls is None and not args.no_fuse:
            net = cnn.fuse(net)
        self.net = net.to(device)
        self.model = self.net
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel
            self.model = DistributedDataParallel(self.net, device_ids=[device] if device.type == "cuda" else None)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=args.lr)
        # Cosine: a linear warm-up over the first epoch (a ReLU net can die in its first steps at full rate),
        # then cosine decay to 0 at the last step (constant-rate SGD ends wherever its last steps left it,
        # +-0.02 test accuracy from epoch to epoch for the modern net; a decayed rate settles).
        self.scheduler = None
        if args.schedule == "cosine":
            per_epoch = -(-len(train_y) // args.batch_size)
            warm, total = per_epoch, max(args.epochs * per_epoch, per_epoch + 1)

            def factor(step):
                if step < warm:
                    return (step + 1) / warm
                return 0.5 * (1 + math.cos(math.pi * min(step - warm + 1, total - warm) / (total - warm)))

            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.loss = nn.CrossEntropyLoss()
        self.train_x, self.train_y = train_x, train_y
        # Each process evaluates a strided slice of the test set; the counts are summed.
        self.test_x, self.test_y = test_x[dist.rank::dist.world], test_y[dist.rank::dist.world]
        # A DistributedSampler even for one process, so batch order depends on (seed, epoch) alone
        # and the k processes of --ddp together see exactly the single-process batches.
        from torch.utils.data.distributed import DistributedSampler
        self.sampler = DistributedSampler(range(len(train_y)), num_replicas=dist.world, rank=dist.rank,
                                          shuffle=True, seed=args.seed)
        self.batch = -(-args.batch_size // dist.world)
        self.metrics = {"conv": conv, "device": str(device), "modern": args.modern, "lr": args.lr,
                        "schedule": args.schedule,
                        "batch_size": args.batch_size, "epochs": args.epochs, "seed": args.seed,
                        "world_size": dist.world, "threads": torch.get_num_threads(),
                        "n_train": len(train_y), "n_test": len(test_y),
                        "train_loss": [], "train_acc": [], "test_acc": [], "examples_per_sec": [], "seconds": [],
                        "lr_end": [],
                        "first_losses": []}
        self._first = []

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def epoch(self, epoch, progress):
        self.model.train()
        self.sampler.set_epoch(epoch)
        order = torch.tensor(list(iter(self.sampler)), device=self.train_x.device)
        starts = range(0, len(order), self.batch)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(starts), desc=f"epoch {epoch + 1}/{self.args.epochs} {self.conv}", leave=False,
                       unit="batch", dynamic_ncols=True)
        # Sums stay on the device so a GPU run is not synchronised every step.
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        self._sync()
        start = time.perf_counter()
        for step, i in enumerate(starts):
            idx = order[i:i + self.batch]
            X = self.train_x[idx].to(self.device, non_blocking=True)
            y = self.train_y[idx].to(self.device, non_blocking=True)
            self.optimizer.zero_grad()
            y_hat = self.model(X)
            l = self.loss(y_hat, y)
            l.backward()
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            with torch.no_grad():
                loss_sum += l.detach() * len(y)
                correct += (y_hat.argmax(dim=1) == y).sum()
            if len(self._first) < FIRST_LOSSES:
                self._first.append(l.detach())
            if bar is not None:
                bar.update()
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{l.item():.3f}")
        self._sync()
        seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
        n = len(order)
        loss_sum, correct, n, seconds_sum = self.dist.sum([loss_sum.item(), correct.item(), n, seconds],
                                                          self.device)
        seconds = seconds_sum / self.dist.world  # mean over processes
        m = self.metrics
        m["train_loss"].append(loss_sum / n)
        m["train_acc"].append(correct / n)
        m["test_acc"].append(self.evaluate())
        m["seconds"].append(seconds)
        m["examples_per_sec"].append(n / seconds)
        m["lr_end"].append(self.optimizer.param_groups[0]["lr"])
        m["first_losses"] = [float(t) for t in self._first]
        return m

    @torch.no_grad()
    def evaluate(self, batch=1024):
        self.model.eval()
        correct = 0
        for i in range(0, len(self.test_y), batch):
            X = self.test_x[i:i + batch].to(self.device)
            y = self.test_y[i:i + batch].to(self.device)
            correct += int((self.model(X).argmax(dim=1) == y).sum())
        correct, n = self.dist.sum([correct, len(self.test_y)], self.device)
        return correct / n

    def replica_max_diff(self):
        """Largest difference between this process's weights and rank 0's (0 without --ddp)."""
        flat = torch.cat([p.detach().reshape(-1) for p in self.net.parameters()])
        if not self.dist.enabled:
            return 0.0
        ref = flat.clone()
        torch.distributed.broadcast(ref, src=0)
        diff = (flat - ref).abs().max()
        torch.distributed.all_reduce(diff, op=torch.distributed.ReduceOp.MAX)
        return float(diff)


def epoch_line(m, epoch):
    return (f"epoch {epoch + 1}/{m['epochs']} {m['conv']:>7}: loss {m['train_loss'][-1]:.3f}, "
            f"train acc {m['train_acc'][-1]:.3f}, test acc {m['test_acc'][-1]:.3f}, "
            f"{m['examples_per_sec'][-1]:.0f} examples/s ({m['seconds'][-1]:.1f} s)")


def load_data(args, device):
    train_x, train_y, test_x, test_y = cdata.load_fashion_mnist(args.data_dir)
    if args.limit is not None:
        if args.limit <= 0:
            raise SystemExit("convkit train: --limit must be positive")
        train_x, train_y = train_x[:args.limit], train_y[:args.limit]
    if device.type == "cuda":  # the whole set fits; batches are then gathered on the GPU
        train_x, train_y, test_x, test_y = (t.to(device) for t in (train_x, train_y, test_x, test_y))
    return train_x, train_y, test_x, test_y


def train(args):
    """Trains per parsed args; returns the list of Runs (two with --compare)."""
    if args.lr is None:
        args.lr = MODERN_LR if args.modern else BOOK_LR
    if args.schedule is None:
        args.schedule = "cosine" if args.modern else "constant"
    for name in ("epochs", "batch_size"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"convkit train: --{name.replace('_', '-')} must be positive")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = _resolve_device(args.device, args.ddp)
    convs = ["convkit", "torch"] if args.compare else [args.conv]
    for conv in convs:
        _check_kernels(conv, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist = Dist(args.ddp, device)
    try:
        data = load_data(args, device)
        say = print if dist.main else (lambda *a, **k: None)
        say(f"LeNet{' (modern)' if args.modern else ''} on Fashion-MNIST: {len(data[1])} training and "
            f"{len(data[3])} test images, {args.epochs} epochs, lr {args.lr}, batch {args.batch_size}, "
            f"{' vs '.join(convs)} conv on {device}"
            f"{f' x {dist.world} processes' if dist.enabled else ''}, {torch.get_num_threads()} threads",
            flush=True)
        runs = [Run(conv, args, data, device, dist) for conv in convs]
        progress = dist.main and not args.quiet and sys.stderr.isatty()
        # With --compare the two models alternate epochs, so load on a shared machine hits both alike.
        for epoch in range(args.epochs):
            for run in runs:
                run.epoch(epoch, progress)
                say(epoch_line(run.metrics, epoch), flush=True)
        for run in runs:
            run.metrics["replica_max_diff"] = run.replica_max_diff()
        if dist.enabled:
            say(f"replicas: largest weight difference between processes "
                f"{max(r.metrics['replica_max_diff'] for r in runs):.3g}")
        if dist.main:
            report(runs, args)
        dist.finish_together()
    finally:
        dist.close()
    return runs


def compare_summary(runs):
    a, b = (r.metrics for r in runs)
    # The first epoch includes warm-up; later epochs are the steady state when there are any.
    def speed(m):
        s = m["examples_per_sec"][1:] or m["examples_per_sec"]
        return sorted(s)[len(s) // 2]
    first = min(len(a["first_losses"]), len(b["first_losses"]))
    return {
        "speed_ratio": speed(a) / speed(b),
        "test_acc_diff": a["test_acc"][-1] - b["test_acc"][-1],
        "first_losses_max_diff": max((abs(x - y) for x, y in zip(a["first_losses"], b["first_losses"])),
                                     default=0.0),
        "first_losses_compared": first,
        "examples_per_sec_median": [speed(a), speed(b)],
    }


def report(runs, args):
    if len(runs) == 2:
        s = compare_summary(runs)
        a, b = (r.metrics for r in runs)
        rows = [("test acc", "{:.3f}", a["test_acc"][-1], b["test_acc"][-1]),
                ("train acc", "{:.3f}", a["train_acc"][-1], b["train_acc"][-1]),
                ("train loss", "{:.3f}", a["train_loss"][-1], b["train_loss"][-1]),
                ("examples/s", "{:.0f}", *s["examples_per_sec_median"]),
                ("train seconds", "{:.1f}", sum(a["seconds"]), sum(b["seconds"]))]
        print(f"\n{'':14} {'convkit':>10} {'torch':>10}   (on {a['device']}, {a['threads']} threads)")
        for name, fmt, x, y in rows:
            print(f"{name:14} {fmt.format(x):>10} {fmt.format(y):>10}")
        print(f"speed: convkit {s['speed_ratio']:.2f}x the torch twin's examples/s "
              f"(median over epoch{'s 2+' if len(a['seconds']) > 1 else ' 1'})")
        print(f"first {s['first_losses_compared']} losses: largest difference {s['first_losses_max_diff']:.2g}; "
              f"test acc difference {s['test_acc_diff']:+.3f}")
        out = {"device": a["device"], "conv": ["convkit", "torch"], **s, "convkit": a, "torch": b}
    else:
        m = runs[0].metrics
        examples = sum(e * s for e, s in zip(m["examples_per_sec"], m["seconds"]))
        print(f"{m['conv']}: test acc {m['test_acc'][-1]:.3f}, {examples / sum(m['seconds']):.0f} examples/s "
              f"on {m['device']}")
        out = m
    if args.metrics_json:
        with open(args.metrics_json, "w") as f:
            json.dump(out, f, indent=1)
    if args.plot:
        plot(runs, args.plot)
    if args.save:
        torch.save({k: v.detach().cpu() for k, v in runs[0].net.state_dict().items()}, args.save)


def plot(runs, path):
    """The book's figure: train loss, train acc and test acc against epochs (dashed: the torch twin)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, ax = plt.subplots(figsize=(5, 3.5))
    colors = {"train_loss": "C0", "train_acc": "C1", "test_acc": "C2"}
    for run in runs:
        m = run.metrics
        epochs = range(1, len(m["train_loss"]) + 1)
        style = "-" if run.conv == "convkit" else "--"
        for key, color in colors.items():
            label = key.replace("_", " ") + ("" if len(runs) == 1 else f" ({run.conv})")
            ax.plot(epochs, m[key], style, color=color, marker="." if len(epochs) < 3 else None, label=label,
                    alpha=1.0 if run.conv == "convkit" else 0.6)
    m = runs[0].metrics
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlim(0.8 if len(m["train_loss"]) > 1 else 0.5, max(len(m["train_loss"]), 1) + 0.2)
    ax.set_ylim(0, max(1.0, *(max(r.metrics["train_loss"]) for r in runs)) * 1.05)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"LeNet{' (modern)' if m['modern'] else ''} on Fashion-MNIST, lr {m['lr']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        train(args)
    except (FileNotFoundError, cdata.IDXError) as e:
        print(f"convkit train: {e}", file=sys.stderr)
        return 2
    if args.ddp:
        # A torchrun worker leaves without the interpreter's teardown: after the
        # process group is destroyed, torch's gloo threads can still abort it
        # ("terminate called without an active exception", about 1 run in 14 of
        # the two-process test). Everything is written and flushed by then.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
