"""Duplicate rules through the metadata service, the record service and the duplicates query, on
SQLite and PostgreSQL: values compared exactly, normalized, as phone numbers or fuzzily; a match
blocks or warns on create and update (nothing written); a caller who may not read the matching
record learns only who owns it; bad settings are refused at their paths; and the check costs the
same number of statements whatever the number of records."""
from __future__ import annotations

import pytest
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.errors import (
    Forbidden,
    InUse,
    InvalidDefinition,
    NotFound,
    ValidationFailed,
)
from lowcode.runtime import Runtime
from lowcode.runtime.duplicates.normalize import comparable, similarity
from lowcode.runtime.duplicates.store import match_keys
from sqlalchemy import event, func, select

LEAD = {"api_name": "lead", "label": "Lead", "plural_api_name": "leads", "plural_label": "Leads",
        "fields": [{"api_name": "name", "label": "Name", "type": "text"},
                   {"api_name": "phone", "label": "Phone", "type": "phone"},
                   {"api_name": "email", "label": "Email", "type": "email"},
                   {"api_name": "city", "label": "City", "type": "text"},
                   {"api_name": "budget", "label": "Budget", "type": "integer"}]}


@pytest.fixture
def rt(database_url):
    runtime = Runtime.connect(database_url).install()
    runtime.metadata.create_objects(S, [LEAD])
    yield runtime
    runtime.close()


class Org:
    """One East unit: ann and bob sell (they read their own leads), cat manages (reads all), boss
    is an administrator."""

    def __init__(self, rt):
        sec = rt.security
        east = sec.create_unit(S, "East")["id"]
        sec.create_role(S, "sales", "Sales")
        sec.create_role(S, "manager", "Manager")
        sec.set_object_grant(S, "sales", "lead", ["read", "create", "update", "delete"], "own", "own")
        sec.set_object_grant(S, "manager", "lead", ["read", "create", "update"], "all", "all")
        for name, role in (("ann", "sales"), ("bob", "sales"), ("cat", "manager")):
            user = sec.create_user(S, {"username": name})
            sec.add_membership(S, user["id"], east, role)
            setattr(self, name, sec.authenticate(sec.issue_token(S, "tests", user_id=user["id"])["token"]))


@pytest.fixture
def org(rt):
    return Org(rt)


def add_rule(rt, api_name="same_name", fields=None, action="block", **settings):
    fields = fields if fields is not None else [{"field": "name", "method": "normalized"}]
    return rt.metadata.create_automation(S, "lead", {"api_name": api_name, "kind": "duplicate_rule", "label": api_name,
                                                     "settings": {"fields": fields, "action": action, **settings}})


def lead(rt, name, actor=S, **values):
    return rt.records.create(actor, "lead", {"name": name, **values})


def refusal(error):
    return [(e.code, e.field) for e in error.value.errors]


def leads(rt):
    return sorted(r["name"] for r in rt.records.every(S, "lead", fields=["name"]))


def key_rows(rt):
    with rt.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(match_keys)).scalar_one()


# -- normalization --------------------------------------------------------------------------------
@pytest.mark.parametrize("method, first, second", [
    ("normalized", "ＡＢＣ　有限公司", "abc有限公司"),
    ("normalized", "Acme  Trading", "ACME TRADING"),
    ("normalized", "「星辰」科技（上海）有限公司。", "星辰科技上海有限公司"),
    ("normalized", "O'Brien, Smith & Co.", "obrien smith co"),
    ("normalized", "１２３ Ｍａｉｎ", "123main"),
    ("phone", "+86 138-0013-8000", "13800138000"),
    ("phone", "(0086)138 0013 8000", "13800138000"),
    ("phone", "8613800138000", "13800138000"),
    ("phone", "＋８６ １３８００１３８０００", "13800138000"),
    ("phone", "010-1234-5678", "+86 10 1234 5678"),
    ("phone", "(0086) 010 12345678", "10-12345678"),
    ("exact", "Acme", "Acme"),
])
def test_values_that_compare_equal(method, first, second):
    assert comparable(method, first) == comparable(method, second) != ""


