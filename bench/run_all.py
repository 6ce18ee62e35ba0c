"""Run every bench/bench_*.py and print one report (`make bench`).

Each script measures its own anchor in the same run and prints a markdown table of ratios against it,
because these machines are noisy; this runner only collects the tables, in a fixed order, with the machine facts."""
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ORDER = ["bench_lac.py", "bench_pdf2text.py", "bench_ocr.py", "bench_data.py", "bench_indexmap.py", "bench_scale.py",
         "bench_matmul.py", "bench_train.py", "bench_fullsize.py"]


def machine() -> str:
    import paddle
    return (f"{platform.node()} | {platform.machine()} | {os.cpu_count()} cores | Python {platform.python_version()} | "
            f"paddle {paddle.__version__} | {time.strftime('%Y-%m-%d %H:%M')}")


def main() -> int:
    here = Path(__file__).resolve().parent
    scripts = sorted(here.glob("bench_*.py"), key=lambda p: (ORDER.index(p.name) if p.name in ORDER else 99, p.name))
    print(f"# vertical_pretrain benchmarks\n\nmachine: {machine()}\n")
    failed = []
    for s in scripts:
        print(f"## {s.stem}\n", flush=True)
        t0 = time.time()
        r = subprocess.run([sys.executable, str(s)], capture_output=True, text=True, cwd=here.parent)
        print(r.stdout.strip() or "(no output)")
        if r.returncode != 0:
            failed.append(s.name)
            print(f"\nFAILED (exit {r.returncode}):\n{r.stderr[-2000:]}")
        print(f"\n_{s.name}: {time.time() - t0:.0f}s_\n", flush=True)
    if failed: print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
