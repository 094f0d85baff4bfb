"""Every zh-CN / English label the evidence shows, in one table: machine states, OEE flags, the MIIT
indicators and business areas, table column headers and the report's and command line's texts.

Both ends read it: the cloud's evidence report, CSVs, API and `edgegw evidence`, and the edge console
(which shows the same states and flags and may not import the cloud service). Pure data, no I/O.

A label is looked up by `group.name`, e.g. `label("state.running")` or `label("text.section.summary")`.
Texts with `{placeholders}` are filled with `Label.format`.
"""

from __future__ import annotations

from typing import NamedTuple


class Label(NamedTuple):
    zh: str
    en: str

    def __str__(self) -> str:
        return f"{self.zh} / {self.en}"

    def format(self, **values: object) -> Label:
        return Label(self.zh.format(**values), self.en.format(**values))


# machine states of the OEE time model (cloud_bridge.metrics.timeline.ALL_STATES) and micro-stops, in the
# order the reports stack them
STATES: dict[str, Label] = {
    "running": Label("运行", "running"),
    "micro_stops": Label("短停", "micro-stops"),
    "idle": Label("待机", "idle"),
    "setup": Label("换型调整", "setup"),
    "fault": Label("故障", "fault"),
    "planned_stop": Label("计划停机", "planned stop"),
    "offline": Label("离线", "offline"),
    "unknown": Label("状态未知", "unknown"),
}

# the flags of an OEE result (cloud_bridge.metrics.oee)
FLAGS: dict[str, Label] = {
    "performance_above_one": Label(
        "性能开动率超过100%：理想节拍设置有误", "performance above 100%: the ideal cycle time is wrong"
    ),
    "quality_assumed": Label("未配置良品/次品计数，质量率按1计", "no good/reject counter: quality taken as 1"),
    "no_counter": Label("未配置产量计数", "no production counter"),
    "no_ideal_cycle_time": Label("未配置理想节拍", "no ideal cycle time"),
    "not_observed_time": Label(
        "含离线或状态未知时间（单列，不计入负荷时间）", "offline/unknown time (reported apart, not in PBT)"
    ),
    "counter_rollover": Label("计数器溢出回绕已处理", "counter rollover handled"),
    "counter_reset": Label("计数器清零已处理", "counter reset handled"),
    "counter_jump": Label(
        "计数器跳回非零值（如更换或恢复PLC）：该段产量未计入",
        "counter set back to a non-zero value (PLC replaced or restored?): that step not counted",
    ),
    "no_planned_busy_time": Label("无负荷时间", "no planned busy time"),
    "mostly_unobserved": Label(
        "计划时间过半未观测到（离线或状态未知）：A、P、Q只代表观测到的部分",
        "less than half of the planned time observed (offline or unknown): A, P, Q speak for that part only",
    ),
    "counts_cover_part": Label(
        "计数仅覆盖部分运行时间：性能按已覆盖部分计算", "counters cover part of the run: P on that part"
    ),
    "counts_without_running": Label("非运行状态下有计数", "counts without running time"),
    "quality_out_of_range": Label("良品数大于产量：请检查计数配置", "good above produced: check the counters"),
}

# The business areas of 数据采集 (automatic data collection) in the MIIT SME digital level evaluation indicators
# (2024 edition, 工信厅企业〔2024〕56号), manufacturing sheet, 数字化基础 → 数据采集, item 企业实现数据自动采集的
# 业务环节覆盖范围 (multi-select), in the sheet's order. The sheet offers 15 options: 无 (none) and these 14 areas
# (as the evaluation system at zjtx.miit.gov.cn presents them; checked against two public copies of its
# question data). A pilot whose version differs overrides the list in cloud.yaml (`evidence.areas`).
COLLECTION_AREAS_SOURCE = (
    "《中小企业数字化水平评测指标（2024年版）》（工信厅企业〔2024〕56号）制造业评测表 数字化基础 → 数据采集："
    "企业实现数据自动采集的业务环节覆盖范围 / MIIT SME digital level evaluation indicators (2024), manufacturing "
    "sheet, digital basis → data collection"
)
COLLECTION_AREAS: dict[str, Label] = {
    "product_design": Label("产品设计", "product design"),
    "process_design": Label("工艺设计", "process design"),
    "marketing": Label("营销管理", "marketing and sales"),
    "after_sales": Label("售后服务", "after-sales service"),
    "planning": Label("计划排程", "planning and scheduling"),
    "production": Label("生产管控", "production control"),
    "quality": Label("质量管理", "quality management"),
    "equipment": Label("设备管理", "equipment management"),
    "safety": Label("安全生产", "safe production"),
    "energy": Label("能耗管理", "energy management"),
    "purchasing": Label("采购管理", "purchasing"),
    "warehousing": Label("仓储物流", "warehousing and logistics"),
    "finance": Label("财务管理", "finance"),
    "hr": Label("人力资源", "human resources"),
}

