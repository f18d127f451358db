"""Record writes through the public RecordService: create, get, update, delete, restore, bulk writes.

Every test runs on SQLite and PostgreSQL (the ``runtime`` fixture). Bad input must write nothing
and come back as structured errors (code, field, message).
"""
from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from lowcode.metadata.actors import SYSTEM_ACTOR, Actor
from lowcode.metadata.errors import (
    Conflict,
    InUse,
    LowcodeError,
    NotFound,
    ValidationFailed,
)
from sqlalchemy import inspect

SYS = SYSTEM_ACTOR

PICK = lambda *names: {"values": [{"api_name": n, "label": n.title()} for n in names]}  # noqa: E731

SCHEMA = [
    {
        "api_name": "account", "label": "Account", "plural_api_name": "accounts", "plural_label": "Accounts",
        "fields": [
            {"api_name": "name", "label": "Name", "type": "text", "required": True, "tracked": True, "options": {"max_length": 80}},
            {"api_name": "industry", "label": "Industry", "type": "picklist", "tracked": True, "options": PICK("energy", "retail", "tech")},
            {"api_name": "revenue", "label": "Revenue", "type": "decimal", "options": {"precision": 12, "scale": 2}},
            {"api_name": "employees", "label": "Employees", "type": "integer", "options": {"min": 0, "max": 100000}},
            {"api_name": "code", "label": "Code", "type": "text", "unique": True, "options": {"max_length": 20}},
            {"api_name": "parent", "label": "Parent", "type": "lookup", "options": {"target": "account"}},
            {"api_name": "active", "label": "Active", "type": "boolean"},
            {"api_name": "notes", "label": "Notes", "type": "textarea", "options": {"max_length": 2000}},
            {"api_name": "founded", "label": "Founded", "type": "date"},
        ],
    },
    {
        "api_name": "opportunity", "label": "Opportunity", "plural_api_name": "opportunities", "plural_label": "Opportunities",
        "fields": [
            {"api_name": "number", "label": "Number", "type": "auto_number", "options": {"format": "OPP-{0000}"}},
            {"api_name": "name", "label": "Name", "type": "text", "required": True},
            {"api_name": "amount", "label": "Amount", "type": "currency", "tracked": True},
            {"api_name": "phase", "label": "Phase", "type": "picklist", "tracked": True, "options": PICK("prospect", "won", "lost")},
            {"api_name": "account", "label": "Account", "type": "lookup", "options": {"target": "account", "on_delete": "set_null"}},
        ],
    },
    {
        "api_name": "line_item", "label": "Line item", "plural_api_name": "line_items", "plural_label": "Line items",
        "fields": [
            {"api_name": "opportunity", "label": "Opportunity", "type": "master_detail", "options": {"target": "opportunity"}},
            {"api_name": "label", "label": "Label", "type": "text"},
            {"api_name": "quantity", "label": "Quantity", "type": "integer"},
        ],
    },
    {
        "api_name": "schedule", "label": "Schedule", "plural_api_name": "schedules", "plural_label": "Schedules",
        "fields": [
            {"api_name": "line_item", "label": "Line item", "type": "master_detail", "options": {"target": "line_item"}},
            {"api_name": "note", "label": "Note", "type": "text"},
        ],
    },
    {
        "api_name": "contract", "label": "Contract", "plural_api_name": "contracts", "plural_label": "Contracts",
        "fields": [
            {"api_name": "title", "label": "Title", "type": "text"},
            {"api_name": "account", "label": "Account", "type": "lookup", "options": {"target": "account", "on_delete": "restrict"}},
            {"api_name": "item", "label": "Item", "type": "lookup", "options": {"target": "line_item", "on_delete": "restrict"}},
        ],
    },
    {
        "api_name": "gadget", "label": "Gadget", "plural_api_name": "gadgets", "plural_label": "Gadgets",
        "fields": [
            {"api_name": "tags", "label": "Tags", "type": "multi_picklist", "options": PICK("red", "green", "blue")},
            {"api_name": "location", "label": "Location", "type": "geolocation"},
            {"api_name": "data", "label": "Data", "type": "json"},
            {"api_name": "mail", "label": "Mail", "type": "email", "unique": True},
            {"api_name": "site", "label": "Site", "type": "url"},
            {"api_name": "tel", "label": "Phone", "type": "phone"},
            {"api_name": "pct", "label": "Percent", "type": "percent"},
            {"api_name": "at", "label": "At", "type": "datetime"},
            {"api_name": "sku", "label": "SKU", "type": "text", "options": {"pattern": "^[A-Z]{3}-[0-9]+$", "max_length": 20}},
            {"api_name": "price", "label": "Price", "type": "decimal", "unique": True},
            {"api_name": "flag", "label": "Flag", "type": "boolean"},
        ],
    },
]


@pytest.fixture
def rt(runtime):
    runtime.metadata.create_objects(SYS, SCHEMA)
    return runtime


def count(rt, obj, *, deleted=False, filter=None) -> int:
    return rt.records.query(SYS, obj, first=0, total=True, deleted=deleted, filter=filter).total_count


def codes(exc) -> set[tuple[str, str | None]]:
    """(code, field) of each error of a ValidationFailed."""
    return {(e.code, e.field) for e in exc.value.errors}


def assert_structured(exc) -> None:
    body = exc.value.as_dict()
    assert body["code"] == "VALIDATION_FAILED"
    assert body["errors"], body
    for error in body["errors"]:
        assert set(error) >= {"code", "field", "message"}
        assert isinstance(error["code"], str) and error["code"].isupper()
        assert isinstance(error["message"], str) and error["message"]


# -- create / get / update ----------------------------------------------------------------------

def test_create_returns_the_record_and_get_reads_it_back(rt):
    created = rt.records.create(SYS, "account", {
        "name": "Acme", "industry": "energy", "revenue": "1234.50", "employees": 12, "code": "ACM",
        "active": True, "notes": "multi\nline", "founded": "1999-12-31",
    })
    assert uuid.UUID(created["id"])
    assert created["version"] == 1
    assert created["deleted_at"] is None
    assert created["created_at"] == created["updated_at"]
    assert created["created_at"].tzinfo is not None
    assert created["revenue"] == Decimal("1234.50")
    fetched = rt.records.get(SYS, "account", created["id"])
    assert fetched == created
    assert str(fetched["founded"]) == "1999-12-31"
    assert fetched["parent"] is None


