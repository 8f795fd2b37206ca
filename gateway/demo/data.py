"""Deterministic synthetic datasets for the demo upstream, with valid-checksum identifiers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from typing import Any

from gateway.masking.identifiers import (
    make_bank_card,
    make_mobile,
    make_uscc,
    resident_id_check,
)

Record = dict[str, Any]

__all__ = [
    "DISTRICTS",
    "DemoData",
    "District",
    "Record",
    "make_accounts",
    "make_address",
    "make_companies",
    "make_demo_data",
    "make_medical_records",
    "make_name",
    "make_person_id_card",
    "make_persons",
]


@dataclasses.dataclass(frozen=True, slots=True)
class District:
    """A county-level division: its 6-digit area code, the text above it, and some streets."""

    code: str
    region: str  # province and city, e.g. 广东省深圳市; a municipality is written once: 北京市
    name: str  # the district (区/县), e.g. 南山区
    streets: tuple[str, ...]


# Area codes match identifiers.AREA_CODES, so a resident ID or USCC names a real district here.
DISTRICTS: dict[str, District] = {
    d.code: d
    for d in (
        District("110105", "北京市", "朝阳区", ("建国路", "朝阳北路", "望京街", "东三环中路")),
        District("310104", "上海市", "徐汇区", ("漕溪北路", "肇嘉浜路", "天钥桥路", "虹桥路")),
        District(
            "440305", "广东省深圳市", "南山区", ("深南大道", "南海大道", "科苑路", "后海大道")
        ),
        District("510107", "四川省成都市", "武侯区", ("人民南路四段", "武侯祠大街", "科华北路")),
        District("330106", "浙江省杭州市", "西湖区", ("文三路", "天目山路", "学院路", "曙光路")),
        District("420102", "湖北省武汉市", "江岸区", ("解放大道", "沿江大道", "中山大道")),
        District("610113", "陕西省西安市", "雁塔区", ("长安南路", "小寨东路", "雁塔路", "科技路")),
        District("350102", "福建省福州市", "鼓楼区", ("五四路", "东街", "湖东路", "杨桥中路")),
    )
}

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
)
COMPOUND_SURNAMES = ("欧阳", "司马", "诸葛", "上官", "东方", "慕容", "皇甫", "尉迟")
MALE_CHARS = "伟强磊军洋勇杰涛明超刚平辉鹏华飞鑫波斌宇浩凯健俊帆帅旭宁龙林"
FEMALE_CHARS = "芳娜敏静丽艳娟霞秀玲桂英慧莹雪琳晶颖婷倩洁琴云兰佳欣怡梅"
RELATIONS = ("配偶", "父亲", "母亲", "子女", "兄弟姐妹", "朋友")

COMPANY_WORDS = ("华信", "恒通", "瑞丰", "金达", "中联", "宏远", "博雅", "天成", "鼎盛", "新源")
INDUSTRIES = (
    ("科技", "软件开发；信息技术咨询服务；数据处理和存储支持服务"),
    ("贸易", "日用百货销售；五金产品批发；货物进出口；技术进出口"),
    ("建设工程", "房屋建筑工程施工；市政公用工程施工；建筑材料销售"),
    ("食品", "食品生产；食品经营；农副产品销售；预包装食品销售"),
    ("医疗器械", "第二类医疗器械销售；第一类医疗器械生产；健康咨询服务"),
    ("物流", "道路货物运输；国内货物运输代理；普通货物仓储服务"),
)
COMPANY_FORMS = ("有限公司", "有限责任公司", "股份有限公司")
COMPANY_STATUSES = ("存续", "在业", "存续", "迁出", "注销")

PLAIN_REMARKS = (
    "待遇按月正常发放",
    "已完成年度资格认证",
    "养老保险关系已转入",
    "缴费记录完整，无欠费",
    "待遇调整已到账",
    "",
)

DIAGNOSES = (
    ("2型糖尿病", "二甲双胍片 0.5g 口服 每日三次"),
    ("原发性高血压", "苯磺酸氨氯地平片 5mg 口服 每日一次"),
    ("慢性阻塞性肺疾病", "噻托溴铵粉吸入剂 18μg 吸入 每日一次"),
    ("急性上呼吸道感染", "连花清瘟胶囊 1.4g 口服 每日三次"),
    ("冠状动脉粥样硬化性心脏病", "阿司匹林肠溶片 100mg 口服 每日一次"),
    ("腰椎间盘突出症", "塞来昔布胶囊 200mg 口服 每日一次"),
    ("慢性胃炎", "奥美拉唑肠溶胶囊 20mg 口服 每日两次"),
    ("支气管哮喘", "布地奈德福莫特罗吸入粉雾剂 1吸 每日两次"),
)
HOSPITALS = ("第一人民医院", "第三人民医院", "中医医院", "中心医院", "妇幼保健院")


@dataclasses.dataclass(frozen=True, slots=True)
class DemoData:
    """The four demo datasets; accounts and medical records belong to the same persons."""

    persons: list[Record]
    companies: list[Record]
    accounts: list[Record]
    medical_records: list[Record]


def make_name(rng: random.Random, gender: str) -> str:
    """A Chinese name; about one in twelve has a compound surname such as 欧阳."""
    surname = rng.choice(COMPOUND_SURNAMES) if rng.random() < 0.08 else rng.choice(SURNAMES)
    chars = MALE_CHARS if gender == "男" else FEMALE_CHARS
    return surname + "".join(rng.choice(chars) for _ in range(rng.choice((1, 2, 2))))


def make_address(rng: random.Random, district: District) -> str:
    """A street address inside the district, e.g. 北京市朝阳区建国路88号 (sometimes a flat)."""
    address = (
        f"{district.region}{district.name}{rng.choice(district.streets)}{rng.randint(1, 999)}号"
    )
    if rng.random() < 0.5:
        flat = f"{rng.randint(1, 33)}0{rng.randint(1, 4)}"
        address += f"{rng.randint(1, 30)}栋{rng.randint(1, 6)}单元{flat}室"
    return address


def make_person_id_card(rng: random.Random, area: str, born: dt.date, gender: str) -> str:
    """A valid resident ID whose area, birth date and sequence parity (odd: 男) agree."""
    parity = rng.choice("13579" if gender == "男" else "02468")
    body = f"{area}{born:%Y%m%d}{rng.randrange(100):02d}{parity}"
    return body + resident_id_check(body)


def _birth_date(rng: random.Random) -> dt.date:
    return dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(365 * 65))


def make_persons(rng: random.Random, size: int) -> list[Record]:
    """Population register entries with ids 1..size, emergency contacts and household."""
    persons: list[Record] = []
    for pid in range(1, size + 1):
        gender = rng.choice(("男", "女"))
        born = _birth_date(rng)
        district = rng.choice(list(DISTRICTS.values()))
        name = make_name(rng, gender)
        id_card = make_person_id_card(rng, district.code, born, gender)
        contacts = [
            {
                "name": make_name(rng, rng.choice(("男", "女"))),
                "relation": rng.choice(RELATIONS),
                "phone": make_mobile(rng),
            }
            for _ in range(rng.randint(0, 2))
        ]
        if rng.random() < 0.4:
            head = {"name": name, "id_card": id_card}
            relation = "户主"
        else:
            head_gender = rng.choice(("男", "女"))
            head = {
                "name": make_name(rng, head_gender),
                "id_card": make_person_id_card(rng, district.code, _birth_date(rng), head_gender),
            }
            relation = rng.choice(("配偶", "子女", "父母"))
        persons.append(
            {
                "id": pid,
                "name": name,
                "id_card": id_card,
                "phone": make_mobile(rng),
                "address": make_address(rng, district),
                "birth_date": born.isoformat(),
                "gender": gender,
                "contacts": contacts,
                "household": {
                    "household_no": f"{district.code}{rng.randrange(10**8):08d}",
                    "relation": relation,
                    "head": head,
                },
            }
        )
    return persons


def make_companies(rng: random.Random, size: int) -> list[Record]:
    """Enterprise register entries with ids 1..size; the address lies in the USCC's district."""
    companies: list[Record] = []
    for cid in range(1, size + 1):
        uscc = make_uscc(rng)
        district = DISTRICTS[uscc[2:8]]
        industry, scope = rng.choice(INDUSTRIES)
        city = district.region[-3:-1]  # 北京市 -> 北京, 广东省深圳市 -> 深圳
        legal = make_name(rng, rng.choice(("男", "女")))
        holders = [legal] + [
            make_name(rng, rng.choice(("男", "女"))) for _ in range(rng.randint(0, 2))
        ]
        shares = [rng.randint(1, 10) for _ in holders]
        shareholders = [
            {"name": holder, "ratio": round(share / sum(shares), 4)}
            for holder, share in zip(holders, shares, strict=True)
        ]
        companies.append(
            {
                "id": cid,
                "name": f"{city}{rng.choice(COMPANY_WORDS)}{industry}{rng.choice(COMPANY_FORMS)}",
                "uscc": uscc,
                "legal_representative": legal,
                "contact_phone": make_mobile(rng),
                "registered_capital": rng.choice((10, 50, 100, 200, 500, 1000, 5000)) * 10_000,
                "currency": "CNY",
                "address": make_address(rng, district),
                "established": (
                    dt.date(1995, 1, 1) + dt.timedelta(days=rng.randrange(365 * 30))
                ).isoformat(),
                "status": rng.choice(COMPANY_STATUSES),
                "business_scope": scope
                + "（依法须经批准的项目，经相关部门批准后方可开展经营活动）",
                "shareholders": shareholders,
            }
        )
    return companies


