"""Throughput of stage 04 (create_pretraining_data) vs the PaddleNLP script's way, in the same run.

Inputs (both `--cn_splited`, as the pipeline feeds stage 04 after stage 02):
- book: the demo PDF (data_file/debian_reference/raw), pages -> text (stage 01 when installed, else pypdf page text,
  one document per page), words split by stage 02's jieba segmenter;
- general: the offline general corpus (People's Daily 1998-01 gold words + 35k reviews split by jieba, 03a_vocab);
- news+jieba: the People's Daily articles as plain text, segmented by jieba inside stage 04 (`--cn_seg_func jieba`),
  where the work per character is large enough for 2 processes to pay off.
Tokenizer: the offline WordPiece vocab built by `vertical_pretrain.vocab.build_vocab` on the general corpus.

Rows:
- "paddlenlp-style loop": one process, line by line: `tokenizer.tokenize(" ".join(words))` with PaddleNLP's Python
  ErnieTokenizer, the set-based `##` marking of the ernie-1.0 script (max 6 chars), `convert_tokens_to_ids`, BytesIO
  buffers, np.save/np.savez. Tokenizer loading is not timed (in its favour). This is the anchor (ratio 1.0).
- "create_pretraining_data": our whole stage call asked for 1 and 2 workers (the workers column is what it used: below
  2 MB of jsonl it stays in one process): tokenizer load, input checks,
  the 300-sentence self-check against PaddleNLP's tokenizer, pool start-up, atomic writes and stats included.
Ratios are on characters per second (identical input); tokens/s is shown too (the ## marking differs a little).

    python bench/bench_data.py [--rounds 2]
"""
import argparse
import io
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEMO_PDF = REPO / "data_file" / "debian_reference" / "raw" / "debian-reference.zh-cn.pdf"


def book_docs() -> list[list[str]]:
    "The demo book as documents of lines (stage 01 if installed, else one document per pypdf page)."
    try:
        from vertical_pretrain.pdf2text import pdf_to_text
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "book.txt"
            pdf_to_text(DEMO_PDF, out, show_progress=False)
            blocks = out.read_text(encoding="utf-8").split("\n\n")
        return [[l for l in b.split("\n") if l.strip()] for b in blocks if b.strip()]
    except ImportError:
        from pypdf import PdfReader
        pages = [p.extract_text() or "" for p in PdfReader(str(DEMO_PDF)).pages]
        return [[l.strip() for l in p.split("\n") if l.strip()] for p in pages if p.strip()]


def write_jsonl(path: Path, docs: list[str]) -> int:
    with open(path, "w", encoding="utf-8") as f:
        for d in docs: f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
    return sum(len(d) for d in docs)


def _paddlenlp_wwm(tokens, words, max_word_length=6):
    "The ernie-1.0 script's marking: longest run of Chinese tokens (<= 6) whose concatenation is a word of the sentence."
    words_set, out, i = set(words), [], 0
    while i < len(tokens):
        if not re.findall("[\u4E00-\u9FA5]", tokens[i]):
            out.append(tokens[i]); i += 1; continue
        for length in range(max_word_length, 0, -1):
            if i + length <= len(tokens) and "".join(tokens[i:i + length]) in words_set:
                out.append(tokens[i]); out += ["##" + t for t in tokens[i + 1:i + length]]
                i += length
                break
        else:
            out.append(tokens[i]); i += 1
    return out


def presplit_words(sentence: str) -> tuple[list, str]:
    "A stage-02 line: words are already space-separated; the tokenizer sees them joined by spaces."
    words = sentence.strip().split(" ")
    return words, " ".join(words)


def jieba_words(sentence: str) -> tuple[list, str]:
    "`--cn_seg_func jieba`: jieba.cut on the line; the tokenizer sees the words joined back together."
    import jieba
    words = list(jieba.cut(sentence.strip()))
    return words, "".join(words)