def test_update_is_partial_and_bumps_version(rt):
    created = rt.records.create(SYS, "account", {"name": "Acme", "industry": "energy", "employees": 5, "code": "A1"})
    updated = rt.records.update(SYS, "account", created["id"], {"employees": 6})
    assert updated["employees"] == 6
    assert updated["version"] == 2
    assert updated["updated_at"] > created["updated_at"]
    assert updated["created_at"] == created["created_at"]
    fetched = rt.records.get(SYS, "account", created["id"])
    assert fetched["employees"] == 6
    assert (fetched["name"], fetched["industry"], fetched["code"]) == ("Acme", "energy", "A1")
    assert fetched["version"] == 2
    assert fetched["updated_at"] == updated["updated_at"]

    again = rt.records.update(SYS, "account", created["id"], {"name": "Acme 2", "industry": None})
    assert again["version"] == 3
    fetched = rt.records.get(SYS, "account", created["id"])
    assert (fetched["name"], fetched["industry"], fetched["employees"]) == ("Acme 2", None, 6)


def test_update_with_current_expected_version_succeeds(rt):
    created = rt.records.create(SYS, "account", {"name": "Acme"})
    updated = rt.records.update(SYS, "account", created["id"], {"name": "B"}, expected_version=1)
    assert updated["version"] == 2
    updated = rt.records.update(SYS, "account", created["id"], {"name": "C"}, expected_version=2)
    assert updated["version"] == 3


def test_stale_expected_version_is_a_conflict_and_writes_nothing(rt):
    created = rt.records.create(SYS, "account", {"name": "Acme"})
    rt.records.update(SYS, "account", created["id"], {"name": "Second"})
    with pytest.raises(Conflict) as exc:
        rt.records.update(SYS, "account", created["id"], {"name": "Third"}, expected_version=1)
    assert exc.value.code == "CONFLICT"
    assert exc.value.as_dict()["code"] == "CONFLICT"
    fetched = rt.records.get(SYS, "account", created["id"])
    assert (fetched["name"], fetched["version"]) == ("Second", 2)
    with pytest.raises(Conflict):
        rt.records.update(SYS, "account", created["id"], {"name": "Third"}, expected_version=3)


def test_expected_version_of_the_wrong_type_is_refused(rt):
    created = rt.records.create(SYS, "account", {"name": "Acme"})
    for bad in ("1", True, 1.0):
        with pytest.raises(ValidationFailed) as exc:
            rt.records.update(SYS, "account", created["id"], {"name": "B"}, expected_version=bad)
        assert ("INVALID_TYPE", "expected_version") in codes(exc)
    assert rt.records.get(SYS, "account", created["id"])["name"] == "Acme"


def test_update_of_unique_field_to_its_own_value_is_fine_but_others_value_is_refused(rt):
    a = rt.records.create(SYS, "account", {"name": "A", "code": "AAA"})
    b = rt.records.create(SYS, "account", {"name": "B", "code": "BBB"})
    assert rt.records.update(SYS, "account", a["id"], {"code": "AAA", "name": "A2"})["code"] == "AAA"
    with pytest.raises(ValidationFailed) as exc:
        rt.records.update(SYS, "account", b["id"], {"code": "AAA"})
    assert codes(exc) == {("DUPLICATE_VALUE", "code")}
    assert rt.records.get(SYS, "account", b["id"])["code"] == "BBB"


# -- recycle bin, restore, hard delete ----------------------------------------------------------

def test_delete_moves_into_the_recycle_bin_and_restore_brings_it_back(rt):
    keep = rt.records.create(SYS, "account", {"name": "Keep"})
    gone = rt.records.create(SYS, "account", {"name": "Gone"})
    rt.records.delete(SYS, "account", gone["id"])

    with pytest.raises(NotFound) as exc:
        rt.records.get(SYS, "account", gone["id"])
    assert exc.value.code == "NOT_FOUND"
    live = rt.records.query(SYS, "account")
    assert [r["id"] for r in live.records] == [keep["id"]]
    binned = rt.records.query(SYS, "account", deleted=True)
    assert [r["id"] for r in binned.records] == [gone["id"]]
    assert binned.records[0]["deleted_at"] is not None
    in_bin = rt.records.get(SYS, "account", gone["id"], deleted=True)
    assert in_bin["name"] == "Gone"

    with pytest.raises(NotFound):
        rt.records.update(SYS, "account", gone["id"], {"name": "x"})
    with pytest.raises(NotFound):
        rt.records.delete(SYS, "account", gone["id"])
    with pytest.raises(NotFound):
        rt.records.restore(SYS, "account", keep["id"])

    restored = rt.records.restore(SYS, "account", gone["id"])
    assert restored["deleted_at"] is None
    assert restored["name"] == "Gone"
    assert restored["version"] > in_bin["version"]
    assert rt.records.get(SYS, "account", gone["id"])["name"] == "Gone"
    assert count(rt, "account", deleted=True) == 0
    assert count(rt, "account") == 2


def test_hard_delete_removes_for_good_from_live_and_from_bin(rt):
    a = rt.records.create(SYS, "account", {"name": "A"})
    b = rt.records.create(SYS, "account", {"name": "B"})
    rt.records.hard_delete(SYS, "account", a["id"])
    rt.records.delete(SYS, "account", b["id"])
    rt.records.hard_delete(SYS, "account", b["id"])
    for rid in (a["id"], b["id"]):
        with pytest.raises(NotFound):
            rt.records.get(SYS, "account", rid, deleted=True)
        with pytest.raises(NotFound):
            rt.records.restore(SYS, "account", rid)
        with pytest.raises(NotFound):
            rt.records.hard_delete(SYS, "account", rid)
    assert count(rt, "account") == 0
    assert count(rt, "account", deleted=True) == 0


