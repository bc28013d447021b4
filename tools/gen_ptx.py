#!/usr/bin/env python3
"""Compiles kernels/*.cu to crates/cuda/ptx/<family>.ptx with NVRTC 12.4 and assembles each into
crates/cuda/cubin/<family>.sm_90.cubin with ptxas 12.4, and checks the result.

    python3 tools/gen_ptx.py                 # regenerate crates/cuda/ptx/*.ptx and crates/cuda/cubin/*.cubin
    python3 tools/gen_ptx.py --check         # regenerate into a temp dir, compare with the committed files
    python3 tools/gen_ptx.py --cubin-check   # assemble crates/cuda/ptx/*.ptx for sm_90: no errors, no spills
    python3 tools/gen_ptx.py --sass-check    # disassemble the committed cubins: the instructions each kernel needs

NVRTC comes from the PyPI wheel nvidia-cuda-nvrtc-cu12==12.4.127, ptxas from
nvidia-cuda-nvcc-cu12==12.4.131 and nvdisasm from nvidia-cuda-nvdisasm==13.2.78 (found under
site-packages/nvidia/...; override with the environment variables NVRTC_LIB, PTXAS and
NVDISASM). Only the standard library is used (ctypes).
kernels/README.md says why the versions are pinned.
"""
import argparse
import ctypes
import filecmp
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "kernels"
PTX_DIR = ROOT / "crates" / "cuda" / "ptx"

# NVRTC 12.4 emits PTX ISA 8.4, which only drivers from R550 load; the kernels use nothing newer
# than ISA 7.0 (the first with sm_80 targets), so the version line is rewritten to 7.0 and ptxas
# (--cubin-check, and the cubins below) proves the PTX valid at that version. The driver floor is
# then set by the driver API the backend calls (crates/cuda/src/device.rs), not by the PTX.
# compute_80 lets the driver JIT it for sm_90 (H100) and run on Ampere.
NVRTC_VERSION = (12, 4)
PTXAS_RELEASE = "12.4"
PTX_ISA = "8.4"
TARGET_ISA = "7.0"
# Devices of this architecture load the committed cubin and skip the driver's JIT at start.
CUBIN_DIR = ROOT / "crates" / "cuda" / "cubin"
CUBIN_ARCH = "sm_90"
OPTIONS = [
    "--gpu-architecture=compute_80",
    "--std=c++17",
    "-default-device",
    # FMA contraction stays on (the GEMM wants it); kernels that must match the CPU bit for bit
    # use __fmul_rn. No fast-math: IEEE division and sqrt, no flush-to-zero, as on the CPU.
    "--fmad=true",
]
SM_CHECK = "sm_90"


def fail(msg):
    print(f"gen_ptx: error: {msg}", file=sys.stderr)
    sys.exit(1)


def site_dirs():
    """Directories that may hold the nvidia/ namespace package of the wheels."""
    dirs = [Path(p) for p in sys.path if p]
    try:
        import site

        dirs += [Path(p) for p in site.getsitepackages()]
        dirs.append(Path(site.getusersitepackages()))
    except (AttributeError, ImportError):
        pass
    seen, out = set(), []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def find_in_wheels(rel, what, env, pip_name):
    if os.environ.get(env):
        p = Path(os.environ[env])
        if not p.is_file():
            fail(f"{env}={p} is not a file")
        return p
    for d in site_dirs():
        p = d / rel
        if p.is_file():
            return p
    fail(f"{what} not found (looked for {rel} in {', '.join(str(d) for d in site_dirs())}); "
         f"install it with `pip install {pip_name}` or set {env}")


# ---------------------------------------------------------------- NVRTC through ctypes

