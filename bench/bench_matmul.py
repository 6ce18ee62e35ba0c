"""Single-thread matrix-multiply rate of Paddle's CPU kernels (its bundled Intel MKL) under MKL's own kernel choice and
with `MKL_DEBUG_CPU_TYPE=5` (AVX2), against numpy/OpenBLAS on the same core, in the same run: the demo model's shapes
(tokens x hidden x FFN, the MLM decoder over a 19,440-row vocab) and one large product. Each setting runs in its own
process, since MKL reads the variable once. On an Intel CPU the two Paddle columns should agree; on AMD the first one is
MKL's SSE path (PaddlePaddle/Paddle#75760), which is why 06a's `cpu_math_env` sets the variable.

python bench/bench_matmul.py [--reps 20]"""
import argparse
import json
import os
import subprocess
import sys

SHAPES = [(1024, 128, 512), (1024, 512, 128), (1024, 128, 128), (150, 128, 19440), (2048, 1024, 1024)]


def child(reps: int) -> None:
    "GFLOP/s of paddle.matmul and numpy @ for each shape, one thread, printed as JSON."
    import time
    import numpy as np
    import paddle
    paddle.set_device("cpu")
    out = {}
    for m, k, n in SHAPES:
        a, b = paddle.randn([m, k]), paddle.randn([k, n])
        an, bn = a.numpy(), b.numpy()
        rates = []
        for f in (lambda: paddle.matmul(a, b), lambda: an @ bn):
            f()
            t = time.perf_counter()
            for _ in range(reps): f()
            rates.append(2 * m * k * n * reps / (time.perf_counter() - t) / 1e9)
        out[f"{m}x{k}x{n}"] = rates
    print(json.dumps(out))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    vendor = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("vendor_id")), "unknown")
    runs = {}
    for name, value in (("MKL default", ""), ("MKL_DEBUG_CPU_TYPE=5", "5")):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "MKL_DEBUG_CPU_TYPE": value, "GLOG_minloglevel": "2"}
        p = subprocess.run([sys.executable, __file__, "--child", str(args.reps)], env=env, capture_output=True, text=True)
        if p.returncode != 0: raise RuntimeError(p.stderr[-2000:])
        runs[name] = json.loads(p.stdout.strip().splitlines()[-1])
    print(f"CPU vendor: {vendor}; one thread; GFLOP/s (float32)\n")
    print("| M x K x N | paddle, MKL default | paddle, MKL_DEBUG_CPU_TYPE=5 | ratio | numpy (OpenBLAS) |")
    print("|---|---:|---:|---:|---:|")
    for shape, (p0, n0) in runs["MKL default"].items():
        p5, n5 = runs["MKL_DEBUG_CPU_TYPE=5"][shape]
        print(f"| {shape} | {p0:.1f} | {p5:.1f} | {p5 / p0:.2f}x | {(n0 + n5) / 2:.1f} |")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(int(sys.argv[2])); sys.exit(0)
    sys.exit(main())