def _opportunity_tree(rt):
    opp = rt.records.create(SYS, "opportunity", {"name": "Deal"})
    items = rt.records.bulk_create(SYS, "line_item", [{"opportunity": opp["id"], "label": f"L{i}"} for i in range(3)])
    schedules = rt.records.bulk_create(SYS, "schedule", [{"line_item": item["id"], "note": item["label"]} for item in items])
    return opp, items, schedules


def test_master_delete_cascades_to_details_and_restore_brings_back_only_those(rt):
    opp, items, schedules = _opportunity_tree(rt)
    other = rt.records.create(SYS, "opportunity", {"name": "Other"})
    other_item = rt.records.create(SYS, "line_item", {"opportunity": other["id"], "label": "other"})

    # one detail (with its own detail) was deleted before the master: it must stay deleted
    rt.records.delete(SYS, "line_item", items[0]["id"])
    assert count(rt, "schedule", deleted=True) == 1

    rt.records.delete(SYS, "opportunity", opp["id"])
    assert count(rt, "line_item") == 1  # only the other opportunity's item
    assert rt.records.get(SYS, "line_item", other_item["id"])["label"] == "other"
    assert count(rt, "line_item", deleted=True) == 3
    assert count(rt, "schedule") == 0
    assert count(rt, "schedule", deleted=True) == 3
    for item in items:
        with pytest.raises(NotFound):
            rt.records.get(SYS, "line_item", item["id"])

    rt.records.restore(SYS, "opportunity", opp["id"])
    assert rt.records.get(SYS, "opportunity", opp["id"])["name"] == "Deal"
    live_items = {r["id"] for r in rt.records.query(SYS, "line_item").records}
    assert live_items == {items[1]["id"], items[2]["id"], other_item["id"]}
    with pytest.raises(NotFound):
        rt.records.get(SYS, "line_item", items[0]["id"])
    live_schedules = {r["id"] for r in rt.records.query(SYS, "schedule").records}
    assert live_schedules == {schedules[1]["id"], schedules[2]["id"]}
    assert [r["id"] for r in rt.records.query(SYS, "schedule", deleted=True).records] == [schedules[0]["id"]]

    # the earlier-deleted detail can still be restored on its own now that its master is live
    rt.records.restore(SYS, "line_item", items[0]["id"])
    assert count(rt, "line_item") == 4
    assert count(rt, "schedule") == 3


def test_restoring_a_detail_whose_master_is_in_the_bin_is_a_conflict(rt):
    opp, items, _ = _opportunity_tree(rt)
    rt.records.delete(SYS, "opportunity", opp["id"])
    with pytest.raises(Conflict) as exc:
        rt.records.restore(SYS, "line_item", items[1]["id"])
    assert exc.value.code == "CONFLICT"
    with pytest.raises(NotFound):
        rt.records.get(SYS, "line_item", items[1]["id"])
    assert count(rt, "line_item", deleted=True) == 3
    assert count(rt, "schedule", deleted=True) == 3


def test_hard_delete_of_a_master_removes_its_details(rt):
    opp, items, schedules = _opportunity_tree(rt)
    rt.records.hard_delete(SYS, "opportunity", opp["id"])
    assert count(rt, "line_item") + count(rt, "line_item", deleted=True) == 0
    assert count(rt, "schedule") + count(rt, "schedule", deleted=True) == 0
    with pytest.raises(NotFound):
        rt.records.get(SYS, "schedule", schedules[0]["id"], deleted=True)


def test_restrict_lookup_blocks_delete_while_a_live_record_references_it(rt):
    acct = rt.records.create(SYS, "account", {"name": "Acme"})
    contract = rt.records.create(SYS, "contract", {"title": "C", "account": acct["id"]})
    with pytest.raises(InUse) as exc:
        rt.records.delete(SYS, "account", acct["id"])
    assert exc.value.code == "IN_USE"
    assert rt.records.get(SYS, "account", acct["id"])["version"] == 1
    with pytest.raises(InUse):
        rt.records.hard_delete(SYS, "account", acct["id"])
    assert rt.records.get(SYS, "account", acct["id"])["name"] == "Acme"

    # a contract in the recycle bin no longer blocks the soft delete ...
    rt.records.delete(SYS, "contract", contract["id"])
    rt.records.delete(SYS, "account", acct["id"])
    assert count(rt, "account", deleted=True) == 1
    # ... but still blocks removing the account for good (its row would dangle)
    with pytest.raises(InUse):
        rt.records.hard_delete(SYS, "account", acct["id"])
    assert rt.records.get(SYS, "account", acct["id"], deleted=True)["name"] == "Acme"
    rt.records.hard_delete(SYS, "contract", contract["id"])
    rt.records.hard_delete(SYS, "account", acct["id"])
    assert count(rt, "account", deleted=True) == 0


def test_set_null_lookup_is_cleared_when_its_target_is_hard_deleted(rt):
    acct = rt.records.create(SYS, "account", {"name": "Acme"})
    child = rt.records.create(SYS, "account", {"name": "Child", "parent": acct["id"]})
    opp = rt.records.create(SYS, "opportunity", {"name": "Deal", "account": acct["id"]})
    binned = rt.records.create(SYS, "opportunity", {"name": "Binned", "account": acct["id"]})
    rt.records.delete(SYS, "opportunity", binned["id"])

    rt.records.delete(SYS, "account", acct["id"])  # soft: the references stay
    assert rt.records.get(SYS, "opportunity", opp["id"])["account"] == acct["id"]

    rt.records.hard_delete(SYS, "account", acct["id"])
    assert rt.records.get(SYS, "opportunity", opp["id"])["account"] is None
    assert rt.records.get(SYS, "opportunity", binned["id"], deleted=True)["account"] is None
    assert rt.records.get(SYS, "account", child["id"])["parent"] is None
    assert rt.records.get(SYS, "opportunity", opp["id"])["name"] == "Deal"