def paddlenlp_style(jsonl: Path, tok, prefix: Path, split=presplit_words) -> int:
    """Single-process loop in the way of PaddleNLP's create_pretraining_data.py (older _ids.npy/_idx.npz writer);
    `split(sentence) -> (words, text to tokenize)` is the word segmentation (`presplit_words` or `jieba_words`)."""
    dtype = np.uint16 if len(tok) < 2 ** 16 else np.int32
    ids_s, lens_s, docs_s = io.BytesIO(), io.BytesIO(), io.BytesIO()
    docs_s.write((0).to_bytes(8, "little", signed=True))
    n_sent = 0
    with open(jsonl, encoding="utf-8") as f:
        for line in f:
            doc = []
            for sentence in json.loads(line)["text"].split("\n"):
                words, text = split(sentence)
                ids = tok.convert_tokens_to_ids(_paddlenlp_wwm(tok.tokenize(text), words))
                if ids: doc.append(ids)
            if not doc: continue
            for ids in doc:
                lens_s.write(len(ids).to_bytes(4, "little", signed=True))
                ids_s.write(np.array(ids, dtype=dtype).tobytes())
                n_sent += 1
            docs_s.write(n_sent.to_bytes(8, "little", signed=True))
    all_ids = np.frombuffer(ids_s.getbuffer(), dtype=dtype)
    np.save(f"{prefix}_ids.npy", all_ids)
    np.savez(f"{prefix}_idx.npz", lens=np.frombuffer(lens_s.getbuffer(), dtype=np.int32),
             docs=np.frombuffer(docs_s.getbuffer(), dtype=np.int64))
    return len(all_ids)


def best_of(rounds, fn):
    best, out = float("inf"), None
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="best of N for every row")
    args = ap.parse_args(argv)

    from vertical_pretrain.pretraining_data import create_pretraining_data, load_segmenter, split_sentences
    from vertical_pretrain.vocab import build_vocab, general_corpus

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        t0 = time.perf_counter()
        general_corpus(d / "gtext", kind="text", progress=False)
        general_corpus(d / "gseg", kind="seg", progress=False)
        build_vocab([d / "gtext" / "general.txt"], d / "tok", vocab_size=12000, min_frequency=2, progress=False)
        seg = load_segmenter("jieba")
        book = []
        for lines in book_docs():
            sents = [s for l in lines for s in split_sentences(l)]
            book.append("\n".join(" ".join(w) for w in seg.batch(sents)))
        general = [b.strip() for b in (d / "gseg" / "general.txt").read_text(encoding="utf-8").split("\n\n") if b.strip()]
        news = [b.strip() for b in (d / "gtext" / "general.txt").read_text(encoding="utf-8").split("\n\n") if b.strip()]
        news = news[:3200]  # People's Daily articles only (they come first): plain text, segmented inside stage 04
        corpora = {"book": write_jsonl(d / "book.jsonl", book), "general": write_jsonl(d / "general.jsonl", general),
                   "news+jieba": write_jsonl(d / "news+jieba.jsonl", news)}
        print(f"setup (general corpus, vocab, book text + jieba): {time.perf_counter() - t0:.0f}s", file=sys.stderr)

        from paddlenlp.transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(str(d / "tok"))
        rows = []
        for name, chars in corpora.items():
            src = d / f"{name}.jsonl"
            splited = name != "news+jieba"
            split = presplit_words if splited else jieba_words
            secs, n_tok = best_of(args.rounds if splited else 1, lambda: paddlenlp_style(src, tok, d / f"{name}_base", split))
            rows.append((name, "paddlenlp-style loop", 1, chars, n_tok, secs))
            for w in (1, 2):
                secs, st = best_of(args.rounds, lambda: create_pretraining_data(
                    src, d / f"{name}_w{w}" / name, d / "tok", cn_splited=splited, cn_seg_func="jieba", workers=w,
                    chunk_size=64, progress=False, log=None))
                rows.append((name, "create_pretraining_data", st["_workers"], chars, st["tokens"], secs))

    import os
    print(f"load average before the timings: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other jobs skew the 2-worker rows)\n")
    print("| corpus | method | workers | chars | tokens | seconds | chars/s | tokens/s | × loop |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, how, w, chars, n_tok, secs in rows:
        anchor = next(c / s for n, h, _, c, _, s in rows if n == name and h == "paddlenlp-style loop")
        print(f"| {name} | {how} | {w} | {chars:,} | {n_tok:,} | {secs:.2f} | {chars / secs:,.0f} | {n_tok / secs:,.0f} | "
              f"{chars / secs / anchor:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