@pytest.mark.parametrize("method, first, second", [
    ("exact", "Acme", "acme"),
    ("exact", "Acme", "Acme "),
    ("normalized", "Acme Ltd", "Acme Co"),
    ("phone", "+1 415 555 0100", "4155550100"),
    ("phone", "13800138000", "13800138001"),
])
def test_values_that_differ(method, first, second):
    assert comparable(method, first) != comparable(method, second)


def test_fuzzy_similarity_is_the_dice_coefficient_of_padded_bigrams():
    assert similarity("abcd", "abce") == pytest.approx(0.6)
    assert similarity("ＡＢＣＤ", "a b c e") == pytest.approx(0.6)
    assert similarity("北京星辰科技有限公司", "北京星辰科技公司") == pytest.approx(0.8)
    assert similarity("Acme", "acme") == 1.0
    assert similarity("abc", "xyz") == 0.0


def test_the_query_finds_normalized_and_phone_matches_through_the_rules(rt):
    add_rule(rt, "names")
    add_rule(rt, "phones", [{"field": "phone", "method": "phone"}])
    first = lead(rt, "ＡＢＣ　有限公司", phone="+86 138-0013-8000")
    assert [(m["record_id"], m["rule"], m["score"]) for m in rt.duplicates.duplicates(S, "lead", values={"name": "abc有限公司"})] == [
        (first["id"], "names", 1.0)]
    assert [m["rule"] for m in rt.duplicates.duplicates(S, "lead", values={"phone": "(0086)138 0013 8000"})] == ["phones"]
    assert rt.duplicates.duplicates(S, "lead", values={"name": "abc 有限", "phone": "13800138001"}) == []


def test_fuzzy_matching_holds_from_its_threshold_up(rt):
    add_rule(rt, "fuzzy", [{"field": "name", "method": "fuzzy", "threshold": 0.6}])
    alike = lead(rt, "abcd")
    found = rt.duplicates.duplicates(S, "lead", values={"name": "abce"})
    assert [(m["record_id"], m["score"], m["fields"]) for m in found] == [(alike["id"], 0.6, ["name"])]

    rt.metadata.update_automation(S, "lead", "fuzzy", {"settings": {"fields": [{"field": "name", "method": "fuzzy", "threshold": 0.61}],
                                                                    "action": "block"}})
    assert rt.duplicates.duplicates(S, "lead", values={"name": "abce"}) == []
    assert lead(rt, "abce")["name"] == "abce"
    with pytest.raises(ValidationFailed) as error:
        lead(rt, "ABCD!")
    assert refusal(error) == [("DUPLICATE", "name")]
    assert error.value.errors[0].ctx["matches"] == [{"id": alike["id"], "owner": None, "visible": True, "score": 1.0}]


# -- writes -----------------------------------------------------------------------------------------
def test_block_refuses_create_and_update_with_every_match_and_writes_nothing(rt, org):
    add_rule(rt, message="This customer is already followed up")
    taken = lead(rt, "Acme Trading", org.ann, phone="13800138000")
    other = lead(rt, "Zenith", org.cat)
    keys = key_rows(rt)

    with pytest.raises(ValidationFailed) as error:
        lead(rt, "ACME trading.", org.cat)
    assert refusal(error) == [("DUPLICATE", "name")]
    problem = error.value.errors[0]
    assert problem.message == "This customer is already followed up"
    assert problem.ctx == {"rule": "same_name", "action": "block", "fields": ["name"],
                           "matches": [{"id": taken["id"], "owner": "ann", "visible": True, "score": 1.0}]}

    with pytest.raises(ValidationFailed) as error:
        rt.records.update(org.cat, "lead", other["id"], {"name": "acme   TRADING"})
    assert refusal(error) == [("DUPLICATE", "name")]
    with pytest.raises(ValidationFailed) as error:
        rt.records.bulk_create(S, "lead", [{"name": "Fresh"}, {"name": "Acme-Trading"}], acknowledge=["POSSIBLE_DUPLICATE"])
    assert refusal(error) == [("DUPLICATE", "1.name")]

    assert leads(rt) == ["Acme Trading", "Zenith"]
    assert rt.records.get(S, "lead", other["id"])["version"] == 1
    assert key_rows(rt) == keys