def test_restrict_lookup_to_a_detail_blocks_deleting_its_master(rt):
    opp, items, _ = _opportunity_tree(rt)
    contract = rt.records.create(SYS, "contract", {"title": "C", "item": items[2]["id"]})
    with pytest.raises(InUse):
        rt.records.delete(SYS, "opportunity", opp["id"])
    assert rt.records.get(SYS, "opportunity", opp["id"])["version"] == 1
    assert count(rt, "line_item") == 3 and count(rt, "schedule") == 3
    with pytest.raises(InUse):
        rt.records.hard_delete(SYS, "opportunity", opp["id"])
    assert count(rt, "line_item") == 3 and count(rt, "schedule") == 3
    rt.records.update(SYS, "contract", contract["id"], {"item": None})
    rt.records.delete(SYS, "opportunity", opp["id"])
    assert count(rt, "line_item") == 0


# -- bulk writes --------------------------------------------------------------------------------

def test_bulk_create_creates_every_row_in_order(rt):
    rows = [{"name": f"Deal {i}", "amount": i * 10} for i in range(5)]
    created = rt.records.bulk_create(SYS, "opportunity", rows)
    assert [r["name"] for r in created] == [f"Deal {i}" for i in range(5)]
    assert [r["number"] for r in created] == [f"OPP-{i:04d}" for i in range(1, 6)]
    assert len({r["id"] for r in created}) == 5
    for r in created:
        assert rt.records.get(SYS, "opportunity", r["id"]) == r


def test_bulk_create_reports_every_bad_row_by_index_and_writes_nothing(rt):
    rows = [
        {"name": "ok", "amount": 1},
        {"name": "bad amount", "amount": "lots"},
        {"name": "ok too", "amount": "-2.50"},
        {"amount": 1.234, "phase": "nope"},
        "not a row",
    ]
    with pytest.raises(ValidationFailed) as exc:
        rt.records.bulk_create(SYS, "opportunity", rows)
    assert_structured(exc)
    found = codes(exc)
    assert ("INVALID_FORMAT", "1.amount") in found or ("INVALID_TYPE", "1.amount") in found, found
    assert ("REQUIRED", "3.name") in found
    assert ("TOO_PRECISE", "3.amount") in found
    assert ("INVALID_CHOICE", "3.phase") in found
    assert ("INVALID_TYPE", "4") in found
    assert not any(e.field and e.field.split(".")[0] in ("0", "2") for e in exc.value.errors)
    assert count(rt, "opportunity") == 0
    # the failed batch consumed no auto numbers
    assert rt.records.create(SYS, "opportunity", {"name": "first"})["number"] == "OPP-0001"


def test_bulk_create_reports_duplicates_inside_the_batch_and_against_stored_rows(rt):
    rt.records.create(SYS, "account", {"name": "Existing", "code": "OLD"})
    rows = [
        {"name": "a", "code": "X1"},
        {"name": "b", "code": "X2"},
        {"name": "c", "code": "X1"},
        {"name": "d", "code": "OLD"},
        {"name": "e", "code": None},
        {"name": "f", "code": None},
    ]
    with pytest.raises(ValidationFailed) as exc:
        rt.records.bulk_create(SYS, "account", rows)
    found = codes(exc)
    assert ("DUPLICATE_VALUE", "2.code") in found
    assert ("DUPLICATE_VALUE", "3.code") in found
    assert not any(e.field and e.field.startswith(("0.", "1.", "4.", "5.")) for e in exc.value.errors), found
    assert count(rt, "account") == 1


def test_bulk_create_reports_dangling_lookups_by_row(rt):
    acct = rt.records.create(SYS, "account", {"name": "Acme"})
    binned = rt.records.create(SYS, "account", {"name": "Binned"})
    rt.records.delete(SYS, "account", binned["id"])
    missing = str(uuid.uuid4())
    with pytest.raises(ValidationFailed) as exc:
        rt.records.bulk_create(SYS, "opportunity", [
            {"name": "a", "account": acct["id"]},
            {"name": "b", "account": missing},
            {"name": "c", "account": binned["id"]},
            {"name": "d", "account": missing},
        ])
    assert codes(exc) == {("INVALID_REFERENCE", "1.account"), ("INVALID_REFERENCE", "2.account"), ("INVALID_REFERENCE", "3.account")}
    assert count(rt, "opportunity") == 0


def test_bulk_create_cap(rt):
    with pytest.raises(ValidationFailed) as exc:
        rt.records.bulk_create(SYS, "line_item", [{"label": "x"} for _ in range(10_001)])
    assert exc.value.errors and exc.value.errors[0].code == "TOO_MANY"
    assert count(rt, "line_item") == 0
    with pytest.raises(ValidationFailed) as exc:
        rt.records.bulk_create(SYS, "account", {"name": "not a list"})
    assert exc.value.errors[0].code == "INVALID_TYPE"


def test_bulk_create_at_the_cap_is_accepted(rt):
    created = rt.records.bulk_create(SYS, "contract", [{"title": f"t{i}"} for i in range(10_000)])
    assert len(created) == 10_000
    assert count(rt, "contract") == 10_000


def test_bulk_update_applies_every_change(rt):
    created = rt.records.bulk_create(SYS, "opportunity", [{"name": f"o{i}", "amount": i} for i in range(3)])
    updated = rt.records.bulk_update(SYS, "opportunity", [
        {"id": created[0]["id"], "values": {"amount": 100}, "expected_version": 1},
        {"id": created[2]["id"], "values": {"phase": "won"}},
    ])
    assert [(u["id"], u["version"]) for u in updated] == [(created[0]["id"], 2), (created[2]["id"], 2)]
    assert rt.records.get(SYS, "opportunity", created[0]["id"])["amount"] == Decimal("100.00")
    got = rt.records.get(SYS, "opportunity", created[2]["id"])
    assert (got["phase"], got["amount"], got["name"]) == ("won", Decimal("2.00"), "o2")
    assert rt.records.get(SYS, "opportunity", created[1]["id"])["version"] == 1


