#!/usr/bin/env python3
"""Trains d2l's NiN or GoogLeNet in PyTorch and saves its state_dict as d2l users would.

The cross-check of our PyTorch import: PyTorch reports the test accuracy of the weights it
saves, and `train eval --checkpoint FILE --resize N` must report the same on the same images.
Images are scaled to [0, 1] and resized with bilinear interpolation (align_corners=False), as
d2l's `load_data_fashion_mnist(resize=N)` and our data loader do. PyTorch is not a dependency of
the project.

    pip install torch safetensors numpy
    python3 tools/pytorch_weights.py --model googlenet --resize 32 --optimizer adam --lr 0.001 --out pt.safetensors
    cargo run --release -p train -- eval --checkpoint pt.safetensors --resize 32
"""
import argparse
import gzip
import os
import struct
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_reference import googlenet, nin  # noqa: E402  (d2l's networks, with d2l's names)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, count * rows * cols, 16).reshape(count, 1, rows, cols)
    return np.frombuffer(data, np.uint8, count, 8)


def load(data_dir, split, limit):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))[:limit]
    y = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))[:limit]
    return torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64))


def prepare(x, resize):
    x = x.float() / 255.0
    return F.interpolate(x, size=(resize, resize), mode="bilinear", align_corners=False)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["nin", "googlenet"], default="googlenet")
    p.add_argument("--resize", type=int, default=32)
    p.add_argument("--train-limit", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=os.environ.get("FASHION_MNIST_DIR", "../shared/data/fashion-mnist"))
    p.add_argument("--out", required=True, help="safetensors file for the state_dict")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)

    net = (nin if a.model == "nin" else googlenet)()
    for m in net.modules():  # d2l's init_weights
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
    opt = (torch.optim.SGD if a.optimizer == "sgd" else torch.optim.Adam)(net.parameters(), lr=a.lr)
    xs, ys = load(a.data, "train", a.train_limit)
    for epoch in range(a.epochs):
        net.train()
        order = torch.randperm(len(ys))
        total, n = 0.0, 0
        for i in range(0, len(ys), a.batch_size):
            idx = order[i:i + a.batch_size]
            loss = F.cross_entropy(net(prepare(xs[idx], a.resize)), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            n += len(idx)
        print(f"epoch {epoch + 1}, loss {total / n:.4f}", flush=True)

    net.eval()
    xt, yt = load(a.data, "test", None)
    correct = 0
    with torch.no_grad():
        for i in range(0, len(yt), 256):
            correct += (net(prepare(xt[i:i + 256], a.resize)).argmax(1) == yt[i:i + 256]).sum().item()
    print(f"PyTorch test accuracy at {a.resize}x{a.resize}: {correct / len(yt):.4f} ({correct}/{len(yt)})")
    save_file(net.state_dict(), a.out)
    print(f"saved {a.out}")


if __name__ == "__main__":
    main()
