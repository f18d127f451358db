"""Automations as metadata, on SQLite and PostgreSQL: saved only when their kind finds no problem
(each at its path inside the settings), listed in the Catalog in order, changed and deleted like
other settings, guarding the fields they use; and their steps joining every record write in its
transaction (a guard, a before-save step that may change the record or refuse it unless the
caller acknowledged the warning, an after-save step). A kind made for these tests stands for the
platform's own ones, which have tests of their own."""
from __future__ import annotations

import pytest
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.errors import Conflict, FieldError, Forbidden, InUse, InvalidDefinition, NotFound, ValidationFailed
from lowcode.runtime import Runtime

OBJECT = {"api_name": "ticket", "label": "Ticket", "plural_api_name": "tickets", "plural_label": "Tickets",
          "fields": [{"api_name": "title", "label": "Title", "type": "text"},
                     {"api_name": "tag", "label": "Tag", "type": "text"}]}


class Stamp:
    """Sets ``settings.field`` to ``settings.value`` when empty; refuses (STAMP_WARNING, unless
    acknowledged) a record whose field says ``warn``; keeps records whose field says ``keep`` from
    being deleted; remembers what it saw after each save."""

    kind = "stamp"

    def __init__(self):
        self.saved: list[tuple[str, bool]] = []

    def check(self, check):
        problems = []
        field = check.settings.get("field")
        if check.obj.field(field or "") is None:
            problems.append(FieldError("UNKNOWN_FIELD", "field", f"'{check.obj.api_name}' has no field '{field}'"))
        if not isinstance(check.settings.get("value"), str):
            problems.append(FieldError("INVALID_TYPE", "value", "must be text"))
        return problems

    def fields_used(self, obj, settings):
        return {settings["field"]}

    def guard(self, context, automations, action):
        field = automations[0].settings["field"]
        if action == "delete" and context.record.get(field) == "keep":
            raise Conflict("This ticket is kept.", field=field)

    def before_save(self, context, automations):
        field, value = automations[0].settings["field"], automations[0].settings["value"]
        if not context.record.get(field):
            context.record[field] = value
        if context.record.get(field) == "warn" and "STAMP_WARNING" not in context.acknowledged:
            return [FieldError("STAMP_WARNING", field, "says warn")]
        return []

    def after_save(self, context, automations):
        self.saved.append((context.record["id"], context.old is None))


@pytest.fixture
def rt(database_url):
    runtime = Runtime.connect(database_url).install()
    runtime.metadata.create_objects(S, [OBJECT])
    yield runtime
    runtime.close()


@pytest.fixture
def stamp(rt):
    return rt.metadata.automation_kinds.register(Stamp())


def automation(**changes):
    return {"api_name": "stamp_tag", "kind": "stamp", "label": "Stamp the tag", "settings": {"field": "tag", "value": "new"}, **changes}


def problems(caught):
    return [(e.code, e.field) for e in caught.value.errors]


def test_an_unknown_kind_or_bad_settings_are_refused_at_their_paths_and_nothing_is_saved(rt, stamp):
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_automation(S, "ticket", automation(kind="teleport"))
    assert problems(caught) == [("UNKNOWN_KIND", "kind")]
    assert "stamp" in caught.value.errors[0].message
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_automation(S, "ticket", automation(settings={"field": "colour", "value": 3}))
    assert problems(caught) == [("UNKNOWN_FIELD", "settings.field"), ("INVALID_TYPE", "settings.value")]
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_automation(S, "ticket", {"kind": "stamp", "settings": "all of them"})
    assert {field for _, field in problems(caught)} == {"api_name", "label", "settings"}
    assert rt.catalog().object("ticket").automations == ()