# a tag's `domain` (the ones the wire carries) → its 数据采集 business area: the area of the same key
DOMAIN_AREAS: dict[str, Label] = {
    d: COLLECTION_AREAS[d] for d in ("production", "equipment", "quality", "energy", "safety")
}

# why a device is not networked under the networked rule (cloud_bridge.metrics.evidence.networked_fails)
NOT_NETWORKED: dict[str, Label] = {
    "no_good_data": Label("无有效数据", "no good data"),
    "online_below": Label("在线不足", "online < rule"),
    "completeness_below": Label("完整率不足", "completeness < rule"),
}

# the figures of the evidence summary (the `indicator` column of summary.csv)
INDICATORS: dict[str, Label] = {
    "networked_ratio": Label("生产设备联网率", "networked equipment ratio"),
    "digitized_ratio": Label("生产设备数字化率", "digitized equipment ratio"),
    "key_process_networked": Label("关键工序设备联网数", "key-process equipment networked"),
    "online_now": Label("期末在线设备数", "devices online at the end"),
    "online_rate": Label("设备在线率（按时间）", "device online rate (time-based)"),
    "data_completeness": Label("数据完整率", "data completeness"),
    "collection_areas": Label("数据采集覆盖业务范围数", "business areas with automatic collection"),
    "oee_devices": Label("开展OEE统计的设备数", "devices with OEE statistics"),
}

# the factors of OEE (ISO 22400-2)
OEE: dict[str, Label] = {
    "availability": Label("时间开动率", "availability"),
    "performance": Label("性能开动率", "performance"),
    "quality": Label("合格品率", "quality"),
    "oee": Label("设备综合效率", "OEE"),
}

# column headers of the report's tables
COLUMNS: dict[str, Label] = {
    "indicator": Label("指标", "indicator"),
    "value": Label("值", "value"),
    "count": Label("分子/分母", "count"),
    "band": Label("区间", "band"),
    "points": Label("得分", "points"),
    "note": Label("说明", "note"),
    "id": Label("设备编号", "id"),
    "name": Label("名称", "name"),
    "line": Label("产线", "line"),
    "key_process": Label("关键工序", "key"),
    "digitized": Label("数字化", "digitized"),
    "networked": Label("联网", "networked"),
    "seen": Label("首次/末次上报", "first / last seen"),
    "online_s": Label("在线时长", "online"),
    "online_rate": Label("在线率", "online rate"),
    "completeness": Label("完整率", "completeness"),
    "observed": Label("观测覆盖", "observed"),
    "availability": Label("A", "avail."),
    "availability_all": Label("A（含离线）", "A (all planned)"),
    "performance": Label("P", "perf."),
    "quality": Label("Q", "quality"),
    "oee": Label("OEE", "OEE"),
    "device": Label("设备", "device"),
    "planned_operation": Label("计划生产", "POT"),
    "planned_busy": Label("负荷时间", "PBT"),
    "actual_production": Label("实际生产", "APT"),
    "speed": Label("速度损失", "speed loss"),
    "scrap": Label("废品损失", "scrap loss"),
    "not_observed": Label("离线/未知", "offline/unknown"),
    "produced_good": Label("产量/良品", "produced/good"),
    "gateway": Label("网关", "gateway"),
    "version": Label("版本", "version"),
    "area": Label("业务环节", "business area"),
    "area_tags": Label("采集点位（设备/点位）", "tags collecting for it (device/tag)"),
    "data_arrived": Label("数据已送达", "data arrived"),
    "counted": Label("计入", "counted"),
    "config_hashes": Label("配置哈希（SHA-256）", "config hashes (SHA-256)"),
}