def test_warn_refuses_until_the_caller_acknowledges(rt, org):
    add_rule(rt, action="warn")
    lead(rt, "Acme", org.ann)
    with pytest.raises(ValidationFailed) as error:
        lead(rt, "acme", org.cat)
    assert refusal(error) == [("POSSIBLE_DUPLICATE", "name")]
    assert "acknowledge POSSIBLE_DUPLICATE" in error.value.errors[0].message
    with pytest.raises(ValidationFailed):
        rt.records.create(org.cat, "lead", {"name": "acme"}, acknowledge=["SOMETHING_ELSE"])
    assert leads(rt) == ["Acme"]

    made = rt.records.create(org.cat, "lead", {"name": "acme"}, acknowledge=["POSSIBLE_DUPLICATE"])
    assert leads(rt) == ["Acme", "acme"]
    other = lead(rt, "Other", org.cat)
    with pytest.raises(ValidationFailed) as error:
        rt.records.update(org.cat, "lead", other["id"], {"name": "ACME"})
    assert [m["id"] for m in error.value.errors[0].ctx["matches"]] != []
    assert rt.records.update(org.cat, "lead", other["id"], {"name": "ACME"}, acknowledge=["POSSIBLE_DUPLICATE"])["name"] == "ACME"
    assert sorted(m["record_id"] for m in rt.duplicates.duplicates(S, "lead", made["id"])) == sorted(
        r["id"] for r in rt.records.every(S, "lead", filter={"name": {"in": ["Acme", "ACME"]}}))


def test_a_record_never_matches_itself_and_unrelated_edits_are_not_checked(rt):
    add_rule(rt)
    own = lead(rt, "Acme Ltd", budget=1)
    assert rt.records.update(S, "lead", own["id"], {"name": "ACME  ltd."})["name"] == "ACME  ltd."
    assert rt.duplicates.duplicates(S, "lead", own["id"]) == []

    rt.metadata.delete_automation(S, "lead", "same_name")
    twin = lead(rt, "acme ltd")
    add_rule(rt)
    assert rt.records.update(S, "lead", twin["id"], {"budget": 5})["budget"] == 5
    with pytest.raises(ValidationFailed) as error:
        rt.records.update(S, "lead", twin["id"], {"name": "Acme, Ltd"})
    assert error.value.errors[0].ctx["matches"][0]["id"] == own["id"]


def test_deleted_records_do_not_match_until_restored(rt):
    add_rule(rt)
    gone = lead(rt, "Acme")
    rt.records.delete(S, "lead", gone["id"])
    back = lead(rt, "ACME")
    assert rt.duplicates.duplicates(S, "lead", back["id"]) == []
    rt.records.restore(S, "lead", gone["id"])
    assert [m["record_id"] for m in rt.duplicates.duplicates(S, "lead", back["id"])] == [gone["id"]]
    rt.records.hard_delete(S, "lead", gone["id"])
    assert rt.duplicates.duplicates(S, "lead", back["id"]) == []


def test_all_needs_every_field_to_match_and_any_needs_one(rt):
    fields = [{"field": "name", "method": "normalized"}, {"field": "phone", "method": "phone"}]
    add_rule(rt, "both", fields, match="all")
    first = lead(rt, "Acme", phone="13800138000")
    assert lead(rt, "acme", phone="13900139000")["name"] == "acme"
    assert lead(rt, "Zenith", phone="+86 138 0013 8000")["name"] == "Zenith"
    with pytest.raises(ValidationFailed) as error:
        lead(rt, "ACME", phone="0086 13800138000")
    assert error.value.errors[0].ctx["matches"] == [{"id": first["id"], "owner": None, "visible": True, "score": 1.0}]

    rt.metadata.update_automation(S, "lead", "both", {"settings": {"fields": fields, "action": "block", "match": "any"}})
    with pytest.raises(ValidationFailed) as error:
        lead(rt, "Other", phone="13800138000")
    assert sorted(m["id"] for m in error.value.errors[0].ctx["matches"]) == sorted(
        r["id"] for r in rt.records.every(S, "lead", filter={"name": {"in": ["Acme", "Zenith"]}}))
    assert lead(rt, "Nobody", phone="12345")["name"] == "Nobody"
    assert lead(rt, "No phone")["name"] == "No phone"