def test_bulk_update_is_all_or_nothing_and_reports_each_row(rt):
    created = rt.records.bulk_create(SYS, "opportunity", [{"name": f"o{i}", "amount": i} for i in range(4)])
    rt.records.update(SYS, "opportunity", created[3]["id"], {"name": "moved on"})
    with pytest.raises(ValidationFailed) as exc:
        rt.records.bulk_update(SYS, "opportunity", [
            {"id": created[0]["id"], "values": {"amount": 50}},
            {"id": created[1]["id"], "values": {"amount": "x", "bogus": 1}},
            {"id": str(uuid.uuid4()), "values": {"amount": 1}},
            {"id": created[3]["id"], "values": {"amount": 1}, "expected_version": 1},
            {"values": {"amount": 1}},
            {"id": created[2]["id"], "values": {"name": None}},
        ])
    assert_structured(exc)
    found = codes(exc)
    assert ("UNKNOWN_FIELD", "1.bogus") in found
    assert any(f == "1.amount" for _, f in found)
    assert ("NOT_FOUND", "2") in found
    assert ("CONFLICT", "3") in found
    assert ("INVALID_TYPE", "4") in found
    assert ("REQUIRED", "5.name") in found
    assert not any(f and f.startswith("0") for _, f in found)
    for i, record in enumerate(created):
        fetched = rt.records.get(SYS, "opportunity", record["id"])
        assert fetched["amount"] == Decimal(i)
        assert fetched["version"] == (2 if i == 3 else 1)


def test_bulk_update_refuses_two_rows_giving_the_same_unique_value(rt):
    a, b, c = rt.records.bulk_create(SYS, "account", [{"name": n, "code": n} for n in ("a", "b", "c")])
    with pytest.raises(ValidationFailed) as exc:
        rt.records.bulk_update(SYS, "account", [
            {"id": a["id"], "values": {"code": "NEW"}},
            {"id": b["id"], "values": {"code": "NEW"}},
        ])
    assert ("DUPLICATE_VALUE", "1.code") in codes(exc)
    assert [rt.records.get(SYS, "account", r["id"])["code"] for r in (a, b, c)] == ["a", "b", "c"]


def test_bulk_update_cap(rt):
    acct = rt.records.create(SYS, "account", {"name": "A"})
    with pytest.raises(ValidationFailed) as exc:
        rt.records.bulk_update(SYS, "account", [{"id": acct["id"], "values": {"name": "B"}}] * 10_001)
    assert exc.value.errors[0].code == "TOO_MANY"
    assert rt.records.get(SYS, "account", acct["id"])["version"] == 1


# -- bad input ----------------------------------------------------------------------------------

BAD_VALUES = [
    ({"name": 5}, "INVALID_TYPE", "name"),
    ({"name": ["Acme"]}, "INVALID_TYPE", "name"),
    ({"employees": "ten"}, "INVALID_TYPE", "employees"),
    ({"employees": 1.5}, "INVALID_TYPE", "employees"),
    ({"employees": True}, "INVALID_TYPE", "employees"),
    ({"active": "yes"}, "INVALID_TYPE", "active"),
    ({"active": 1}, "INVALID_TYPE", "active"),
    ({"revenue": True}, "INVALID_TYPE", "revenue"),
    ({"revenue": {"amount": 1}}, "INVALID_TYPE", "revenue"),
    ({"revenue": "1.234"}, "TOO_PRECISE", "revenue"),
    ({"founded": "2023-02-30"}, "INVALID_FORMAT", "founded"),
    ({"founded": "yesterday"}, "INVALID_FORMAT", "founded"),
    ({"bogus": 1}, "UNKNOWN_FIELD", "bogus"),
    ({"Name": "x"}, "UNKNOWN_FIELD", "Name"),
    ({"name; drop table x": 1}, "UNKNOWN_FIELD", "name; drop table x"),
    ({"name": "x" * 81}, "TOO_LONG", "name"),
    ({"code": "c" * 21}, "TOO_LONG", "code"),
    ({"notes": "n" * 2001}, "TOO_LONG", "notes"),
    ({"employees": -1}, "OUT_OF_RANGE", "employees"),
    ({"employees": 100001}, "OUT_OF_RANGE", "employees"),
    ({"employees": 2**31}, "OUT_OF_RANGE", "employees"),
    ({"revenue": "12345678901.00"}, "OUT_OF_RANGE", "revenue"),
    ({"industry": "banking"}, "INVALID_CHOICE", "industry"),
    ({"industry": "Energy"}, "INVALID_CHOICE", "industry"),
    ({"parent": "not-a-uuid"}, "INVALID_FORMAT", "parent"),
    ({"parent": 42}, "INVALID_TYPE", "parent"),
    ({"parent": "00000000-0000-0000-0000-000000000000"}, "INVALID_REFERENCE", "parent"),
    ({"owner_id": "00000000-0000-0000-0000-000000000001"}, "INVALID_REFERENCE", "owner_id"),
    ({"id": str(uuid.uuid4())}, "READ_ONLY", "id"),
    ({"version": 7}, "READ_ONLY", "version"),
    ({"created_at": "2020-01-01T00:00:00Z"}, "READ_ONLY", "created_at"),
    ({"updated_at": "2020-01-01T00:00:00Z"}, "READ_ONLY", "updated_at"),
    ({"created_by": None}, "READ_ONLY", "created_by"),
    ({"deleted_at": None}, "READ_ONLY", "deleted_at"),
]


@pytest.mark.parametrize("values, code, field", BAD_VALUES, ids=[f"{c}-{f}-{i}" for i, (_, c, f) in enumerate(BAD_VALUES)])
def test_bad_value_on_create_writes_nothing(rt, values, code, field):
    with pytest.raises(ValidationFailed) as exc:
        rt.records.create(SYS, "account", {"name": "Acme", **values} if "name" not in values else values)
    assert_structured(exc)
    assert (code, field) in codes(exc), exc.value.as_dict()
    assert count(rt, "account") == 0


@pytest.mark.parametrize("values, code, field", BAD_VALUES, ids=[f"{c}-{f}-{i}" for i, (_, c, f) in enumerate(BAD_VALUES)])
def test_bad_value_on_update_writes_nothing(rt, values, code, field):
    acct = rt.records.create(SYS, "account", {"name": "Acme", "employees": 3})
    with pytest.raises(ValidationFailed) as exc:
        rt.records.update(SYS, "account", acct["id"], values)
    assert_structured(exc)
    assert (code, field) in codes(exc), exc.value.as_dict()
    assert rt.records.get(SYS, "account", acct["id"]) == acct