# sentences and headings of the report and the command line
TEXTS: dict[str, Label] = {
    "title": Label("设备联网、在线与OEE证据报告", "Equipment networking, online and OEE evidence report"),
    "enterprise": Label("企业", "enterprise"),
    "period": Label("统计期", "period"),
    "figures_up_to": Label("数据截至", "figures up to"),
    "basis": Label("依据", "basis"),
    "basis_document": Label(
        "《中小企业数字化水平评测指标（2024年版）》", "MIIT SME digital level evaluation indicators (2024)"
    ),
    "generated": Label("生成", "generated"),
    "section.summary": Label("指标汇总", "Indicator summary"),
    "section.equipment": Label("设备明细", "Equipment"),
    "section.areas": Label("数据采集业务环节", "Business areas of data collection"),
    "section.timeline": Label("设备在线时间线", "Online timeline per device"),
    "section.oee": Label("设备综合效率（OEE）", "Overall equipment effectiveness (OEE)"),
    "section.method": Label("口径与来源", "Method and provenance"),
    "denominator.equipment_ledger": Label(
        "分母为设备台账中全部生产设备", "denominator: all production equipment in the ledger"
    ),
    "denominator.gateway_metadata": Label(
        "未导入设备台账：分母为网关上报的生产设备", "no ledger imported: denominator from gateway metadata"
    ),
    "note.digitized": Label("按设备台账申报", "as declared in the ledger"),
    "note.online_rate": Label(
        "计划时间内在线时长 / 计划时长，{devices} 台已接入",
        "seconds online in planned time / planned seconds, {devices} connected devices",
    ),
    "note.completeness": Label(
        "实采有效读数 / 采集计划读数（计划时间内）",
        "good readings taken / readings the poll plan calls for, in planned time",
    ),
    "note.oee_devices": Label("见报告第5节与 csv/oee.csv", "see section 5 of the report and csv/oee.csv"),
    "area.no_tags": Label("无点位", "no tag"),
    "area.no_domain": Label("点表业务域中无对应项", "no tag domain names it"),
    "no_equipment": Label("无设备", "no equipment"),
    "not_in_ledger": Label("不在台账", "not in ledger"),
    "legend.online": Label("在线", "online"),
    "legend.planned_offline": Label("计划生产时间（离线）", "planned time (offline)"),
    "legend.unscheduled": Label("非计划时间", "unscheduled"),
    "no_oee": Label("无OEE统计（设备未配置状态信号）", "no OEE: no device has a state tag configured"),
    "time_losses": Label("计划生产时间构成（时间损失）", "planned operation time by state (time losses)"),
    "rule.networked": Label(
        "联网：期间内有有效数据送达云端，且在线时长不少于计划生产时间的{online}{completeness}",
        "networked: good data reached the cloud in the period, and the device was online for at least {online} of "
        "the planned operation time{completeness}",
    ),
    "rule.completeness": Label(
        "，且数据完整率不低于{c}（可计算时）", ", and its data completeness was at least {c} (where measurable)"
    ),
    "rule.source.default": Label("默认规则", "the default rule"),
    "rule.source.pilot": Label("试点配置（cloud.yaml）", "the pilot's rule (cloud.yaml)"),
    "rule.source.enterprise": Label("本企业配置（cloud.yaml）", "this enterprise's rule (cloud.yaml)"),
    "method.score_bands": Label("评分区间", "score bands"),
    "method.online": Label(
        "在线时长：设备上线/离线事件（经网关断网缓存，不丢失），区间截取至统计期",
        "online time: the devices' online/offline events (store-and-forward, nothing lost), clipped to the period",
    ),
    "method.oee": Label(
        "OEE按ISO 22400-2：A=实际生产时间/负荷时间，P=理想节拍×产量/实际生产时间，Q=良品/产量",
        "OEE per ISO 22400-2: A = APT / PBT, P = ideal cycle time × produced / APT, Q = good / produced",
    ),
    "method.observed": Label(
        "观测覆盖 = (计划生产时间 − 离线 − 状态未知) / 计划生产时间；"
        "A（含离线）= 实际生产时间 / (计划生产时间 − 计划停机)，离线与状态未知计为损失",
        "observed = (POT − offline − unknown) / POT; A (all planned) = APT / (POT − planned stop), offline and unknown "
        "time counted as lost",
    ),
    "method.micro_stop_threshold": Label("短停阈值", "micro-stop threshold"),
    "method.micro_stops.performance": Label(
        "短停计为性能损失（六大损失口径）", "micro-stops are performance losses (six-loss form)"
    ),
    "method.micro_stops.availability": Label("短停计为时间开动率损失", "micro-stops are availability losses"),
    "method.calendar": Label("班次日历", "shift calendar"),
    "method.no_shifts": Label("未配置班次：每天24小时均为计划生产时间", "no shifts configured: 24 h a day planned"),
    "method.breaks": Label("休息", "breaks"),
    "equipment_ledger": Label("设备台账", "equipment ledger"),
    "ledger.rows": Label("台", "rows"),
    "ledger.imported": Label("导入于", "imported"),
    "notes": Label("提示", "notes"),
    "audit": Label("台账审计", "ledger audit"),
    "audit.none": Label("未运行", "not run"),
    "audit.passed": Label("通过", "passed"),
    "audit.failed": Label("未通过", "FAILED"),
    "audit.not_available": Label("本版本未提供", "not available in this build"),
    "audit.error": Label("运行出错", "could not run"),
    "signature": Label("平台签名", "platform signature"),
    "signature.none": Label("未签名", "unsigned"),
    "footer": Label(
        "本报告每个数字均有对应CSV（csv/目录），计算所依据的数据（含统计期前后用到的记录、原始设备台账文件）也在包内；"
        "manifest.json 记录每个文件的SHA-256，signature.json 为平台签名。核验：edgegw evidence verify DIR --public-key "
        "平台公钥；复算：edgegw evidence recompute DIR。",
        "Every number here has its CSV (csv/), and what it is computed from (with the records before and after the "
        "period the maths uses, and the equipment sheet as imported) is in the pack; manifest.json holds the SHA-256 "
        "of every file, signature.json the platform's signature. Check: edgegw evidence verify DIR --public-key "
        "<platform key>; recompute: edgegw evidence recompute DIR.",
    ),
    "evidence_pack": Label("证据包", "evidence pack"),
    "note_the_hash": Label(
        "记下此哈希，用 edgegw evidence verify DIR --expect <hash> 核验", "note it and check with verify --expect"
    ),
    "unsigned": Label(
        "未签名：cloud.yaml 未配置 evidence.signing_key（edgegw cloud keygen）",
        "unsigned: no evidence.signing_key in cloud.yaml (edgegw cloud keygen)",
    ),
    "signed_by": Label("平台签名", "signed by the platform key"),
    "unproven": Label(
        "完整性未证实：未提供可信公钥（--public-key）或预期哈希（--expect），任何人都可同时改写文件与清单",
        "integrity unproven: no trusted key (--public-key) or expected hash (--expect); anyone could have "
        "rewritten the files and the manifest together",
    ),
    "proven_key": Label("签名有效（可信公钥）", "signature valid (trusted key)"),
    "proven_hash": Label("清单哈希与预期一致", "manifest hash as expected"),
    "recomputed": Label("复算一致", "recomputed: every figure matches"),
    "not_recomputed": Label("复算不一致", "recomputed: figures DIFFER"),
    "audit_unavailable": Label(
        "台账审计不可用（本版本无 cloud_bridge.cloud.trust）：证据包注明未审计",
        "ledger audit not available (no cloud_bridge.cloud.trust in this build): the pack says so",
    ),
    "intact": Label("完好", "intact"),
    "not_intact": Label("不一致", "NOT intact"),
}