def test_a_rule_checks_only_records_its_condition_holds_for(rt):
    add_rule(rt, condition='record.city == "Shanghai"')
    lead(rt, "Acme", city="Beijing")
    assert lead(rt, "acme", city="Beijing")["city"] == "Beijing"
    with pytest.raises(ValidationFailed) as error:
        lead(rt, "ACME", city="Shanghai")
    assert len(error.value.errors[0].ctx["matches"]) == 2


def test_an_inactive_rule_checks_nothing_and_its_keys_are_rebuilt_when_activated(rt):
    add_rule(rt)
    rt.metadata.update_automation(S, "lead", "same_name", {"active": False})
    first = lead(rt, "Acme")
    assert lead(rt, "acme")["name"] == "acme"
    rt.metadata.update_automation(S, "lead", "same_name", {"active": True})
    with pytest.raises(ValidationFailed) as error:
        lead(rt, "ACME")
    assert len(error.value.errors[0].ctx["matches"]) == 2
    assert first["id"] in [m["id"] for m in error.value.errors[0].ctx["matches"]]


# -- what a caller learns -------------------------------------------------------------------------
def test_a_caller_who_cannot_read_the_match_learns_only_its_owner(rt, org):
    add_rule(rt, action="warn")
    anns = lead(rt, "Acme", org.ann, phone="13800138000")
    with pytest.raises(ValidationFailed) as error:
        lead(rt, "ACME", org.bob)
    problem = error.value.errors[0]
    assert problem.ctx["matches"] == [{"id": None, "owner": "ann", "visible": False, "score": 1.0}]
    assert "owned by ann" in problem.message
    assert anns["id"] not in repr(error.value.as_dict()) and "13800138000" not in repr(error.value.as_dict())

    with pytest.raises(ValidationFailed) as error:
        lead(rt, "acme", org.cat)
    assert error.value.errors[0].ctx["matches"] == [{"id": anns["id"], "owner": "ann", "visible": True, "score": 1.0}]

    found = rt.duplicates.duplicates(org.bob, "lead", values={"name": "acme"})
    assert found == [{"record_id": None, "visible": False, "record": None, "owner": {"id": org.ann.id, "name": "ann"},
                      "rule": "same_name", "score": 1.0, "fields": ["name"]}]
    seen = rt.duplicates.duplicates(org.cat, "lead", values={"name": "acme"})
    assert seen[0]["record_id"] == anns["id"] and seen[0]["record"]["phone"] == "13800138000"


# -- settings -------------------------------------------------------------------------------------
def test_bad_settings_are_refused_with_every_problem_and_nothing_is_saved(rt):
    with pytest.raises(InvalidDefinition) as error:
        add_rule(rt, "bad", [{"field": "nothing", "method": "exact"}, {"field": "budget", "method": "normalized"},
                             {"field": "name", "method": "fuzzy", "threshold": 0}, {"field": "email", "method": "phone"},
                             {"field": "name", "method": "exact", "threshold": 0.5, "weight": 2}],
                 action="delete", match="most", condition="record.nme ==", colour="red")
    assert refusal(error) == [
        ("UNKNOWN_FIELD", "settings.colour"), ("INVALID_VALUE", "settings.match"),
        ("UNKNOWN_FIELD", "settings.fields.0.field"), ("INVALID_FIELD_TYPE", "settings.fields.1.field"),
        ("OUT_OF_RANGE", "settings.fields.2.threshold"), ("INVALID_FIELD_TYPE", "settings.fields.3.field"),
        ("UNKNOWN_FIELD", "settings.fields.4.weight"), ("NOT_ALLOWED", "settings.fields.4.threshold"),
        ("INVALID_VALUE", "settings.action"), ("SYNTAX_ERROR", "settings.condition")]
    with pytest.raises(InvalidDefinition) as error:
        rt.metadata.create_automation(S, "lead", {"api_name": "empty", "kind": "duplicate_rule", "label": "Empty",
                                                  "settings": {"fields": [], "message": ""}})
    assert refusal(error) == [("INVALID_VALUE", "settings.fields"), ("REQUIRED", "settings.action"), ("INVALID_VALUE", "settings.message")]
    with pytest.raises(InvalidDefinition) as error:
        add_rule(rt, "twice", [{"field": "name", "method": "fuzzy", "threshold": 1.5}, {"field": "name", "method": "fuzzy"}],
                 condition="record.nothing == 1")
    assert refusal(error) == [("OUT_OF_RANGE", "settings.fields.0.threshold"), ("DUPLICATE", "settings.fields.1"),
                              ("UNKNOWN_FIELD", "settings.condition")]
    assert rt.catalog().object("lead").automations == ()
    assert key_rows(rt) == 0

    add_rule(rt)
    with pytest.raises(InvalidDefinition) as error:
        rt.metadata.update_automation(S, "lead", "same_name", {"settings": {"fields": [{"field": "name", "method": "fuzzy", "threshold": "high"}],
                                                                            "action": "block"}})
    assert refusal(error) == [("OUT_OF_RANGE", "settings.fields.0.threshold")]
    assert rt.catalog().object("lead").automations[0].settings["fields"][0]["method"] == "normalized"


