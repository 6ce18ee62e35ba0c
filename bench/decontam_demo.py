"""The fine-tune task's dev/test texts against a run's pretraining corpora, as stage 04 scans them (03c `Decontaminator`),
at several n-gram lengths: how many texts overlap, how many documents and characters a cut would touch.

    python bench/decontam_demo.py [--data_root data_file] [--task data_file/manpages_cls] [--corpora debian_reference general]

Needs stage 03's jsonl of each corpus (after `make demo`). Prints one markdown row per corpus and n."""
import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    from vertical_pretrain.decontam import Decontaminator, task_texts
    from vertical_pretrain.pretraining_data import read_jsonl_docs
    from vertical_pretrain.task import load_task
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data_root", default=str(REPO / "data_file"))
    ap.add_argument("--task", default=str(REPO / "data_file" / "manpages_cls"))
    ap.add_argument("--corpora", nargs="+", default=["debian_reference", "general"])
    ap.add_argument("--ngrams", nargs="+", type=int, default=[8, 10, 13])
    a = ap.parse_args(argv)
    texts = task_texts(load_task(a.task))
    print("| corpus | n (units) | documents | characters | dev found | test found | too short | documents touched | characters removed | s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for corpus in a.corpora:
        files = sorted((Path(a.data_root) / corpus / "jsonl").glob("*.jsonl"))
        if not files: print(f"| {corpus} | no jsonl in {Path(a.data_root) / corpus / 'jsonl'}: run make demo first |"); continue
        docs = [d for f in files for d in read_jsonl_docs(f)]
        for n in a.ngrams:
            t0 = time.perf_counter()
            dc = Decontaminator(texts, n)
            for d in docs: dc.count(d)
            if not dc.nothing_found():
                dc.drop_common(10)
                for d in docs: dc.feed(d)
            r, s = dc.report(), time.perf_counter() - t0
            sp = r["splits"]
            print(f"| {corpus} | {n} | {r['documents_in']:,} | {r['chars_in']:,} | {len(sp['dev']['overlapped'])} | "
                  f"{len(sp['test']['overlapped'])} | {sp['dev']['too_short'] + sp['test']['too_short']} | "
                  f"{r['documents_touched']} | {r['chars_removed']:,} | {s:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