def _remarks(rng: random.Random, person: Record) -> str:
    """Free text; about a third embed a phone or resident ID with no separating space."""
    roll = rng.random()
    if roll < 0.12:
        return f"联系电话{person['phone']}，已核实"
    if roll < 0.2:
        return f"本人手机号变更为{make_mobile(rng)}，{rng.choice(PLAIN_REMARKS) or '待复核'}"
    if roll < 0.26:
        return f"联系方式+86-{make_mobile(rng)}"
    if roll < 0.34:
        agent = make_person_id_card(rng, person["id_card"][:6], _birth_date(rng), "女")
        return f"代办人身份证号{agent}，材料齐全"
    return rng.choice(PLAIN_REMARKS)


def make_accounts(rng: random.Random, persons: list[Record]) -> list[Record]:
    """One social-security account per person (shuffled), with ids 1..len(persons)."""
    owners = list(persons)
    rng.shuffle(owners)
    return [
        {
            "id": aid,
            "id_card": person["id_card"],
            "name": person["name"],
            "bank_card": make_bank_card(rng, rng.choice((16, 19))),
            "monthly_pension": round(rng.uniform(1800, 9000), 2),
            "remarks": _remarks(rng, person),
        }
        for aid, person in enumerate(owners, start=1)
    ]


def make_medical_records(rng: random.Random, persons: list[Record], size: int) -> list[Record]:
    """Outpatient records with ids 1..size; a person may have several."""
    records: list[Record] = []
    for rid in range(1, size + 1):
        person = rng.choice(persons)
        diagnosis, prescription = rng.choice(DIAGNOSES)
        visit = dt.date(2023, 1, 1) + dt.timedelta(days=rng.randrange(700))
        records.append(
            {
                "id": rid,
                "patient_name": person["name"],
                "id_card": person["id_card"],
                "visit_date": visit.isoformat(),
                "hospital": DISTRICTS[person["id_card"][:6]].region + rng.choice(HOSPITALS),
                "diagnosis": diagnosis,
                "prescription": prescription,
            }
        )
    return records


def make_demo_data(seed: int = 7, size: int = 500) -> DemoData:
    """All four datasets with `size` records each; the same seed gives the same data."""
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    persons = make_persons(random.Random(f"{seed}/persons"), size)
    return DemoData(
        persons=persons,
        companies=make_companies(random.Random(f"{seed}/companies"), size),
        accounts=make_accounts(random.Random(f"{seed}/accounts"), persons),
        medical_records=make_medical_records(random.Random(f"{seed}/medical"), persons, size),
    )