def test_a_compared_field_cannot_be_deleted_and_its_keys_go_with_it(rt, org):
    add_rule(rt)
    lead(rt, "Acme")
    with pytest.raises(InUse) as error:
        rt.metadata.delete_field(S, "lead", "name")
    assert error.value.ctx["used_by"] == ["automation 'same_name'"]
    assert key_rows(rt) == 1
    rt.metadata.delete_automation(S, "lead", "same_name")
    rt.metadata.delete_field(S, "lead", "name")
    assert key_rows(rt) == 0
    add_rule(rt, "emails", [{"field": "email", "method": "exact"}], condition='record.city != ""')
    with pytest.raises(InUse) as error:
        rt.metadata.delete_field(S, "lead", "city")
    assert error.value.ctx["used_by"] == ["automation 'emails'"]
    with pytest.raises(Forbidden):
        rt.metadata.create_automation(org.ann, "lead", {"api_name": "mine", "kind": "duplicate_rule", "label": "Mine",
                                                        "settings": {"fields": [{"field": "city", "method": "exact"}], "action": "warn"}})


# -- the query ------------------------------------------------------------------------------------
def test_the_query_ranks_by_score_and_refuses_records_the_caller_cannot_read(rt, org):
    add_rule(rt, "fuzzy", [{"field": "name", "method": "fuzzy", "threshold": 0.4}], action="warn")
    add_rule(rt, "phones", [{"field": "phone", "method": "phone"}], action="warn")
    subject = rt.records.create(org.ann, "lead", {"name": "Acme Trading", "phone": "13800138000"}, acknowledge=["POSSIBLE_DUPLICATE"])
    close = rt.records.create(org.ann, "lead", {"name": "Acme Tradin"}, acknowledge=["POSSIBLE_DUPLICATE"])
    far = rt.records.create(org.ann, "lead", {"name": "Acme Co"}, acknowledge=["POSSIBLE_DUPLICATE"])
    same_phone = rt.records.create(org.cat, "lead", {"name": "Zenith", "phone": "+86 13800138000"}, acknowledge=["POSSIBLE_DUPLICATE"])

    found = rt.duplicates.duplicates(org.ann, "lead", subject["id"])
    assert [(m["rule"], m["record_id"] or m["owner"]["name"]) for m in found] == [
        ("phones", "cat"), ("fuzzy", close["id"]), ("fuzzy", far["id"])]
    assert [m["score"] for m in found] == sorted((m["score"] for m in found), reverse=True)
    assert found[0]["visible"] is False and found[1]["record"]["name"] == "Acme Tradin"
    assert [m["record_id"] for m in rt.duplicates.duplicates(org.cat, "lead", subject["id"], first=1)] == [same_phone["id"]]
    assert rt.duplicates.duplicates(org.ann, "lead", subject["id"], values={"name": "Unrelated", "phone": None}) == []

    with pytest.raises(NotFound):
        rt.duplicates.duplicates(org.bob, "lead", subject["id"])
    with pytest.raises(NotFound):
        rt.duplicates.duplicates(org.ann, "lead", "00000000-0000-4000-8000-00000000abcd")
    with pytest.raises(NotFound):
        rt.duplicates.duplicates(org.ann, "nothing", values={"name": "x"})
    with pytest.raises(ValidationFailed) as error:
        rt.duplicates.duplicates(org.ann, "lead", first=0, values={"nme": "x"})
    assert refusal(error) == [("OUT_OF_RANGE", "first"), ("UNKNOWN_FIELD", "values.nme")]
    with pytest.raises(ValidationFailed) as error:
        rt.duplicates.duplicates(org.ann, "lead")
    assert refusal(error) == [("REQUIRED", "id")]