class Nvrtc:
    def __init__(self, path):
        try:
            self.lib = ctypes.CDLL(str(path))
        except OSError as e:
            fail(f"cannot load NVRTC from {path}: {e}")
        lib = self.lib
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        lib.nvrtcGetErrorString.argtypes = [ctypes.c_int]
        lib.nvrtcVersion.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
        lib.nvrtcCreateProgram.argtypes = [
            ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
            ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_char_p),
        ]
        lib.nvrtcCompileProgram.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        lib.nvrtcGetProgramLogSize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        lib.nvrtcGetProgramLog.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nvrtcGetPTXSize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        lib.nvrtcGetPTX.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nvrtcDestroyProgram.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        for f in ("nvrtcVersion", "nvrtcCreateProgram", "nvrtcCompileProgram", "nvrtcGetProgramLogSize",
                  "nvrtcGetProgramLog", "nvrtcGetPTXSize", "nvrtcGetPTX", "nvrtcDestroyProgram"):
            getattr(lib, f).restype = ctypes.c_int

    def check(self, rc, what):
        if rc != 0:
            fail(f"{what}: {self.lib.nvrtcGetErrorString(rc).decode()}")

    def version(self):
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.check(self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        return major.value, minor.value

    def compile(self, source, name, options, headers=()):
        """Returns (ptx text or None, compile log). `headers`: (include name, text) pairs that
        the source's #include "name" resolves to (no include path, so no path reaches the PTX)."""
        prog = ctypes.c_void_p()
        count = len(headers)
        texts = (ctypes.c_char_p * max(count, 1))(*[h[1].encode() for h in headers])
        names = (ctypes.c_char_p * max(count, 1))(*[h[0].encode() for h in headers])
        self.check(self.lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), count, texts, names),
                   f"nvrtcCreateProgram({name})")
        try:
            opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
            rc = self.lib.nvrtcCompileProgram(prog, len(options), opts)
            size = ctypes.c_size_t()
            self.check(self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)), "nvrtcGetProgramLogSize")
            buf = ctypes.create_string_buffer(size.value)
            self.check(self.lib.nvrtcGetProgramLog(prog, buf), "nvrtcGetProgramLog")
            log = buf.value.decode(errors="replace").strip()
            if rc != 0:
                return None, log or self.lib.nvrtcGetErrorString(rc).decode()
            self.check(self.lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), "nvrtcGetPTXSize")
            buf = ctypes.create_string_buffer(size.value)
            self.check(self.lib.nvrtcGetPTX(prog, buf), "nvrtcGetPTX")
            # The buffer is NUL-terminated; .value stops there.
            return buf.value.decode(), log
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


def load_nvrtc():
    path = find_in_wheels("nvidia/cuda_nvrtc/lib/libnvrtc.so.12", "libnvrtc", "NVRTC_LIB",
                          "nvidia-cuda-nvrtc-cu12==12.4.127")
    nvrtc = Nvrtc(path)
    version = nvrtc.version()
    if version != NVRTC_VERSION:
        fail(f"{path} is NVRTC {version[0]}.{version[1]}; the committed PTX must come from "
             f"NVRTC {NVRTC_VERSION[0]}.{NVRTC_VERSION[1]} (see kernels/README.md)")
    return nvrtc, path


# ---------------------------------------------------------------- generation and checks

def sources():
    srcs = sorted(KERNELS.glob("*.cu"))
    if not srcs:
        fail(f"no kernels/*.cu found in {KERNELS}")
    return srcs


def headers():
    """kernels/*.cuh, as (include name, text): the device code the kernel files share."""
    return [(h.name, h.read_text()) for h in sorted(KERNELS.glob("*.cuh"))]