def test_every_problem_is_reported_at_once(rt):
    with pytest.raises(ValidationFailed) as exc:
        rt.records.create(SYS, "account", {
            "name": 5, "employees": -4, "industry": "x", "code": "c" * 30, "bogus": 1, "id": "x", "version": 2,
        })
    assert codes(exc) >= {
        ("INVALID_TYPE", "name"), ("OUT_OF_RANGE", "employees"), ("INVALID_CHOICE", "industry"),
        ("TOO_LONG", "code"), ("UNKNOWN_FIELD", "bogus"), ("READ_ONLY", "id"), ("READ_ONLY", "version"),
    }
    assert count(rt, "account") == 0


def test_auto_number_is_read_only(rt):
    with pytest.raises(ValidationFailed) as exc:
        rt.records.create(SYS, "opportunity", {"name": "x", "number": "OPP-9999"})
    assert ("READ_ONLY", "number") in codes(exc)
    opp = rt.records.create(SYS, "opportunity", {"name": "x"})
    assert opp["number"] == "OPP-0001"
    with pytest.raises(ValidationFailed) as exc:
        rt.records.update(SYS, "opportunity", opp["id"], {"number": "OPP-0002"})
    assert ("READ_ONLY", "number") in codes(exc)
    assert rt.records.get(SYS, "opportunity", opp["id"])["number"] == "OPP-0001"


@pytest.mark.parametrize("payload", [None, [], ["name", "x"], "name=x", 42, ("name", "x")])
def test_non_dict_payload_is_refused(rt, payload):
    with pytest.raises(ValidationFailed) as exc:
        rt.records.create(SYS, "account", payload)
    assert_structured(exc)
    assert codes(exc) == {("INVALID_TYPE", None)}
    acct = rt.records.create(SYS, "account", {"name": "A"})
    with pytest.raises(ValidationFailed) as exc:
        rt.records.update(SYS, "account", acct["id"], payload)
    assert codes(exc) == {("INVALID_TYPE", None)}
    assert count(rt, "account") == 1
    assert rt.records.get(SYS, "account", acct["id"])["version"] == 1


def test_required_field_missing_or_null(rt):
    for values in ({}, {"name": None}, {"name": ""}, {"industry": "energy"}):
        with pytest.raises(ValidationFailed) as exc:
            rt.records.create(SYS, "account", values)
        assert ("REQUIRED", "name") in codes(exc), values
    with pytest.raises(ValidationFailed) as exc:
        rt.records.create(SYS, "line_item", {"label": "orphan"})
    assert ("REQUIRED", "opportunity") in codes(exc)
    rt.metadata.create_field(SYS, "line_item", {"api_name": "sku", "label": "SKU", "type": "text", "required": True})
    with pytest.raises(ValidationFailed) as exc:
        rt.records.create(SYS, "line_item", {"label": "orphan"})
    assert sorted((e.code, e.field) for e in exc.value.errors) == [("REQUIRED", "opportunity"), ("REQUIRED", "sku")]
    assert count(rt, "account") == 0 and count(rt, "line_item") == 0

    acct = rt.records.create(SYS, "account", {"name": "A"})
    with pytest.raises(ValidationFailed) as exc:
        rt.records.update(SYS, "account", acct["id"], {"name": None})
    assert codes(exc) == {("REQUIRED", "name")}
    assert rt.records.get(SYS, "account", acct["id"])["name"] == "A"


def test_unique_violation_on_create(rt):
    rt.records.create(SYS, "account", {"name": "A", "code": "SAME"})
    with pytest.raises(ValidationFailed) as exc:
        rt.records.create(SYS, "account", {"name": "B", "code": "SAME"})
    assert codes(exc) == {("DUPLICATE_VALUE", "code")}
    assert count(rt, "account") == 1
    # a value of a record in the recycle bin still counts: the unique index covers the whole table
    binned = rt.records.create(SYS, "account", {"name": "C", "code": "BIN"})
    rt.records.delete(SYS, "account", binned["id"])
    with pytest.raises(ValidationFailed) as exc:
        rt.records.create(SYS, "account", {"name": "D", "code": "BIN"})
    assert codes(exc) == {("DUPLICATE_VALUE", "code")}
    # nulls never collide
    rt.records.create(SYS, "account", {"name": "E"})
    rt.records.create(SYS, "account", {"name": "F", "code": None})
    assert count(rt, "account") == 3


def test_lookup_to_a_record_in_the_recycle_bin_is_refused(rt):
    acct = rt.records.create(SYS, "account", {"name": "A"})
    rt.records.delete(SYS, "account", acct["id"])
    with pytest.raises(ValidationFailed) as exc:
        rt.records.create(SYS, "opportunity", {"name": "x", "account": acct["id"]})
    assert codes(exc) == {("INVALID_REFERENCE", "account")}
    assert count(rt, "opportunity") == 0


def test_decimal_min_and_max_bound_the_values(runtime):
    runtime.metadata.create_object(SYS, {"api_name": "price", "label": "Price", "fields": [
        {"api_name": "amount", "label": "Amount", "type": "decimal", "options": {"precision": 8, "scale": 2, "min": "0", "max": "100.50"}},
    ]})
    for bad in ("-0.01", "100.51", -1, 1000):
        with pytest.raises(ValidationFailed) as exc:
            runtime.records.create(SYS, "price", {"amount": bad})
        assert codes(exc) == {("OUT_OF_RANGE", "amount")}
    assert [runtime.records.create(SYS, "price", {"amount": ok})["amount"] for ok in ("0", "100.50")] == [Decimal("0.00"), Decimal("100.50")]
    assert count(runtime, "price") == 2