def test_automations_are_listed_in_order_changed_and_deleted(rt, stamp):
    first = rt.metadata.create_automation(S, "ticket", automation())
    second = rt.metadata.create_automation(S, "ticket", automation(api_name="stamp_title", settings={"field": "title", "value": "?"}))
    assert (first.position, second.position) == (0, 1)
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_automation(S, "ticket", automation())
    assert problems(caught) == [("DUPLICATE", "api_name")]
    changed = rt.metadata.update_automation(S, "ticket", "stamp_tag", {"label": "Tag it", "active": False, "position": 5})
    assert (changed.label, changed.active, changed.kind, dict(changed.settings)) == ("Tag it", False, "stamp", {"field": "tag", "value": "new"})
    assert [a.api_name for a in rt.catalog().object("ticket").automations_of("stamp")] == ["stamp_title"]
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.update_automation(S, "ticket", "stamp_tag", {"kind": "other"})
    assert problems(caught) == [("UNKNOWN_FIELD", "kind")]
    with pytest.raises(InvalidDefinition):
        rt.metadata.update_automation(S, "ticket", "stamp_tag", {"settings": {"field": "nope", "value": "x"}})
    assert [(a.api_name, a.settings["field"]) for a in rt.catalog().object("ticket").automations] == [
        ("stamp_title", "title"), ("stamp_tag", "tag")]
    rt.metadata.delete_automation(S, "ticket", "stamp_tag")
    assert [a.api_name for a in rt.catalog().object("ticket").automations] == ["stamp_title"]
    with pytest.raises(NotFound):
        rt.metadata.delete_automation(S, "ticket", "stamp_tag")


def test_only_administrators_configure_automations(rt, stamp):
    user = rt.security.create_user(S, {"username": "ann"})
    ann = rt.security.authenticate(rt.security.issue_token(S, "tests", user_id=user["id"])["token"])
    with pytest.raises(Forbidden):
        rt.metadata.create_automation(ann, "ticket", automation())
    assert rt.catalog().object("ticket").automations == ()


def test_a_field_an_automation_uses_cannot_be_deleted(rt, stamp):
    rt.metadata.create_automation(S, "ticket", automation())
    with pytest.raises(InUse) as caught:
        rt.metadata.delete_field(S, "ticket", "tag")
    assert "automation 'stamp_tag'" in caught.value.message
    rt.metadata.delete_automation(S, "ticket", "stamp_tag")
    rt.metadata.delete_field(S, "ticket", "tag")


def test_the_steps_join_every_write_of_the_object(rt, stamp):
    created = rt.records.create(S, "ticket", {"title": "Printer"})
    assert created["tag"] is None and stamp.saved == []
    rt.metadata.create_automation(S, "ticket", automation())
    created = rt.records.create(S, "ticket", {"title": "Scanner"})
    assert created["tag"] == "new" and stamp.saved == [(created["id"], True)]
    rt.records.update(S, "ticket", created["id"], {"title": "Scanner 2"})
    assert stamp.saved[-1] == (created["id"], False)

    with pytest.raises(ValidationFailed) as caught:
        rt.records.bulk_create(S, "ticket", [{"title": "A"}, {"title": "B", "tag": "warn"}])
    assert problems(caught) == [("STAMP_WARNING", "1.tag")]
    assert rt.records.query(S, "ticket", filter={"title": {"eq": "A"}}).records == []
    acknowledged = rt.records.create(S, "ticket", {"title": "B", "tag": "warn"}, acknowledge=["STAMP_WARNING"])
    assert acknowledged["tag"] == "warn"
    with pytest.raises(ValidationFailed):
        rt.records.update(S, "ticket", created["id"], {"tag": "warn"})
    rt.records.update(S, "ticket", created["id"], {"tag": "keep"}, acknowledge=["STAMP_WARNING"])

    with pytest.raises(Conflict):
        rt.records.delete(S, "ticket", created["id"])
    assert rt.records.get(S, "ticket", created["id"])["deleted_at"] is None
    rt.metadata.update_automation(S, "ticket", "stamp_tag", {"active": False})
    rt.records.delete(S, "ticket", created["id"])
    assert rt.records.get(S, "ticket", created["id"], deleted=True)["deleted_at"] is not None