# -- cost -----------------------------------------------------------------------------------------
def test_the_check_costs_the_same_statements_with_5_or_500_records(rt, org):
    def statements(call) -> int:
        seen = []

        def count(*_args):
            seen.append(1)

        event.listen(rt.engine, "before_cursor_execute", count)
        try:
            call()
        finally:
            event.remove(rt.engine, "before_cursor_execute", count)
        return len(seen)

    def refused():
        with pytest.raises(ValidationFailed):
            rt.records.create(org.cat, "lead", {"name": "Lead 00001", "phone": "13800138000"})

    fresh = iter(range(100))

    def accepted():
        number = next(fresh)
        rt.records.create(org.cat, "lead", {"name": f"Unique {number}", "phone": f"1390000{number:04}"})

    rt.records.bulk_create(S, "lead", [{"name": f"Lead {i:05}", "phone": "13800138000", "owner_id": org.ann.id} for i in range(5)])
    add_rule(rt, "fuzzy", [{"field": "name", "method": "fuzzy", "threshold": 0.7}, {"field": "phone", "method": "phone"}], match="all")
    add_rule(rt, "names", [{"field": "name", "method": "normalized"}, {"field": "phone", "method": "phone"}], match="any", action="warn")
    refused(), accepted()
    small = (statements(refused), statements(accepted))

    rt.metadata.delete_automation(S, "lead", "fuzzy")
    rt.metadata.delete_automation(S, "lead", "names")
    rt.records.bulk_create(S, "lead", [{"name": f"Lead {i:05}", "phone": "13800138000", "owner_id": org.ann.id} for i in range(5, 500)])
    add_rule(rt, "fuzzy", [{"field": "name", "method": "fuzzy", "threshold": 0.7}, {"field": "phone", "method": "phone"}], match="all")
    add_rule(rt, "names", [{"field": "name", "method": "normalized"}, {"field": "phone", "method": "phone"}], match="any", action="warn")
    with pytest.raises(ValidationFailed) as error:
        rt.records.create(org.cat, "lead", {"name": "Lead 00499", "phone": "13800138000"})
    assert [e.code for e in error.value.errors] == ["DUPLICATE", "POSSIBLE_DUPLICATE"]
    assert error.value.errors[0].ctx["matches"][0]["score"] == 1.0
    assert len(error.value.errors[0].ctx["matches"]) == 5
    refused(), accepted()
    large = (statements(refused), statements(accepted))
    assert large == small
    assert small[0] <= 30


# -- racing writers -------------------------------------------------------------------------------
@pytest.mark.parametrize("method, spellings", [
    ("normalized", ["Acme Trading", "ACME  trading", "Ａｃｍｅ Trading", "acme-trading", "Acme Trading.", "acme trading"]),
    ("fuzzy", ["Acme Trading Co", "Acme Trading Co.", "Acme Tradng Co", "ACME  trading Co", "acme trading co", "Acme Trading Co!"]),
])
def test_racing_writers_of_one_duplicate_have_exactly_one_winner_on_postgresql(postgres_url, method, spellings):
    import threading

    rt = Runtime.connect(postgres_url).install()
    try:
        rt.metadata.create_objects(S, [LEAD])
        add_rule(rt, fields=[{"field": "name", "method": method, **({"threshold": 0.8} if method == "fuzzy" else {})}])
        for company in ("Acme Trading", "Zenith Optics", "Quokka Mining"):
            barrier = threading.Barrier(len(spellings))
            outcomes: list[str] = []

            def create(name: str) -> None:
                barrier.wait()
                try:
                    lead(rt, name.replace("Acme Trading", company).replace("ACME  trading", company.upper())
                         .replace("acme trading", company.lower()))
                    outcomes.append("created")
                except ValidationFailed as failed:
                    outcomes.append(failed.errors[0].code)

            threads = [threading.Thread(target=create, args=(name,)) for name in spellings]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sorted(outcomes) == ["DUPLICATE"] * (len(spellings) - 1) + ["created"]
        assert len(leads(rt)) == 3
    finally:
        rt.close()
