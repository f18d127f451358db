"""Automations through GraphQL, on SQLite and PostgreSQL: created with their settings as JSON,
problems reported at the input's paths with the settings' own keys, listed under the object, and
a warning a step raises accepted through the record mutations' ``acknowledge`` argument."""
from __future__ import annotations

import pytest
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.errors import FieldError

CREATE = """mutation($input: AutomationInput!) { createAutomation(object: "ticket", input: $input) {
  apiName kind label settings active position } }"""
LIST = '{ object(apiName: "ticket") { automations(kind: "flag") { apiName settings } } }'
CREATE_TICKET = """mutation($input: TicketCreateInput!, $ack: [String!]) { createTicket(input: $input, acknowledge: $ack) { id tag } }"""


class Flag:
    """Refuses (FLAG_WARNING) a ticket whose field ``settings.field`` is empty, unless acknowledged."""

    kind = "flag"

    def check(self, check):
        if check.obj.field(check.settings.get("field") or "") is None:
            return [FieldError("UNKNOWN_FIELD", "field", "no such field")]
        return []

    def fields_used(self, obj, settings):
        return {settings["field"]}

    def before_save(self, context, automations):
        field = automations[0].settings["field"]
        if not context.record.get(field) and "FLAG_WARNING" not in context.acknowledged:
            return [FieldError("FLAG_WARNING", field, "is empty")]
        return []


@pytest.fixture
def ticketed(api):
    api.runtime.metadata.create_objects(S, [{
        "api_name": "ticket", "label": "Ticket", "plural_api_name": "tickets", "plural_label": "Tickets",
        "fields": [{"api_name": "title", "label": "Title", "type": "text"}, {"api_name": "tag", "label": "Tag", "type": "text"}]}])
    api.runtime.metadata.automation_kinds.register(Flag())
    return api


def test_automations_are_created_listed_and_their_problems_named_by_input_path(ticketed):
    _, errors = ticketed.errors(CREATE, {"input": {"apiName": "flag_tag", "kind": "flag", "label": "Flag", "settings": {"field": "colour"}}})
    assert errors[0]["extensions"]["code"] == "INVALID_DEFINITION"
    assert [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]] == [("UNKNOWN_FIELD", "input.settings.field")]
    created = ticketed.data(CREATE, {"input": {"apiName": "flag_tag", "kind": "flag", "label": "Flag", "settings": {"field": "tag"}}})
    assert created["createAutomation"] == {"apiName": "flag_tag", "kind": "flag", "label": "Flag", "settings": {"field": "tag"},
                                           "active": True, "position": 0}
    assert ticketed.data(LIST)["object"]["automations"] == [{"apiName": "flag_tag", "settings": {"field": "tag"}}]


def test_a_warning_is_refused_until_acknowledged(ticketed):
    ticketed.data(CREATE, {"input": {"apiName": "flag_tag", "kind": "flag", "label": "Flag", "settings": {"field": "tag"}}})
    status, errors = ticketed.errors(CREATE_TICKET, {"input": {"title": "Printer"}})
    assert status == 200
    assert [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]] == [("FLAG_WARNING", "input.tag")]
    assert ticketed.runtime.records.query(S, "ticket").records == []
    created = ticketed.data(CREATE_TICKET, {"input": {"title": "Printer"}, "ack": ["FLAG_WARNING"]})["createTicket"]
    assert created["tag"] is None and created["id"]