def generate(out_dir):
    """Compiles every kernels/*.cu into out_dir/<family>.ptx; returns the paths written."""
    nvrtc, path = load_nvrtc()
    print(f"gen_ptx: NVRTC {NVRTC_VERSION[0]}.{NVRTC_VERSION[1]} from {path}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written, errors = [], 0
    for src in sources():
        # The program name is the bare file name, so nothing machine-specific reaches the PTX.
        ptx, log = nvrtc.compile(src.read_text(), src.name, OPTIONS, headers())
        if log:
            print(f"--- {src.name}: compile log\n{log}")
        if ptx is None:
            print(f"gen_ptx: {src.name}: compilation FAILED", file=sys.stderr)
            errors += 1
            continue
        if f".version {PTX_ISA}\n" not in ptx:
            fail(f"{src.name}: expected PTX ISA {PTX_ISA} in the output")
        ptx = ptx.replace(f".version {PTX_ISA}\n", f".version {TARGET_ISA}\n", 1)
        dst = out_dir / (src.stem + ".ptx")
        # Write bytes with '\n' endings: identical input gives identical files on any platform.
        dst.write_bytes(ptx.encode())
        written.append(dst)
        print(f"gen_ptx: {src.name} -> {dst}")
    if errors:
        fail(f"{errors} file(s) failed to compile")
    # A .ptx whose .cu is gone would still be embedded: remove it.
    for stale in sorted(set(out_dir.glob("*.ptx")) - set(written)):
        print(f"gen_ptx: removing stale {stale}")
        stale.unlink()
    return written


def find_ptxas():
    """The pinned ptxas, after checking its release."""
    ptxas = find_in_wheels("nvidia/cuda_nvcc/bin/ptxas", "ptxas", "PTXAS", "nvidia-cuda-nvcc-cu12==12.4.131")
    ver = subprocess.run([str(ptxas), "--version"], capture_output=True, text=True)
    m = re.search(r"release (\d+\.\d+)", ver.stdout)
    if ver.returncode != 0 or not m:
        fail(f"cannot run {ptxas} --version: {ver.stderr.strip()}")
    if m.group(1) != PTXAS_RELEASE:
        fail(f"{ptxas} is release {m.group(1)}; expected {PTXAS_RELEASE}")
    return ptxas


def assemble(ptx_files, out_dir):
    """<family>.sm_90.cubin for each PTX file, into out_dir (ptxas output is deterministic)."""
    ptxas = find_ptxas()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for ptx in ptx_files:
        dst = out_dir / f"{ptx.stem}.{CUBIN_ARCH}.cubin"
        r = subprocess.run([str(ptxas), f"-arch={CUBIN_ARCH}", str(ptx), "-o", str(dst)], capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"ptxas could not assemble {ptx.name}:\n{r.stdout}{r.stderr}")
        written.append(dst)
        print(f"gen_ptx: {ptx.name} -> {dst}")
    for stale in sorted(set(out_dir.glob("*.cubin")) - set(written)):
        print(f"gen_ptx: removing stale {stale}")
        stale.unlink()
    return written


def compare(fresh_dir, committed_dir, pattern, what):
    """Problems where the committed files differ from freshly generated ones."""
    fresh = {p.name for p in fresh_dir.glob(pattern)}
    committed = {p.name for p in committed_dir.glob(pattern)} if committed_dir.is_dir() else set()
    rel = committed_dir.relative_to(ROOT)
    problems = [f"{rel}/{name} is missing" for name in sorted(fresh - committed)]
    problems += [f"{rel}/{name} has no source (stale file)" for name in sorted(committed - fresh)]
    problems += [f"{rel}/{name} differs from what its source {what} to" for name in sorted(fresh & committed)
                 if not filecmp.cmp(fresh_dir / name, committed_dir / name, shallow=False)]
    return problems, len(fresh)


def check():
    """Regenerates into a temp dir and compares with the committed crates/cuda/ptx and crates/cuda/cubin."""
    with tempfile.TemporaryDirectory(prefix="gen_ptx_") as tmp:
        fresh_ptx, fresh_cubin = Path(tmp) / "ptx", Path(tmp) / "cubin"
        assemble(generate(fresh_ptx), fresh_cubin)
        problems, n_ptx = compare(fresh_ptx, PTX_DIR, "*.ptx", "compiles")
        more, n_cubin = compare(fresh_cubin, CUBIN_DIR, "*.cubin", "assembles")
        problems += more
        if problems:
            for p in problems:
                print(f"gen_ptx --check: {p}", file=sys.stderr)
            fail("committed PTX or cubins are out of date: run `python3 tools/gen_ptx.py` and commit "
                 "crates/cuda/ptx/ and crates/cuda/cubin/")
    print(f"gen_ptx --check: all {n_ptx} PTX files and {n_cubin} cubins match their sources")


def cubin_check():
    """Assembles each crates/cuda/ptx/*.ptx for sm_90 with ptxas 12.4, failing on errors or spills."""
    ptxas = find_ptxas()
    ptx_files = sorted(PTX_DIR.glob("*.ptx"))
    if not ptx_files:
        fail("no crates/cuda/ptx/*.ptx to assemble: run `python3 tools/gen_ptx.py` first")
    print(f"gen_ptx --cubin-check: ptxas {PTXAS_RELEASE} from {ptxas}, -arch={SM_CHECK}")
    failures, rows = [], []
    with tempfile.TemporaryDirectory(prefix="gen_ptx_cubin_") as tmp:
        for ptx in ptx_files:
            cmd = [str(ptxas), f"-arch={SM_CHECK}", "--warn-on-spills", "--warning-as-error", "-v",
                   str(ptx), "-o", str(Path(tmp) / (ptx.stem + ".cubin"))]
            r = subprocess.run(cmd, capture_output=True, text=True)
            out = r.stdout + r.stderr
            if r.returncode != 0:
                print(out, file=sys.stderr)
                failures.append(f"{ptx.name}: ptxas exited with {r.returncode}")
            rows += parse_ptxas(ptx.name, out, failures)
    print(f"{'file':<16} {'kernel':<32} {'regs':>4} {'stack':>5} {'spill st':>8} {'spill ld':>8} {'smem':>6}")
    for row in rows:
        print(f"{row['file']:<16} {row['kernel']:<32} {row['regs']:>4} {row['stack']:>5} {row['spill_st']:>8} "
              f"{row['spill_ld']:>8} {row['smem']:>6}")
    if failures:
        for f in failures:
            print(f"gen_ptx --cubin-check: {f}", file=sys.stderr)
        fail(f"{len(failures)} problem(s) assembling for {SM_CHECK}")
    print(f"gen_ptx --cubin-check: {len(rows)} kernels in {len(ptx_files)} files assemble for {SM_CHECK} with no spills")


# What the machine code of each tensor-core kernel must hold (`--sass-check`), as nvdisasm spells
# it for sm_90: the TF32 mma.sync m16n8k8 (HMMA.1688.F32.TF32), 16-byte cp.async copies
# (LDGSTS...128, the vectorised path), the commit groups of the cp.async ring (LDGDEPBAR) and
# the waits on them (DEPBAR). Every kernel of every family: no local memory (LDL/STL: spills or
# arrays the registers could not hold) and no tensor-core instruction outside the tgemm kernels
# (the FP32 path is the exact one). A tgemm kernel with a K-contiguous operand (A unless it is
# transposed, B if it is: every variant but *_tn) loads that operand's fragments with ldmatrix
# (LDSM); ldmatrix cannot transpose 32-bit elements, so an M/N-contiguous operand's come by LDS.
SASS_REQUIRED = {
    "HMMA.1688.F32.TF32": "TF32 mma.sync m16n8k8",
    "LDGSTS.128": "16-byte cp.async",
    "LDGDEPBAR": "cp.async.commit_group",
    "DEPBAR": "cp.async.wait_group",
}


def find_nvdisasm():
    return find_in_wheels("nvidia/cu13/bin/nvdisasm", "nvdisasm", "NVDISASM", "nvidia-cuda-nvdisasm==13.2.78")


def sass_opcodes(nvdisasm, cubin):
    """{kernel: [opcode with its modifiers, ...]} from nvdisasm's listing of a cubin."""
    r = subprocess.run([str(nvdisasm), "-c", str(cubin)], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"nvdisasm could not disassemble {cubin.name}:\n{r.stderr}")
    kernels, cur = {}, None
    for line in r.stdout.splitlines():
        m = re.match(r"^(\w+):$", line)
        if m:
            cur = kernels.setdefault(m.group(1), [])
            continue
        # "/*0f30*/  @!P0 LDGSTS.E.BYPASS.128.ZFILL [R5], desc[UR8][R2.64] ;"
        # "@!PT LDS RZ, [RZ]": padding ptxas places after cp.async copies, never executed.
        if "@!PT " in line:
            continue
        m = re.match(r"^\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)*)", line)
        if m and cur is not None:
            cur.append(m.group(1))
    return kernels


def sass_problems(family, kernel, ops):
    """What is wrong with one kernel's instructions (see SASS_REQUIRED)."""
    problems = []
    names = [op.split(".")[0] for op in ops]
    if "LDL" in names or "STL" in names:
        problems.append("uses local memory (LDL/STL)")
    tensor = kernel.startswith("tgemm")
    hmma = [op for op in ops if op.startswith("HMMA")]
    if tensor:
        for want, what in SASS_REQUIRED.items():
            head, _, width = want.partition(".")
            if want.startswith("HMMA"):
                found = want in ops
            elif width:
                found = any(op.startswith(head) and f".{width}" in op for op in ops)
            else:
                found = head in names
            if not found:
                problems.append(f"has no {want} ({what})")
        if not kernel.endswith(("_tn", "_tn_epilogue")) and not any(op.startswith("LDSM") for op in ops):
            problems.append("has a K-contiguous operand but no LDSM (ldmatrix)")
    elif hmma:
        problems.append(f"is not a tensor-core kernel but has {hmma[0]}")
    return problems


def sass_check():
    """Disassembles the committed cubins and checks each kernel's instructions (SASS_REQUIRED)."""
    nvdisasm = find_nvdisasm()
    cubins = sorted(CUBIN_DIR.glob(f"*.{CUBIN_ARCH}.cubin"))
    if not cubins:
        fail("no crates/cuda/cubin/*.cubin to disassemble: run `python3 tools/gen_ptx.py` first")
    print(f"gen_ptx --sass-check: {nvdisasm}")
    print(f"{'kernel':<24} {'HMMA':>5} {'cp.async 16B':>12} {'cp.async 4B':>11} {'LDS':>5} {'LDSM':>5}")
    failures, n = [], 0
    for cubin in cubins:
        family = cubin.name.split(".")[0]
        for kernel, ops in sorted(sass_opcodes(nvdisasm, cubin).items()):
            n += 1
            failures += [f"{family}: {kernel} {p}" for p in sass_problems(family, kernel, ops)]
            if kernel.startswith(("tgemm", "sgemm")):
                copies = [op for op in ops if op.startswith("LDGSTS")]
                wide = sum(".128" in op for op in copies)
                print(f"{kernel:<24} {sum(op.startswith('HMMA') for op in ops):>5} {wide:>12} {len(copies) - wide:>11} "
                      f"{sum(op.split('.')[0] == 'LDS' for op in ops):>5} {sum(op.startswith('LDSM') for op in ops):>5}")
    if n == 0:
        failures.append("nvdisasm listed no kernels")
    if failures:
        for f in failures:
            print(f"gen_ptx --sass-check: {f}", file=sys.stderr)
        fail(f"{len(failures)} problem(s) in the sm_90 machine code")
    print(f"gen_ptx --sass-check: {n} kernels in {len(cubins)} cubins: every tgemm kernel runs TF32 mma.sync fed by "
          f"16-byte cp.async in commit groups, K-contiguous fragments by ldmatrix; no local memory, no tensor-core "
          f"instruction elsewhere")


def parse_ptxas(file, out, failures):
    """Per-kernel registers, stack, spills and shared memory from `ptxas -v`."""
    rows, cur = [], None
    for line in out.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            cur = {"file": file, "kernel": m.group(1), "regs": "?", "stack": "?", "spill_st": "?", "spill_ld": "?", "smem": 0}
            rows.append(cur)
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            cur["stack"], cur["spill_st"], cur["spill_ld"] = (int(g) for g in m.groups())
            if cur["spill_st"] or cur["spill_ld"]:
                failures.append(f"{file}: {cur['kernel']} spills ({line.strip()})")
        m = re.search(r"Used (\d+) registers", line)
        if m:
            cur["regs"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            cur["smem"] = int(s.group(1)) if s else 0
    for row in rows:
        if row["regs"] == "?" or row["spill_st"] == "?":
            failures.append(f"{file}: no register/spill line for {row['kernel']} in ptxas -v output")
    if not rows:
        failures.append(f"{file}: ptxas -v reported no kernels")
    return rows


def main():
    ap = argparse.ArgumentParser(description="Compile kernels/*.cu to crates/cuda/ptx/*.ptx with NVRTC 12.4.")
    ap.add_argument("--check", action="store_true", help="regenerate into a temp dir and compare with crates/cuda/ptx")
    ap.add_argument("--cubin-check", action="store_true", help="assemble crates/cuda/ptx/*.ptx for sm_90; fail on errors or spills")
    ap.add_argument("--sass-check", action="store_true",
                    help="disassemble crates/cuda/cubin/*.cubin: tensor-core kernels run HMMA fed by 16-byte cp.async, "
                         "K-contiguous fragments by ldmatrix; "
                         "no local memory anywhere")
    args = ap.parse_args()
    if args.check:
        check()
    if args.cubin_check:
        cubin_check()
    if args.sass_check:
        sass_check()
    if not (args.check or args.cubin_check or args.sass_check):
        assemble(generate(PTX_DIR), CUBIN_DIR)


if __name__ == "__main__":
    main()