def test_every_field_type_round_trips(rt):
    values = {
        "tags": ["blue", "red"], "location": {"latitude": 1.5, "longitude": -2}, "data": {"a": [1, "two", {"b": None}], "ok": True},
        "mail": "Bob@Example.COM", "site": "https://example.org/a?b=1", "tel": "+1 555 0100", "pct": "12.5",
        "at": "2026-03-01T09:30:00+08:00", "sku": "ABC-1", "price": "1.5", "flag": False,
    }
    created = rt.records.create(SYS, "gadget", values)
    assert created["tags"] == ["red", "blue"]  # display order of the picklist
    assert created["location"] == {"latitude": 1.5, "longitude": -2.0}
    assert created["data"] == {"a": [1, "two", {"b": None}], "ok": True}
    assert created["mail"] == "Bob@example.com"
    assert created["pct"] == Decimal("12.50") and created["price"] == Decimal("1.50")
    assert created["at"].isoformat() == "2026-03-01T01:30:00+00:00"
    assert created["flag"] is False
    assert rt.records.get(SYS, "gadget", created["id"]) == created
    assert rt.records.query(SYS, "gadget").records == [created]
    cleared = rt.records.update(SYS, "gadget", created["id"], {k: None for k in values})
    assert all(cleared[k] is None for k in values)
    assert rt.records.get(SYS, "gadget", created["id"]) == cleared


def test_empty_multi_picklist_reads_back_as_it_was_returned(rt):
    created = rt.records.create(SYS, "gadget", {"tags": []})
    assert rt.records.get(SYS, "gadget", created["id"])["tags"] == created["tags"]


GADGET_BAD = [
    ({"tags": ["red", "red"]}, "DUPLICATE_VALUES", "tags"),
    ({"tags": ["pink"]}, "INVALID_CHOICE", "tags.0"),
    ({"tags": "red"}, "INVALID_TYPE", "tags"),
    ({"location": {"latitude": 91, "longitude": 0}}, "OUT_OF_RANGE", "location.latitude"),
    ({"location": {"latitude": 0, "longitude": -181}}, "OUT_OF_RANGE", "location.longitude"),
    ({"location": {"latitude": 1}}, "REQUIRED", "location"),
    ({"location": [1, 2]}, "INVALID_TYPE", "location"),
    ({"at": "2026-03-01T09:30:00"}, "INVALID_FORMAT", "at"),
    ({"at": "2026-02-30T09:30:00Z"}, "INVALID_FORMAT", "at"),
    ({"mail": "not an email"}, "INVALID_FORMAT", "mail"),
    ({"site": "javascript:alert(1)"}, "INVALID_FORMAT", "site"),
    ({"tel": "call me"}, "INVALID_FORMAT", "tel"),
    ({"pct": "1000"}, "OUT_OF_RANGE", "pct"),
    ({"pct": "NaN"}, "INVALID_FORMAT", "pct"),
    ({"price": "Infinity"}, "INVALID_FORMAT", "price"),
    ({"price": float("inf")}, "INVALID_TYPE", "price"),
    ({"sku": "abc"}, "INVALID_FORMAT", "sku"),
    ({"flag": "false"}, "INVALID_TYPE", "flag"),
]


@pytest.mark.parametrize("values, code, field", GADGET_BAD, ids=[f"{c}-{f}-{i}" for i, (_, c, f) in enumerate(GADGET_BAD)])
def test_bad_value_of_other_types_writes_nothing(rt, values, code, field):
    with pytest.raises(ValidationFailed) as exc:
        rt.records.create(SYS, "gadget", values)
    assert_structured(exc)
    assert (code, field) in codes(exc), exc.value.as_dict()
    assert count(rt, "gadget") == 0


def test_unique_values_compare_after_coercion(rt):
    rt.records.create(SYS, "gadget", {"price": "1.5", "mail": "Bob@Example.com"})
    for values, field in (({"price": "1.50"}, "price"), ({"price": 1.5}, "price"), ({"mail": "Bob@EXAMPLE.com"}, "mail")):
        with pytest.raises(ValidationFailed) as exc:
            rt.records.create(SYS, "gadget", values)
        assert codes(exc) == {("DUPLICATE_VALUE", field)}
    with pytest.raises(ValidationFailed) as exc:
        rt.records.bulk_create(SYS, "gadget", [{"price": "2"}, {"price": "2.00"}])
    assert codes(exc) == {("DUPLICATE_VALUE", "1.price")}
    assert count(rt, "gadget") == 1


@pytest.mark.parametrize("obj, values", [
    ("account", {"name": "nul\x00byte"}),
    ("account", {"notes": "a\x00b"}),
    ("gadget", {"mail": "a\x00@b.co"}),
    ("gadget", {"data": {"text": "a\x00b"}}),
], ids=["text", "textarea", "email", "json"])
def test_nul_characters_are_stored_or_refused_cleanly(rt, obj, values):
    """A NUL character must not surface as a raw driver error: store it, or refuse it as a field error."""
    required = {"name": "ok"} if obj == "account" and "name" not in values else {}
    try:
        created = rt.records.create(SYS, obj, {**required, **values})
    except ValidationFailed as exc:
        assert {e.field.split(".")[0] for e in exc.errors if e.field} == set(values), exc.as_dict()
        assert all(e.field for e in exc.errors)
        assert count(rt, obj) == 0
    else:
        fetched = rt.records.get(SYS, obj, created["id"])
        assert {k: fetched[k] for k in values} == {k: created[k] for k in values}


SQL_TEXT = "x'); DROP TABLE obj_account; --"


