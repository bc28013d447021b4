#!/usr/bin/env python3
"""PyTorch's times on this GPU for the shapes `benches/gpu.rs` times ours at: the yardstick.

    cargo bench --bench gpu -- --shapes shapes.json       # or tools/gpu-check, which does both
    python3 tools/torch_gpu_reference.py --shapes shapes.json [--json torch.json] [--quick]

For every matrix product (NiN@224 and GoogLeNet@96 at batch 128: forward, input gradient,
batch-summed weight gradient) `torch.matmul` with TF32 off (cuBLAS FP32, the exact path) and on;
for every convolution cuDNN's forward and forward + backward (input and weight gradients), TF32
off and on, cuDNN defaults otherwise (no benchmark mode). A product summed over the batch is timed
as the one long product cuBLAS would run (m x n over k * batch, operands laid out for it). Also
the FP32 and TF32 ceiling: an 8192^3 product. CUDA events, median after warm-up.

Without torch, or without a CUDA device, it says so and exits 0 (tools/gpu-check records it as
skipped).
"""
import argparse
import json
import statistics
import sys


def median_ms(torch, fn, warmup, runs):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def product_fn(torch, p):
    """A closure running the product on operands laid out as our kernels receive them."""
    m, n, k, batch = p["m"], p["n"], p["k"], p["batch"]
    ta, tb = p["layout"][0] == "T", p["layout"][1] == "T"
    dev = "cuda"
    if p["summed"]:
        # sum_i op(A_i) op(B_i) = [op(A_1) .. op(A_b)] [op(B_1); ..; op(B_b)]: one m x n x (k b) product.
        a = torch.rand(m, k * batch, device=dev)
        b = torch.rand(k * batch, n, device=dev)
        return lambda: torch.matmul(a, b)
    a = torch.rand(*([] if p["a_shared"] else [batch]), *((k, m) if ta else (m, k)), device=dev)
    b = torch.rand(batch, *((n, k) if tb else (k, n)), device=dev)
    a = a.transpose(-1, -2) if ta else a
    b = b.transpose(-1, -2) if tb else b
    return lambda: torch.matmul(a, b)


def conv_fns(torch, c, batch):
    x = torch.rand(batch, c["c_in"], c["hw"], c["hw"], device="cuda", requires_grad=True)
    w = torch.rand(c["c_out"], c["c_in"], c["k"], c["k"], device="cuda", requires_grad=True)
    conv = lambda: torch.nn.functional.conv2d(x, w, stride=c["stride"], padding=c["pad"])  # noqa: E731
    dy = torch.rand_like(conv())

    def fwd():
        with torch.no_grad():
            conv()

    def fwd_bwd():
        x.grad, w.grad = None, None
        conv().backward(dy)

    return fwd, fwd_bwd


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", required=True, help="the JSON `cargo bench --bench gpu -- --shapes` writes")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--quick", action="store_true", help="fewer runs")
    a = p.parse_args()
    with open(a.shapes) as f:
        shapes = json.load(f)
    try:
        import torch
    except ImportError:
        print("skipped: this python3 has no torch")
        return
    except Exception as e:  # a torch whose CUDA libraries are missing raises other errors
        print(f"skipped: torch failed to load: {type(e).__name__}: {str(e)[:200]}")
        return
    if not torch.cuda.is_available():
        print(f"skipped: torch {torch.__version__} sees no CUDA device")
        return
    runs = 3 if a.quick else 10
    out = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "products": [],
        "convolutions": [],
        "ceiling": {},
    }
    print(f"torch {out['torch']}, CUDA {out['cuda']}, cuDNN {out['cudnn']}, {out['device']}")
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        big = product_fn(torch, {"m": 8192, "n": 8192, "k": 8192, "batch": 1, "layout": "NN",
                                 "summed": False, "a_shared": True})
        ms = median_ms(torch, big, 2, runs)
        key = "tf32" if tf32 else "fp32"
        out["ceiling"][key] = {"ms": ms, "tflops": 2 * 8192**3 / ms / 1e9}
        print(f"ceiling, 8192^3 {key}: {ms:.2f} ms, {out['ceiling'][key]['tflops']:.1f} TFLOP/s")
    print(f"\n{'product':<40} {'layout':>6} {'fp32 ms':>9} {'TFLOP/s':>8} {'tf32 ms':>9} {'TFLOP/s':>8}")
    for prod in shapes["products"]:
        row = {"name": prod["name"]}
        for tf32 in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            ms = median_ms(torch, product_fn(torch, prod), 2, runs)
            row["tf32_ms" if tf32 else "fp32_ms"] = ms
        torch.cuda.empty_cache()
        out["products"].append(row)
        f = prod["flops"] / 1e9
        print(f"{prod['name']:<40} {prod['layout']:>6} {row['fp32_ms']:>9.3f} {f / row['fp32_ms']:>8.1f} "
              f"{row['tf32_ms']:>9.3f} {f / row['tf32_ms']:>8.1f}", flush=True)
    print(f"\n{'convolution (cuDNN)':<32} {'fp32 fwd':>9} {'fwd+bwd':>9} {'tf32 fwd':>9} {'fwd+bwd':>9}  (ms)")
    for conv in shapes["convolutions"]:
        row = {"name": conv["name"]}
        for tf32 in (False, True):
            torch.backends.cudnn.allow_tf32 = tf32
            fwd, fwd_bwd = conv_fns(torch, conv, shapes["batch"])
            tag = "tf32" if tf32 else "fp32"
            row[f"{tag}_fwd_ms"] = median_ms(torch, fwd, 2, runs)
            row[f"{tag}_fwd_bwd_ms"] = median_ms(torch, fwd_bwd, 2, runs)
        torch.cuda.empty_cache()
        out["convolutions"].append(row)
        print(f"{conv['name']:<32} {row['fp32_fwd_ms']:>9.3f} {row['fp32_fwd_bwd_ms']:>9.3f} "
              f"{row['tf32_fwd_ms']:>9.3f} {row['tf32_fwd_bwd_ms']:>9.3f}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"\nwrote {a.json}")


if __name__ == "__main__":
    sys.exit(main())