# the web pages: the edge console and the cloud portal (looked up as `ui.name`, shown by `|tr` in the page's
# language)
UI: dict[str, Label] = {
    "console": Label("边缘网关控制台", "Edge gateway console"),
    "portal": Label("评估门户", "Evaluation portal"),
    "login": Label("登录", "Log in"),
    "logout": Label("退出", "Log out"),
    "user": Label("用户名", "User"),
    "password": Label("密码", "Password"),
    "login_failed": Label("用户名或密码错误", "wrong user name or password"),
    "forbidden": Label("权限不足：需要 {role} 角色", "not allowed: needs the {role} role"),
    "error": Label("出错了", "Something went wrong"),
    "error_403": Label("无权访问", "Not allowed"),
    "error_404": Label("页面不存在", "Not found"),
    "error_413": Label("提交的内容过大", "Too large"),
    "error_422": Label("请求有误", "Bad request"),
    "error_429": Label("请求过于频繁", "Too many requests"),
    "back_home": Label("返回首页", "Back to the start page"),
    "language": Label("English", "中文"),
    "devices": Label("设备", "Devices"),
    "device": Label("设备", "Device"),
    "driver": Label("协议", "Driver"),
    "state": Label("状态", "State"),
    "online": Label("在线", "online"),
    "offline": Label("离线", "offline"),
    "last_seen": Label("最后采集", "Last seen"),
    "reason": Label("原因", "Reason"),
    "scans": Label("扫描次数", "Scans"),
    "samples": Label("数据点", "Samples"),
    "read_errors": Label("坏质量读数", "Bad readings"),
    "overruns": Label("超时扫描", "Overruns"),
    "published": Label("已发布", "Published"),
    "uplink": Label("上行链路", "Uplink"),
    "mqtt": Label("MQTT 连接", "MQTT link"),
    "connected": Label("已连接", "connected"),
    "disconnected": Label("未连接", "disconnected"),
    "stalled": Label("无应答", "stalled"),
    "backlog": Label("断网缓存", "Backlog"),
    "behind": Label("滞后", "behind"),
    "messages": Label("条消息", "messages"),
    "live_values": Label("实时数据", "Live values"),
    "tag": Label("点位", "Tag"),
    "value": Label("值", "Value"),
    "unit": Label("单位", "Unit"),
    "quality": Label("质量", "Quality"),
    "changed_at": Label("变化时间", "Changed"),
    "q.good": Label("正常", "good"),
    "q.uncertain": Label("不确定", "uncertain"),
    "q.bad": Label("坏", "bad"),
    "q.none": Label("未读取", "not read"),
    "oee_today": Label("今日 OEE 与状态时间线", "OEE and state timeline today"),
    "no_oee": Label("此设备未配置 OEE（状态点位）", "no OEE settings for this device (state tag)"),
    "editor": Label("点表编辑", "Tag map"),
    "edit": Label("编辑", "Edit"),
    "add_device": Label("新增设备", "Add device"),
    "remove": Label("删除", "Remove"),
    "save_draft": Label("检查并预览", "Check and preview"),
    "apply": Label("应用", "Apply"),
    "discard": Label("放弃草稿", "Discard draft"),
    "draft": Label("待应用的修改", "Changes waiting to be applied"),
    "no_draft": Label("没有待应用的修改", "nothing waiting to be applied"),
    "diff": Label("配置差异", "Config diff"),
    "applied": Label(
        "已应用：新增 {added}，变更 {changed}，删除 {removed}，未受影响 {unchanged}；备份 {backup}",
        "applied: {added} added, {changed} changed, {removed} removed, {unchanged} untouched; backup {backup}",
    ),
    "restart_needed": Label("以下部分需重启网关后生效：{sections}", "takes effect at the next start: {sections}"),
    "errors": Label("配置错误", "Config errors"),
    "no_config_file": Label(
        "此网关的配置不是从文件加载的，无法在线编辑", "this gateway's config was not loaded from a file: no editing"
    ),
    "tags": Label("点位表", "Tags"),
    "add_tag": Label("新增点位", "Add tag"),
    "connection": Label("连接", "Connection"),
    "poll_interval": Label("采集周期", "Poll interval"),
    "name": Label("名称", "Name"),
    "type": Label("类型", "Type"),
    "address": Label("地址/节点", "Address / node"),
    "scale": Label("倍率", "Scale"),
    "deadband": Label("死区", "Deadband"),
    "domain": Label("业务域", "Domain"),
    "sheet_import": Label("从表格导入点位", "Import tags from a spreadsheet"),
    "sheet_export": Label("导出点位", "Export tags"),
    "templates": Label("下载模板", "Templates"),
    "upload": Label("上传", "Upload"),
    "browse": Label("OPC UA 浏览选点", "OPC UA browse"),
    "endpoint": Label("服务器地址", "Endpoint"),
    "browse_go": Label("浏览", "Browse"),
    "add_ticked": Label("勾选的节点加入点位", "Add the ticked nodes as tags"),
    "test_read": Label("Modbus 试读", "Modbus test read"),
    "read": Label("读取", "Read"),
    "host": Label("主机", "Host"),
    "port": Label("端口", "Port"),
    "unit_id": Label("从站号", "Unit id"),
    "result": Label("结果", "Result"),
    "overview": Label("试点总览", "Pilot overview"),
    "enterprise": Label("企业", "Enterprise"),
    "enterprises": Label("企业", "Enterprises"),
    "networked": Label("联网率", "Networked"),
    "band": Label("得分", "Points"),
    "digitized": Label("数字化率", "Digitized"),
    "online_rate": Label("在线率", "Online rate"),
    "gateways": Label("网关", "Gateways"),
    "gateway": Label("网关", "Gateway"),
    "period": Label("统计期", "Period"),
    "from": Label("从", "From"),
    "to": Label("至", "To"),
    "show": Label("查看", "Show"),
    "export_pack": Label("导出证据包", "Export evidence pack"),
    "verify_pack": Label("核验证据包", "Verify a pack"),
    "verify_hint": Label("上传导出的 zip 文件", "upload the exported zip"),
    "import_ledger": Label("导入设备台账", "Import the equipment ledger"),
    "areas": Label("数据采集业务范围", "Business areas"),
    "timeline": Label("在线时间线", "Online timeline"),
    "no_data": Label("暂无数据", "no data yet"),
    "users": Label("用户", "Users"),
    "role": Label("角色", "Role"),
    "tokens": Label("令牌数", "Tokens"),
    "health": Label("运行状况", "Health"),
    "none": Label("无", "none"),
    # the portal's evidence packs and ledger import
    "export_pack_note": Label(
        "下载 zip；请记下其中 manifest.json 的 SHA-256（也在文件名中），核验时使用",
        "a zip download; note the SHA-256 of its manifest.json (also in the file name) to verify it later",
    ),
    "pack_zip": Label("证据包 zip 文件", "Evidence pack (zip)"),
    "expected_sha": Label(
        "收到时记录的 manifest.json SHA-256（可选）", "SHA-256 of manifest.json noted on receipt (optional)"
    ),
    "verify": Label("核验", "Verify"),
    "pack_intact": Label(
        "证据包完整：{files} 个文件与清单一致", "The pack is intact: {files} files match the manifest"
    ),
    "pack_proven": Label(
        "已由本平台签名，且 {files} 个文件与清单一致：完整性已证实",
        "Signed by this platform and {files} files match the manifest: integrity proven",
    ),
    "pack_unproven": Label(
        "文件与清单一致，但没有本平台的签名（也未给出预期哈希）：完整性未证实",
        "The files match the manifest, but the pack carries no signature of this platform (and no expected "
        "hash was given): integrity unproven",
    ),
    "pack_broken": Label("证据包与清单不符", "The pack does not match its manifest"),
    "pack_refused": Label("无法核验此文件", "This file cannot be verified"),
    "manifest_sha": Label("清单 SHA-256", "manifest.json SHA-256"),
    "import_ledger_note": Label(
        "CSV 或 XLSX，中文或英文表头；替换本企业现有台账",
        "CSV or XLSX, Chinese or English headers; replaces this enterprise's ledger",
    ),
    "ledger_imported": Label(
        "已导入设备台账：{rows} 行（SHA-256 {sha}）", "Equipment ledger imported: {rows} rows (SHA-256 {sha})"
    ),
    "ledger_errors": Label("设备台账有错误，未导入", "The equipment sheet has errors: nothing was imported"),
    # the edge's users page (admin)
    "add_user": Label("添加用户", "Add a user"),
    "user_added": Label("已添加用户 {name}（{role}）", "User {name} added ({role})"),
    "user_removed": Label("已删除用户 {name}", "User {name} removed"),
    "not_yourself": Label(
        "不能删除自己：请用另一个管理员账号登录", "You cannot remove yourself: log in as another admin"
    ),
    "new_token": Label("新建令牌", "New token"),
    "token_once": Label(
        "{name} 的新 API 令牌（只显示这一次，请立即保存）", "A new API token for {name} (shown this once: keep it now)"
    ),
    "you": Label("当前用户", "you"),
}

GROUPS: dict[str, dict[str, Label]] = {
    "state": STATES,
    "flag": FLAGS,
    "area": COLLECTION_AREAS,
    "indicator": INDICATORS,
    "not_networked": NOT_NETWORKED,
    "oee": OEE,
    "column": COLUMNS,
    "text": TEXTS,
    "ui": UI,
}


def label(key: str, *, strict: bool = True) -> Label:
    """The label of `group.name` (e.g. `state.running`). An unknown key is a KeyError; with `strict=False`
    a name the group does not know (a flag from a newer gateway) is shown as itself in both languages."""
    group, _, name = key.partition(".")
    table = GROUPS[group]
    if name in table or strict:
        return table[name]
    return Label(name, name)
