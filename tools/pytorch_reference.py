#!/usr/bin/env python3
"""PyTorch's time for the training step that `cargo bench --bench train_step` times.

The same networks (d2l's NiN for 1-channel 224x224 inputs, d2l's GoogLeNet for 96x96), the same
step (forward, cross-entropy, zero_grad, backward, SGD step), random inputs, median of the timed
steps after warm-up. It is the bar our engine is measured against in BENCHMARKS.md; PyTorch is
not a dependency of the project.

    pip install torch
    python3 tools/pytorch_reference.py                      # CPU, 2 threads, both nets, b32 and b128
    python3 tools/pytorch_reference.py --device cuda        # cuDNN defaults (TF32 convolutions)
                                                            # (also the step's ms and the host's
                                                            # ms to queue it)
    python3 tools/pytorch_reference.py --device cuda --tf32 off   # FP32 everywhere
"""
import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F


def nin_block(cin, cout, kernel, stride, padding):
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding), nn.ReLU(),
        nn.Conv2d(cout, cout, 1), nn.ReLU(),
        nn.Conv2d(cout, cout, 1), nn.ReLU())


def nin():
    return nn.Sequential(
        nin_block(1, 96, 11, 4, 0), nn.MaxPool2d(3, 2),
        nin_block(96, 256, 5, 1, 2), nn.MaxPool2d(3, 2),
        nin_block(256, 384, 3, 1, 1), nn.MaxPool2d(3, 2), nn.Dropout(0.5),
        nin_block(384, 10, 3, 1, 1), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())


class Inception(nn.Module):
    """d2l's Inception block as d2l writes it: one attribute per layer, hence d2l's state_dict names."""

    def __init__(self, cin, c1, c2, c3, c4):
        super().__init__()
        self.p1_1 = nn.Conv2d(cin, c1, 1)
        self.p2_1 = nn.Conv2d(cin, c2[0], 1)
        self.p2_2 = nn.Conv2d(c2[0], c2[1], 3, padding=1)
        self.p3_1 = nn.Conv2d(cin, c3[0], 1)
        self.p3_2 = nn.Conv2d(c3[0], c3[1], 5, padding=2)
        self.p4_1 = nn.MaxPool2d(3, 1, 1)
        self.p4_2 = nn.Conv2d(cin, c4, 1)

    def forward(self, x):
        p1 = F.relu(self.p1_1(x))
        p2 = F.relu(self.p2_2(F.relu(self.p2_1(x))))
        p3 = F.relu(self.p3_2(F.relu(self.p3_1(x))))
        p4 = F.relu(self.p4_2(self.p4_1(x)))
        return torch.cat((p1, p2, p3, p4), dim=1)


def googlenet():
    halve = lambda: nn.MaxPool2d(3, 2, 1)  # noqa: E731
    b1 = nn.Sequential(nn.Conv2d(1, 64, 7, 2, 3), nn.ReLU(), halve())
    b2 = nn.Sequential(nn.Conv2d(64, 64, 1), nn.ReLU(), nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(), halve())
    b3 = nn.Sequential(Inception(192, 64, (96, 128), (16, 32), 32), Inception(256, 128, (128, 192), (32, 96), 64), halve())
    b4 = nn.Sequential(
        Inception(480, 192, (96, 208), (16, 48), 64), Inception(512, 160, (112, 224), (24, 64), 64),
        Inception(512, 128, (128, 256), (24, 64), 64), Inception(512, 112, (144, 288), (32, 64), 64),
        Inception(528, 256, (160, 320), (32, 128), 128), halve())
    b5 = nn.Sequential(
        Inception(832, 256, (160, 320), (32, 128), 128), Inception(832, 384, (192, 384), (48, 128), 128),
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())
    return nn.Sequential(b1, b2, b3, b4, b5, nn.Linear(1024, 10))


def time_steps(name, size, batch, device, steps, warmup):
    """Median seconds of a step, and on CUDA the median seconds the host took to queue it (the
    time before the closing synchronize): PyTorch's own time per step, which the cost model's
    PyTorch side charges at 10 us an op (`benches/gpu.rs`, `pytorch_model`)."""
    net = (nin if name == "nin" else googlenet)().to(device)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(batch, 1, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        t = time.perf_counter()
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        queued = time.perf_counter()
        if device == "cuda":
            torch.cuda.synchronize()
        else:
            loss.item()
        return time.perf_counter() - t, queued - t

    for _ in range(warmup):
        step()
    times = [step() for _ in range(steps)]
    return statistics.median(t for t, _ in times), statistics.median(q for _, q in times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--configs", default="nin:224:32,nin:224:128,googlenet:96:32,googlenet:96:128")
    p.add_argument("--tf32", choices=["default", "on", "off"], default="default",
                   help="CUDA: TF32 for convolutions and matmuls (default: PyTorch's, on for cuDNN, off for matmul)")
    a = p.parse_args()
    if a.tf32 != "default":
        torch.backends.cudnn.allow_tf32 = a.tf32 == "on"
        torch.backends.cuda.matmul.allow_tf32 = a.tf32 == "on"
    torch.set_num_threads(a.threads)
    tf32 = (f", TF32 convolutions {torch.backends.cudnn.allow_tf32}, matmul {torch.backends.cuda.matmul.allow_tf32}"
            if a.device == "cuda" else "")
    print(f"torch {torch.__version__}, device {a.device}, {torch.get_num_threads()} threads, "
          f"median of {a.steps} steps after {a.warmup} warm-up{tf32}")
    cuda = a.device == "cuda"
    print(f"{'model':<10} {'input':>5} {'batch':>5} {'images/s':>9}" + (f" {'step ms':>8} {'host ms':>8}" if cuda else ""))
    for cfg in a.configs.split(","):
        name, size, batch = cfg.split(":")
        step, host = time_steps(name, int(size), int(batch), a.device, a.steps, a.warmup)
        print(f"{name:<10} {size:>5} {batch:>5} {int(batch) / step:>9.1f}"
              + (f" {step * 1e3:>8.2f} {host * 1e3:>8.2f}" if cuda else ""), flush=True)


if __name__ == "__main__":
    main()
