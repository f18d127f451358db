"""The demo's group company: its org tree (group, three subsidiaries, their regions and
departments), about forty people and their roles in the units, some in several (a matrix).

People who sell hold a seat in a department: the records they own land in that department, so a
regional director sees them through the region's subtree and a rep only their own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..metadata.actors import SYSTEM_ACTOR

GROUP_NAME = "Tianheng Group"
MAIL_DOMAIN = "tianheng.example"
DEMO_PASSWORD = "tianheng-demo"
"""The password of the featured users (the others have none: issue them a token)."""

SELLING_ROLES = {"crm_sales_rep": 3, "crm_sales_manager": 1}
"""Roles whose holders own records in their department, with how much of the work they carry."""
ENGINEER_ROLE = "mfg_service_engineer"


@dataclass(frozen=True)
class Unit:
    key: str
    name: str
    parent: str | None
    business: str | None = None
    """machinery, media or digital: the line of business of a subsidiary and the units below it."""
    region: str | None = None
    """The account region picklist value of a region and its departments."""
    cities: tuple[str, ...] = ()


@dataclass(frozen=True)
class Person:
    username: str
    full_name: str
    title: str
    memberships: tuple[tuple[str, str], ...]
    """(unit key, role) pairs."""


def _region(key: str, name: str, parent: str, business: str, region: str, departments: list[tuple[str, str, tuple[str, ...]]]):
    cities = tuple(city for _, _, dept_cities in departments for city in dept_cities)
    return [Unit(key, name, parent, business, region, cities),
            *(Unit(dept_key, dept_name, key, business, region, dept_cities) for dept_key, dept_name, dept_cities in departments)]


UNITS: tuple[Unit, ...] = (
    Unit("group", GROUP_NAME, None),
    Unit("machinery", "Tianheng Machinery", "group", "machinery"),
    *_region("mach_north", "Machinery North China", "machinery", "machinery", "north", [
        ("mach_bj", "Beijing Sales", ("Beijing",)),
        ("mach_tj", "Tianjin & Hebei Sales", ("Tianjin", "Tangshan", "Shijiazhuang"))]),
    *_region("mach_east", "Machinery East China", "machinery", "machinery", "east", [
        ("mach_sh", "Shanghai Sales", ("Shanghai",)),
        ("mach_js", "Jiangsu Sales", ("Suzhou", "Nanjing", "Wuxi")),
        ("mach_zj", "Zhejiang Sales", ("Hangzhou", "Ningbo"))]),
    *_region("mach_sw", "Machinery Southwest", "machinery", "machinery", "southwest", [
        ("mach_cd", "Chengdu Sales", ("Chengdu",)),
        ("mach_cq", "Chongqing Sales", ("Chongqing",))]),
    Unit("media", "Tianheng Media", "group", "media"),
    *_region("media_east", "Media East China", "media", "media", "east", [
        ("media_sh", "Shanghai Media Sales", ("Shanghai",)),
        ("media_hz", "Hangzhou & Nanjing Media Sales", ("Hangzhou", "Nanjing"))]),
    *_region("media_south", "Media South China", "media", "media", "south", [
        ("media_gz", "Guangzhou Media Sales", ("Guangzhou", "Foshan")),
        ("media_sz", "Shenzhen Media Sales", ("Shenzhen", "Dongguan"))]),
    Unit("digital", "Tianheng Digital", "group", "digital"),
    *_region("dig_north", "Digital North China", "digital", "digital", "north", [
        ("dig_bj", "Beijing Government & Utilities", ("Beijing", "Taiyuan"))]),
    *_region("dig_central", "Digital Central China", "digital", "digital", "central", [
        ("dig_wh", "Wuhan Projects", ("Wuhan",)),
        ("dig_cs", "Changsha & Zhengzhou Projects", ("Changsha", "Zhengzhou"))]),
)

REP, MANAGER, DIRECTOR, HEAD = "crm_sales_rep", "crm_sales_manager", "crm_regional_director", "crm_subsidiary_head"
MEDIA_PLANNER, MEDIA_SELLER = "media_planner", "media_seller"

PEOPLE: tuple[Person, ...] = (
    Person("wang.jianguo", "Wang Jianguo", "Group CEO", (("group", "crm_group_executive"), ("group", MEDIA_PLANNER))),
    Person("li.na", "Li Na", "Group CRM administrator", (("group", "crm_administrator"),)),
    Person("zhao.lei", "Zhao Lei", "President, Tianheng Machinery", (("machinery", HEAD), ("machinery", "mfg_service_manager"))),
    Person("chen.jing", "Chen Jing", "President, Tianheng Media", (("media", HEAD), ("media", MEDIA_PLANNER))),
    Person("lin.tao", "Lin Tao", "President, Tianheng Digital", (("digital", HEAD),)),
    Person("sun.hao", "Sun Hao", "Regional director, Machinery North", (("mach_north", DIRECTOR), ("mach_north", "mfg_service_manager"))),
    Person("zhou.min", "Zhou Min", "Regional director, Machinery East", (("mach_east", DIRECTOR), ("mach_east", "mfg_service_manager"))),
    Person("wu.gang", "Wu Gang", "Regional director, Machinery Southwest",
           (("mach_sw", DIRECTOR), ("mach_sw", "mfg_service_manager"), ("mach_cq", MANAGER))),
    Person("xu.li", "Xu Li", "Regional director, Media East", (("media_east", DIRECTOR), ("media_east", MEDIA_PLANNER))),
    Person("ma.lin", "Ma Lin", "Regional director, Media South",
           (("media_south", DIRECTOR), ("media_south", MEDIA_PLANNER), ("media_sz", MANAGER))),
    Person("he.yong", "He Yong", "Regional director, Digital North", (("dig_north", DIRECTOR), ("dig_bj", MANAGER))),
    Person("guo.fang", "Guo Fang", "Regional director, Digital Central", (("dig_central", DIRECTOR),)),
    Person("huang.bo", "Huang Bo", "Sales manager, Beijing", (("mach_bj", MANAGER),)),
    Person("zheng.hui", "Zheng Hui", "Sales manager, Tianjin & Hebei", (("mach_tj", MANAGER),)),
    Person("tang.jie", "Tang Jie", "Sales manager, Shanghai", (("mach_sh", MANAGER),)),
    Person("feng.yu", "Feng Yu", "Sales manager, Jiangsu", (("mach_js", MANAGER),)),
    Person("cao.ying", "Cao Ying", "Sales manager, Zhejiang", (("mach_zj", MANAGER),)),
    Person("deng.qiang", "Deng Qiang", "Sales manager, Chengdu", (("mach_cd", MANAGER),)),
    Person("yuan.mei", "Yuan Mei", "Media sales manager, Shanghai", (("media_sh", MANAGER), ("media_sh", MEDIA_SELLER))),
    Person("peng.fei", "Peng Fei", "Media sales manager, Hangzhou & Nanjing", (("media_hz", MANAGER), ("media_hz", MEDIA_SELLER))),
    Person("jiang.hong", "Jiang Hong", "Media sales manager, Guangzhou", (("media_gz", MANAGER), ("media_gz", MEDIA_SELLER))),
    Person("luo.ping", "Luo Ping", "Project sales manager, Wuhan and Changsha", (("dig_wh", MANAGER), ("dig_cs", MANAGER))),
    Person("liu.yang", "Liu Yang", "Sales rep, Shanghai", (("mach_sh", REP),)),
    Person("yang.fan", "Yang Fan", "Sales rep, Shanghai", (("mach_sh", REP),)),
    Person("zhang.wei", "Zhang Wei", "Sales rep, Beijing (machinery and digital projects)", (("mach_bj", REP), ("dig_bj", REP))),
    Person("gao.xiang", "Gao Xiang", "Sales rep, Beijing", (("mach_bj", REP),)),
    Person("song.jia", "Song Jia", "Sales rep, Tianjin & Hebei", (("mach_tj", REP),)),
    Person("han.lu", "Han Lu", "Sales rep, Jiangsu", (("mach_js", REP),)),
    Person("xie.ming", "Xie Ming", "Sales rep, Jiangsu", (("mach_js", REP),)),
    Person("dong.yi", "Dong Yi", "Sales rep, Zhejiang", (("mach_zj", REP),)),
    Person("pan.yue", "Pan Yue", "Sales rep, Chengdu", (("mach_cd", REP),)),
    Person("du.kai", "Du Kai", "Sales rep, Chongqing", (("mach_cq", REP),)),
    Person("ye.qing", "Ye Qing", "Media sales rep, Shanghai", (("media_sh", REP), ("media_sh", MEDIA_SELLER))),
    Person("wei.xin", "Wei Xin", "Media sales rep, Shanghai and Hangzhou",
           (("media_sh", REP), ("media_hz", REP), ("media_sh", MEDIA_SELLER))),
    Person("shen.lan", "Shen Lan", "Media sales rep, Hangzhou & Nanjing", (("media_hz", REP), ("media_hz", MEDIA_SELLER))),
    Person("lu.hao", "Lu Hao", "Media sales rep, Guangzhou", (("media_gz", REP), ("media_gz", MEDIA_SELLER))),
    Person("qian.rui", "Qian Rui", "Media sales rep, Shenzhen", (("media_sz", REP), ("media_sz", MEDIA_SELLER))),
    Person("fang.ning", "Fang Ning", "Project sales rep, Beijing", (("dig_bj", REP),)),
    Person("cheng.long", "Cheng Long", "Project sales rep, Wuhan", (("dig_wh", REP),)),
    Person("xiao.yu", "Xiao Yu", "Project sales rep, Changsha & Zhengzhou", (("dig_cs", REP),)),
    Person("kong.wen", "Kong Wen", "Service engineer, North China", (("mach_north", ENGINEER_ROLE),)),
    Person("bai.tao", "Bai Tao", "Service engineer, East China", (("mach_east", ENGINEER_ROLE),)),
    Person("qin.feng", "Qin Feng", "Service engineer, East China", (("mach_east", ENGINEER_ROLE),)),
    Person("shi.lei", "Shi Lei", "Service engineer, Southwest", (("mach_sw", ENGINEER_ROLE),)),
)

FEATURED = (
    ("executive", "wang.jianguo", "Group executive: every record of the group"),
    ("director", "zhou.min", "Regional director, Machinery East China: the region and its departments"),
    ("rep", "liu.yang", "Sales rep, Shanghai: only their own records"),
    ("administrator", "li.na", "CRM administrator: every record, and metadata changes (add objects live)"),
)
"""(reach, username, what they see) of the users whose tokens the demo prints."""

UNIT_BY_KEY = {unit.key: unit for unit in UNITS}


@dataclass(frozen=True)
class Seat:
    """Someone who owns records in a department: the records get the user as owner and the
    department as org unit."""

    user_id: str
    username: str
    unit_id: str
    unit: Unit
    weight: int


@dataclass(frozen=True)
class Engineer:
    user_id: str
    username: str
    unit_id: str
    region: str
    """The key of the region unit the engineer serves."""


@dataclass
class Company:
    units: dict[str, dict[str, Any]]
    """Org unit records by unit key."""
    users: dict[str, dict[str, Any]]
    """User records by username."""
    seats: list[Seat]
    engineers: list[Engineer]
    memberships: int

    def seats_of(self, business: str) -> list[Seat]:
        return [seat for seat in self.seats if seat.unit.business == business]

    def engineers_of(self, region_key: str) -> list[Engineer]:
        return [e for e in self.engineers if e.region == region_key]


def build_company(security, known_roles: set[str], tick: Callable[[int], None] = lambda n: None) -> Company:
    """Create the units, the people and their memberships (those whose role an installed app
    brings); the featured people get the demo password."""
    units: dict[str, dict[str, Any]] = {}
    for unit in UNITS:
        units[unit.key] = security.create_unit(SYSTEM_ACTOR, unit.name, units[unit.parent]["id"] if unit.parent else None)
        tick(1)
    featured = {username for _, username, _ in FEATURED}
    users: dict[str, dict[str, Any]] = {}
    seats: list[Seat] = []
    engineers: list[Engineer] = []
    memberships = 0
    for person in PEOPLE:
        user = security.create_user(
            SYSTEM_ACTOR, {"username": person.username, "full_name": person.full_name, "email": f"{person.username}@{MAIL_DOMAIN}"},
            DEMO_PASSWORD if person.username in featured else None)
        users[person.username] = user
        for unit_key, role in person.memberships:
            if role not in known_roles:
                continue
            unit_id = units[unit_key]["id"]
            security.add_membership(SYSTEM_ACTOR, user["id"], unit_id, role)
            memberships += 1
            if role in SELLING_ROLES:
                seats.append(Seat(user["id"], person.username, unit_id, UNIT_BY_KEY[unit_key], SELLING_ROLES[role]))
            elif role == ENGINEER_ROLE:
                engineers.append(Engineer(user["id"], person.username, unit_id, unit_key))
        tick(1)
    return Company(units, users, seats, engineers, memberships)


def region_of(unit: Unit) -> Unit:
    """The region a department (or region) belongs to."""
    return UNIT_BY_KEY[unit.parent] if unit.parent and UNIT_BY_KEY[unit.parent].region else unit