def test_sql_looking_values_are_stored_verbatim(rt):
    tricky = [SQL_TEXT, "Robert'); DELETE FROM obj_account WHERE ('1'='1", "50% off_sale \\ \"quoted\"", "' OR 1=1 --"]
    created = [rt.records.create(SYS, "account", {"name": text, "notes": text}) for text in tricky]
    for record, text in zip(created, tricky):
        fetched = rt.records.get(SYS, "account", record["id"])
        assert fetched["name"] == text and fetched["notes"] == text
    assert "obj_account" in inspect(rt.engine).get_table_names()
    assert count(rt, "account") == len(tricky)
    found = rt.records.query(SYS, "account", filter={"name": {"eq": SQL_TEXT}})
    assert [r["id"] for r in found.records] == [created[0]["id"]]
    updated = rt.records.update(SYS, "account", created[1]["id"], {"name": SQL_TEXT + "2"})
    assert rt.records.get(SYS, "account", updated["id"])["name"] == SQL_TEXT + "2"
    assert count(rt, "account") == len(tricky)


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "1", "' OR '1'='1", None, 42, str(uuid.uuid4()), "00000000-0000-0000-0000-000000000000"])
def test_invalid_or_missing_ids_are_not_found(rt, bad_id):
    acct = rt.records.create(SYS, "account", {"name": "A"})
    with pytest.raises(NotFound) as exc:
        rt.records.get(SYS, "account", bad_id)
    assert exc.value.code == "NOT_FOUND"
    with pytest.raises(NotFound):
        rt.records.get(SYS, "account", bad_id, deleted=True)
    with pytest.raises(NotFound):
        rt.records.update(SYS, "account", bad_id, {"name": "B"})
    with pytest.raises(NotFound):
        rt.records.delete(SYS, "account", bad_id)
    with pytest.raises(NotFound):
        rt.records.restore(SYS, "account", bad_id)
    with pytest.raises(NotFound):
        rt.records.hard_delete(SYS, "account", bad_id)
    with pytest.raises(NotFound):
        rt.records.history(SYS, "account", bad_id)
    assert rt.records.get(SYS, "account", acct["id"])["version"] == 1
    assert count(rt, "account") == 1


def test_id_of_another_object_is_not_found(rt):
    acct = rt.records.create(SYS, "account", {"name": "A"})
    with pytest.raises(NotFound):
        rt.records.get(SYS, "opportunity", acct["id"])
    with pytest.raises(ValidationFailed) as exc:
        rt.records.create(SYS, "line_item", {"opportunity": acct["id"]})
    assert codes(exc) == {("INVALID_REFERENCE", "opportunity")}


def test_unknown_object_is_not_found(rt):
    with pytest.raises(NotFound):
        rt.records.create(SYS, "obj_account; --", {"name": "x"})
    with pytest.raises(NotFound):
        rt.records.query(SYS, "nope")


# -- field history ------------------------------------------------------------------------------

def test_history_tracks_changes_of_tracked_fields_with_the_actor(rt):
    user = rt.records.create(SYS, "user", {"username": "alice"})
    alice = Actor(user["id"], "alice", is_system=True)
    bob_user = rt.records.create(SYS, "user", {"username": "bob"})
    bob = Actor(bob_user["id"], "bob", is_system=True)

    acct = rt.records.create(alice, "account", {"name": "Acme", "industry": "energy", "employees": 1})
    assert acct["created_by"] == alice.id and acct["owner_id"] == alice.id
    rt.records.update(alice, "account", acct["id"], {"name": "Acme Corp"})
    rt.records.update(bob, "account", acct["id"], {"employees": 2, "notes": "untracked"})  # untracked only
    rt.records.update(bob, "account", acct["id"], {"industry": "tech", "employees": 3})
    rt.records.delete(bob, "account", acct["id"])
    rt.records.restore(alice, "account", acct["id"])

    history = rt.records.history(alice, "account", acct["id"])
    events = [(h["event"], h["field"], h["old"], h["new"], h["actor_id"]) for h in history]
    assert events == [
        ("created", None, None, None, alice.id),
        ("updated", "name", "Acme", "Acme Corp", alice.id),
        ("updated", "industry", "energy", "tech", bob.id),
        ("deleted", None, None, None, bob.id),
        ("restored", None, None, None, alice.id),
    ]
    ats = [h["at"] for h in history]
    assert ats == sorted(ats)
    assert all(a.tzinfo is not None for a in ats)


def test_history_of_decimal_tracked_field_is_json_ready(rt):
    opp = rt.records.create(SYS, "opportunity", {"name": "Deal", "amount": "10.50"})
    rt.records.update(SYS, "opportunity", opp["id"], {"amount": "11", "phase": "won"})
    rt.records.update(SYS, "opportunity", opp["id"], {"amount": None})
    updates = [(h["field"], h["old"], h["new"]) for h in rt.records.history(SYS, "opportunity", opp["id"]) if h["event"] == "updated"]
    assert sorted(updates[:2]) == [("amount", "10.50", "11.00"), ("phase", None, "won")]
    assert updates[2:] == [("amount", "11.00", None)]


def test_failed_update_leaves_no_history(rt):
    acct = rt.records.create(SYS, "account", {"name": "Acme"})
    with pytest.raises(ValidationFailed):
        rt.records.update(SYS, "account", acct["id"], {"name": "New", "employees": -1})
    with pytest.raises(Conflict):
        rt.records.update(SYS, "account", acct["id"], {"name": "New"}, expected_version=9)
    assert [h["event"] for h in rt.records.history(SYS, "account", acct["id"])] == ["created"]


def test_history_of_a_hard_deleted_record_is_not_found(rt):
    acct = rt.records.create(SYS, "account", {"name": "Acme"})
    rt.records.hard_delete(SYS, "account", acct["id"])
    with pytest.raises(NotFound):
        rt.records.history(SYS, "account", acct["id"])


def test_non_uuid_actor_id_never_poisons_a_record(rt):
    """An actor whose id is not a user id (``Actor("u1", "alice")``) must be refused (when the actor
    is made, or by the write with a platform error, writing nothing), or be handled so that the
    record stays readable and writable; never a driver error or a record that cannot be read back."""
    try:
        actor = Actor("u1", "alice")
    except ValueError:
        assert count(rt, "account") == 0
        return
    try:
        created = rt.records.create(actor, "account", {"name": "Acme"})
    except LowcodeError:
        assert count(rt, "account") == 0
        return
    fetched = rt.records.get(SYS, "account", created["id"])
    assert fetched["name"] == "Acme"
    assert rt.records.update(actor, "account", created["id"], {"name": "Acme 2"})["version"] == 2
    assert [r["name"] for r in rt.records.query(SYS, "account").records] == ["Acme 2"]
