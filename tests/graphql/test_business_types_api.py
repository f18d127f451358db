"""Business types and stages through the GraphQL endpoint, over HTTP, on SQLite and PostgreSQL.

The object: ``opportunity`` with two business types. A product sale moves through first contact
(10 %, 5 days), needs confirmed (30 %, 10 days, needs a next step), solution (50 %, 14 days),
quote and negotiation (70 %, 7 days, needs an amount and a close date), won (100 %) and lost (0 %);
a project sale through its own six stages and takes other lead sources. The metadata API defines
them (administrators only, every refused change leaves the metadata version where it was); the
record API exposes each record's type and stage as enums, the values computed from its stage
(probability, category, days in the stage, when it is due), its stage history and the records
running out of time in their stage.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from graphql import get_named_type
from lowcode.graphql.schema import build_schema
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.catalog import Catalog
from lowcode.metadata.definitions import BusinessTypeDef, FieldDef, ObjectDef, StageDef
from sqlalchemy import update

PASSWORD = "a long password 1"

OPPORTUNITY = {"apiName": "opportunity", "label": "Opportunity", "pluralApiName": "opportunities", "pluralLabel": "Opportunities",
               "fields": [
                   {"apiName": "name", "label": "Name", "type": "TEXT", "required": True},
                   {"apiName": "amount", "label": "Amount", "type": "DECIMAL", "options": {"precision": 12, "scale": 2}},
                   {"apiName": "close_date", "label": "Close date", "type": "DATE"},
                   {"apiName": "next_step", "label": "Next step", "type": "TEXT"},
                   {"apiName": "source", "label": "Lead source", "type": "PICKLIST", "options": {"values": [
                       {"apiName": "web", "label": "Web"}, {"apiName": "partner", "label": "Partner"},
                       {"apiName": "trade_fair", "label": "Trade fair"}, {"apiName": "tender", "label": "Tender"}]}},
               ]}


def stage(api_name, label, probability, category="OPEN", expected_days=None, required_fields=()):
    return {"apiName": api_name, "label": label, "probability": probability, "category": category,
            "expectedDays": expected_days, "requiredFields": list(required_fields)}


PRODUCT_SALE = {"apiName": "product_sale", "label": "Product sale", "description": "Licences and hardware",
                "picklists": [{"field": "source", "values": ["web", "partner", "trade_fair"]}],
                "stages": [
                    stage("first_contact", "First contact", 10, expected_days=5),
                    stage("needs_confirmed", "Needs confirmed", 30, expected_days=10, required_fields=["next_step"]),
                    stage("solution", "Solution", 50, expected_days=14),
                    stage("quote_negotiation", "Quote and negotiation", 70, expected_days=7, required_fields=["amount", "close_date"]),
                    stage("won", "Won", 100, "WON"),
                    stage("lost", "Lost", 0, "LOST"),
                ]}
PROJECT_SALE = {"apiName": "project_sale", "label": "Project sale",
                "picklists": [{"field": "source", "values": ["partner", "tender"]}],
                "stages": [
                    stage("qualification", "Qualification", 10, expected_days=20),
                    stage("scoping", "Scoping", 25, expected_days=30, required_fields=["next_step"]),
                    stage("proposal", "Proposal", 40, required_fields=["amount"]),
                    stage("contract_negotiation", "Contract negotiation", 75, expected_days=15, required_fields=["close_date"]),
                    stage("project_won", "Project won", 100, "WON"),
                    stage("project_lost", "Project lost", 0, "LOST"),
                ]}
PRODUCT_STAGES = ["FIRST_CONTACT", "NEEDS_CONFIRMED", "SOLUTION", "QUOTE_NEGOTIATION", "WON", "LOST"]
PROJECT_STAGES = ["QUALIFICATION", "SCOPING", "PROPOSAL", "CONTRACT_NEGOTIATION", "PROJECT_WON", "PROJECT_LOST"]

STAGE_FIELDS = "apiName label probability category expectedDays requiredFields graphqlName"
BUSINESS_TYPE = f"apiName label description active default graphqlName picklists {{ field values }} stages {{ {STAGE_FIELDS} }}"
CREATE_OBJECT = "mutation($i: ObjectInput!) { createObject(input: $i) { apiName } }"
CREATE_FIELD = "mutation($o: String!, $i: FieldInput!) { createField(object: $o, input: $i) { apiName } }"
CREATE_TYPE = f"mutation($o: String!, $i: BusinessTypeInput!) {{ createBusinessType(object: $o, input: $i) {{ {BUSINESS_TYPE} }} }}"
UPDATE_TYPE = (f"mutation($o: String!, $a: String!, $i: BusinessTypeUpdateInput!) "
               f"{{ updateBusinessType(object: $o, apiName: $a, input: $i) {{ {BUSINESS_TYPE} }} }}")
DELETE_TYPE = "mutation($o: String!, $a: String!) { deleteBusinessType(object: $o, apiName: $a) }"
TYPES = f"{{ metadataVersion object(apiName: \"opportunity\") {{ businessTypes {{ {BUSINESS_TYPE} }} }} }}"

RECORD = "id name businessType stage source"
CREATE = f"mutation($i: OpportunityCreateInput!) {{ createOpportunity(input: $i) {{ {RECORD} }} }}"
CREATE_MANY = f"mutation($i: [OpportunityCreateInput!]!) {{ createOpportunities(inputs: $i) {{ {RECORD} }} }}"
UPDATE = f"mutation($id: ID!, $i: OpportunityUpdateInput!) {{ updateOpportunity(id: $id, input: $i) {{ {RECORD} version }} }}"
UPDATE_MANY = f"mutation($items: [OpportunityUpdateItem!]!) {{ updateOpportunities(items: $items) {{ {RECORD} }} }}"
GET = f"query($id: ID!) {{ opportunity(id: $id) {{ {RECORD} version }} }}"
COMPUTED = "name stage stageEnteredAt probability stageCategory daysInStage stageDueAt"
HISTORY = "stageHistory { stage businessType enteredAt enteredById leftAt leftById secondsInStage }"
DUE = ("query($d: Int, $f: OpportunityFilter, $first: Int, $after: String) { opportunitiesDueInStage(withinDays: $d, filter: $f, "
       "orderBy: [NAME_ASC], first: $first, after: $after) { totalCount nodes { name stage } pageInfo { hasNextPage endCursor } } }")


# -- helpers ------------------------------------------------------------------------------------
def setup(api) -> None:
    api.data(CREATE_OBJECT, {"i": OPPORTUNITY})
    api.data(CREATE_TYPE, {"o": "opportunity", "i": PRODUCT_SALE})
    api.data(CREATE_TYPE, {"o": "opportunity", "i": PROJECT_SALE})


def create(api, **values) -> dict:
    return api.data(CREATE, {"i": values})["createOpportunity"]


def move(api, record_id: str, **values) -> dict:
    return api.data(UPDATE, {"id": record_id, "i": values})["updateOpportunity"]


def refused(api, query: str, variables: dict, *, code: str = "VALIDATION_FAILED", token: str | None = None) -> dict:
    """The one error of a request that must fail at its root field (status 200, data null)."""
    status, body = api.post(query, variables, **({"token": token} if token else {}))
    assert status == 200 and body["data"] is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == code, error
    return error


def problems(error: dict) -> list[tuple[str, str, str]]:
    return [(p["code"], p["field"], p["message"]) for p in error["extensions"]["errors"]]


def names_of(api, query: str, variables: dict | None = None, *, key: str, field: str = "name") -> list:
    return [node[field] for node in api.data(query, variables)[key]["nodes"]]


def set_stage_entered_at(api, record_id: str, at: datetime) -> None:
    """Make time pass: the record entered its stage at ``at``."""
    records = api.runtime.catalog().table("opportunity")
    with api.runtime.engine.begin() as conn:
        result = conn.execute(update(records).where(records.c.id == record_id).values(stage_entered_at=at))
    assert result.rowcount == 1


def user_token(api, username: str, actions: list[str]) -> str:
    """A signed-in user whose only role grants ``actions`` on every opportunity."""
    sec = api.runtime.security
    unit = sec.create_unit(S, f"Unit of {username}")
    sec.create_role(S, f"role_{username}", f"Role of {username}")
    sec.set_object_grant(S, f"role_{username}", "opportunity", actions, "all", "all")
    user = sec.create_user(S, {"username": username}, PASSWORD)
    sec.add_membership(S, user["id"], unit["id"], f"role_{username}")
    return sec.issue_token(S, "test", user_id=user["id"])["token"]


def enum_values(api, name: str) -> list[tuple[str, bool]]:
    found = api.data("query($n: String!) { __type(name: $n) { enumValues(includeDeprecated: true) { name isDeprecated } } }",
                     {"n": name})["__type"]
    return [(v["name"], v["isDeprecated"]) for v in found["enumValues"]]


def selects(api) -> list[str]:
    """The queries of the last request (SQLite adds transaction statements of its own)."""
    return [s for s in api.statements if s.lstrip().upper().startswith("SELECT")]


def iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat()


# -- the metadata API ---------------------------------------------------------------------------
def test_business_types_and_stages_are_defined_and_read_through_the_metadata_api(api):
    api.data(CREATE_OBJECT, {"i": OPPORTUNITY})
    before = api.data("{ metadataVersion }")["metadataVersion"]

    created = api.data(CREATE_TYPE, {"o": "opportunity", "i": PRODUCT_SALE})["createBusinessType"]
    api.data(CREATE_TYPE, {"o": "opportunity", "i": PROJECT_SALE})

    product = {**PRODUCT_SALE, "active": True, "default": True, "graphqlName": "PRODUCT_SALE",
               "stages": [{**s, "graphqlName": s["apiName"].upper()} for s in PRODUCT_SALE["stages"]]}
    project = {**PROJECT_SALE, "description": "", "active": True, "default": False, "graphqlName": "PROJECT_SALE",
               "stages": [{**s, "graphqlName": s["apiName"].upper()} for s in PROJECT_SALE["stages"]]}
    assert created == product
    read = api.data(TYPES)
    assert read == {"metadataVersion": before + 2, "object": {"businessTypes": [product, project]}}
    changes = api.data('{ metadataChanges(object: "opportunity", limit: 2) { version action objectApiName } }')["metadataChanges"]
    assert sorted((c["version"], c["action"]) for c in changes) == [(before + 1, "create_business_type"),
                                                                     (before + 2, "create_business_type")]
    # Objects without business types have none.
    assert api.data('{ object(apiName: "user") { businessTypes { apiName } } }') == {"object": {"businessTypes": []}}


def test_updating_a_business_type_replaces_its_stages_and_changes_the_record_enums(api):
    setup(api)
    stages = [*PROJECT_SALE["stages"][:2], stage("design", "Design", 35, expected_days=12), *PROJECT_SALE["stages"][2:]]

    updated = api.data(UPDATE_TYPE, {"o": "opportunity", "a": "project_sale", "i": {
        "label": "Project business", "stages": stages, "default": True}})["updateBusinessType"]

    assert updated["label"] == "Project business" and updated["default"] is True
    assert [s["apiName"] for s in updated["stages"]] == [
        "qualification", "scoping", "design", "proposal", "contract_negotiation", "project_won", "project_lost"]
    assert updated["stages"][2] == {**stage("design", "Design", 35, expected_days=12), "graphqlName": "DESIGN"}
    assert updated["picklists"] == PROJECT_SALE["picklists"]
    types = api.data(TYPES)["object"]["businessTypes"]
    assert [(t["apiName"], t["default"]) for t in types] == [("product_sale", False), ("project_sale", True)]
    # The next request serves the new stage; new records take the new default type.
    assert [name for name, _ in enum_values(api, "OpportunityStage")] == [
        *PRODUCT_STAGES, "QUALIFICATION", "SCOPING", "DESIGN", "PROPOSAL", "CONTRACT_NEGOTIATION", "PROJECT_WON", "PROJECT_LOST"]
    record = create(api, name="Bridge", source="TENDER")
    assert (record["businessType"], record["stage"]) == ("PROJECT_SALE", "QUALIFICATION")
    assert move(api, record["id"], stage="DESIGN", nextStep="Site visit")["stage"] == "DESIGN"


def test_an_inactive_business_type_is_deprecated_and_refused_for_new_records(api):
    setup(api)
    old = create(api, name="Old", businessType="PROJECT_SALE")
    api.data(UPDATE_TYPE, {"o": "opportunity", "a": "project_sale", "i": {"active": False}})

    assert enum_values(api, "OpportunityBusinessType") == [("PRODUCT_SALE", False), ("PROJECT_SALE", True)]
    error = refused(api, CREATE, {"i": {"name": "New", "businessType": "PROJECT_SALE"}})
    assert problems(error) == [("INACTIVE", "input.businessType", "'project_sale' is no longer in use for new records")]
    # Its records keep it and still move through its stages.
    assert move(api, old["id"], stage="SCOPING", nextStep="Call")["businessType"] == "PROJECT_SALE"


def test_deleting_a_business_type(api):
    setup(api)
    create(api, name="Kept", businessType="PROJECT_SALE")
    before = api.data(TYPES)

    error = refused(api, DELETE_TYPE, {"o": "opportunity", "a": "project_sale"}, code="IN_USE")
    assert (error["message"], error["extensions"]["field"]) == (
        "1 record(s) are of this business type; change or delete them first.", "apiName")
    error = refused(api, DELETE_TYPE, {"o": "opportunity", "a": "product_sale"}, code="IN_USE")
    assert error["message"] == "This is the default business type; make another one the default first."
    error = refused(api, DELETE_TYPE, {"o": "opportunity", "a": "retail"}, code="NOT_FOUND")
    assert (error["message"], error["extensions"]["field"]) == ("'opportunity' has no business type 'retail'.", "apiName")
    assert api.data(TYPES) == before

    api.data(CREATE_TYPE, {"o": "opportunity", "i": {"apiName": "service", "label": "Service"}})
    assert api.data(DELETE_TYPE, {"o": "opportunity", "a": "service"}) == {"deleteBusinessType": "service"}
    after = api.data(TYPES)
    assert after == {**before, "metadataVersion": before["metadataVersion"] + 2}


def test_invalid_configuration_is_refused_with_input_paths_and_nothing_changes(api):
    setup(api)
    before = api.data(TYPES)

    def invalid(query, variables):
        error = refused(api, query, variables, code="INVALID_DEFINITION")
        assert api.data(TYPES) == before
        return problems(error)

    # A stage belongs to one business type.
    assert invalid(CREATE_TYPE, {"o": "opportunity", "i": {"apiName": "retail", "label": "Retail", "stages": [
        stage("walk_in", "Walk in", 20), stage("won", "Won", 100, "WON")]}}) == [
        ("DUPLICATE_STAGE", "input.stages.1.apiName", "'won' already belongs to business type 'product_sale'; a stage belongs to one type")]
    # Twice in one type.
    assert invalid(CREATE_TYPE, {"o": "opportunity", "i": {"apiName": "retail", "label": "Retail", "stages": [
        stage("walk_in", "Walk in", 20), stage("walk_in", "Walk in again", 30)]}}) == [
        ("INVALID", "input.stages.1.apiName", "'walk_in' is already stage 0 of this type")]
    # A probability beyond 100.
    assert invalid(CREATE_TYPE, {"o": "opportunity", "i": {"apiName": "retail", "label": "Retail", "stages": [
        stage("walk_in", "Walk in", 20), stage("offer", "Offer", 140)]}}) == [
        ("INVALID", "input.stages.1.probability", "must be from 0 to 100")]
    # Unknown fields and values, named by their place in the input.
    assert invalid(CREATE_TYPE, {"o": "opportunity", "i": {"apiName": "retail", "label": "Retail",
                                                           "picklists": [{"field": "source", "values": ["web", "radio"]},
                                                                         {"field": "region", "values": ["north"]}],
                                                           "stages": [stage("walk_in", "Walk in", 20, required_fields=["budget"])]}}) == [
        ("UNKNOWN_VALUE", "input.picklists.0.values.1", "'radio' is not a value of 'source'"),
        ("UNKNOWN_FIELD", "input.picklists.1.field", "'opportunity' has no field named 'region'"),
        ("UNKNOWN_FIELD", "input.stages.0.requiredFields.0", "'opportunity' has no field named 'budget'"),
    ]
    assert invalid(CREATE_TYPE, {"o": "opportunity", "i": {"apiName": "retail", "label": "Retail", "picklists": [
        {"field": "source", "values": ["web"]}, {"field": "source", "values": ["tender"]}]}}) == [
        ("DUPLICATE", "input.picklists.1.field", "'source' is already item 0 of the list")]
    assert invalid(CREATE_TYPE, {"o": "opportunity", "i": {"apiName": "retail", "label": "Retail", "picklists": [
        {"field": "name", "values": ["x"]}], "stages": [stage("walk_in", "Walk in", 20, required_fields=["stage_entered_at"])]}}) == [
        ("NOT_A_PICKLIST", "input.picklists.0.field", "'name' is a text field, not a picklist"),
        ("INVALID_VALUE", "input.stages.0.requiredFields.0", "'stage_entered_at' is kept by the platform"),
    ]
    assert invalid(CREATE_TYPE, {"o": "opportunity", "i": {"apiName": "product_sale", "label": "Again"}}) == [
        ("DUPLICATE", "input.apiName", "'opportunity' already has a business type 'product_sale'")]
    # Updates likewise; the old stages stay.
    assert invalid(UPDATE_TYPE, {"o": "opportunity", "a": "project_sale", "i": {"stages": [
        stage("qualification", "Qualification", 10), stage("lost", "Lost", 0, "LOST"), stage("deal", "Deal", 101, "WON")]}}) == [
        ("INVALID", "input.stages.2.probability", "must be from 0 to 100")]
    assert invalid(UPDATE_TYPE, {"o": "opportunity", "a": "project_sale", "i": {"stages": [
        stage("qualification", "Qualification", 10), stage("lost", "Lost", 0, "LOST")]}}) == [
        ("DUPLICATE_STAGE", "input.stages.1.apiName", "'lost' already belongs to business type 'product_sale'; a stage belongs to one type")]
    assert invalid(UPDATE_TYPE, {"o": "opportunity", "a": "product_sale", "i": {"default": False}}) == [
        ("INVALID_VALUE", "input.default", "make another business type the default instead")]


def test_stages_records_are_in_cannot_be_removed(api):
    setup(api)
    create(api, name="Busy", businessType="PROJECT_SALE", stage="SCOPING", nextStep="Call")
    before = api.data(TYPES)

    error = refused(api, UPDATE_TYPE, {"o": "opportunity", "a": "project_sale", "i": {"stages": [
        stage("qualification", "Qualification", 10)]}}, code="IN_USE")

    assert (error["message"], error["extensions"]["field"]) == (
        "1 record(s) are in the stage(s) scoping, proposal, contract_negotiation, project_won, project_lost; "
        "move them to other stages first.", "input.stages")
    assert api.data(TYPES) == before


def test_only_administrators_change_business_types(api):
    setup(api)
    token = user_token(api, "ann", ["read", "create", "update", "reopen"])
    before = api.data(TYPES)

    for query, variables in [(CREATE_TYPE, {"o": "opportunity", "i": {"apiName": "retail", "label": "Retail"}}),
                             (UPDATE_TYPE, {"o": "opportunity", "a": "project_sale", "i": {"label": "Projects"}}),
                             (DELETE_TYPE, {"o": "opportunity", "a": "project_sale"})]:
        error = refused(api, query, variables, code="FORBIDDEN", token=token)
        assert error["message"] == "Only administrators change objects and fields."
    assert api.data(TYPES) == before
    # Everyone reads them.
    assert api.data(TYPES, token=token) == before


# -- names in the schema ------------------------------------------------------------------------
def test_record_types_expose_business_types_and_stages_as_enums(api):
    setup(api)

    assert enum_values(api, "OpportunityBusinessType") == [("PRODUCT_SALE", False), ("PROJECT_SALE", False)]
    assert enum_values(api, "OpportunityStage") == [(s, False) for s in PRODUCT_STAGES + PROJECT_STAGES]
    assert enum_values(api, "StageCategory") == [("OPEN", False), ("WON", False), ("LOST", False)]

    def fields(type_name, kind="fields"):
        found = api.data("query($n: String!) { __type(name: $n) { fields { name type { kind name ofType { kind name ofType { name } } } } "
                         "inputFields { name type { kind name ofType { name } } } } }", {"n": type_name})["__type"]
        return {f["name"]: f["type"] for f in found[kind]}

    record = fields("Opportunity")
    assert record["businessType"] == {"kind": "ENUM", "name": "OpportunityBusinessType", "ofType": None}
    assert record["stage"] == {"kind": "ENUM", "name": "OpportunityStage", "ofType": None}
    assert record["stageEnteredAt"] == {"kind": "SCALAR", "name": "DateTime", "ofType": None}
    assert record["probability"] == {"kind": "SCALAR", "name": "Int", "ofType": None}
    assert record["stageCategory"] == {"kind": "ENUM", "name": "StageCategory", "ofType": None}
    assert record["daysInStage"] == {"kind": "SCALAR", "name": "Int", "ofType": None}
    assert record["stageDueAt"] == {"kind": "SCALAR", "name": "DateTime", "ofType": None}
    assert record["stageHistory"] == {"kind": "LIST", "name": None, "ofType": {
        "kind": "NON_NULL", "name": None, "ofType": {"name": "StageHistoryEntry"}}}
    for input_type in ("OpportunityCreateInput", "OpportunityUpdateInput"):
        inputs = fields(input_type, "inputFields")
        assert inputs["businessType"] == {"kind": "ENUM", "name": "OpportunityBusinessType", "ofType": None}
        assert inputs["stage"] == {"kind": "ENUM", "name": "OpportunityStage", "ofType": None}
        assert "probability" not in inputs and "stageEnteredAt" not in inputs
    filters = fields("OpportunityFilter", "inputFields")
    assert filters["stage"]["name"] == "OpportunityStageFilter"
    assert filters["businessType"]["name"] == "OpportunityBusinessTypeFilter"
    assert set(fields("OpportunityStageFilter", "inputFields")) == {"eq", "ne", "in", "notIn", "isNull"}
    order = [name for name, _ in enum_values(api, "OpportunityOrderBy")]
    assert {"STAGE_ASC", "STAGE_DESC", "BUSINESS_TYPE_ASC", "BUSINESS_TYPE_DESC"} <= set(order)
    groups = [name for name, _ in enum_values(api, "OpportunityGroupField")]
    assert {"STAGE", "BUSINESS_TYPE"} <= set(groups)
    query = api.data('{ __schema { queryType { fields { name args { name defaultValue } } } } }')["__schema"]["queryType"]["fields"]
    due = next(f for f in query if f["name"] == "opportunitiesDueInStage")
    assert [(a["name"], a["defaultValue"]) for a in due["args"]] == [
        ("withinDays", "0"), ("filter", None), ("orderBy", None), ("first", None), ("after", None)]
    # Objects without business types keep plain strings and no stage fields.
    user = fields("User")
    assert user["businessType"] == {"kind": "SCALAR", "name": "String", "ofType": None}
    assert "stage" not in user and "probability" not in user


def test_generated_names_that_would_collide_are_refused(api):
    setup(api)
    before = api.data("{ metadataVersion objects { apiName fields(includeSystem: true) { apiName } } }")

    def collision(query, variables, graphql_name, path="input.apiName"):
        error = refused(api, query, variables, code="INVALID_DEFINITION")
        [(code, field, message)] = problems(error)
        assert (code, field) == ("NAME_COLLISION", path), error
        assert graphql_name in error["extensions"]["errors"][0]["ctx"]["graphql_names"], error
        return message

    # The stage enum OpportunityStage (and its filter), the business type enum, the due query.
    assert collision(CREATE_OBJECT, {"i": {"apiName": "opportunity_stage", "label": "Stage"}}, "OpportunityStage") == (
        "the business types of object 'opportunity' and object 'opportunity_stage' would generate the same GraphQL type "
        "'OpportunityStage' (and 1 more GraphQL name)")
    collision(CREATE_OBJECT, {"i": {"apiName": "opportunity_business_type", "label": "Kind"}}, "OpportunityBusinessType")
    assert collision(CREATE_OBJECT, {"i": {"apiName": "lead", "label": "Lead", "pluralApiName": "opportunities_due_in_stage"}},
                     "opportunitiesDueInStage", "input.pluralApiName") == (
        "the stages of object 'opportunity' and object 'lead' would generate the same GraphQL query 'opportunitiesDueInStage'")
    # Platform types and mutations.
    collision(CREATE_OBJECT, {"i": {"apiName": "stage_history_entry", "label": "X"}}, "StageHistoryEntry")
    collision(CREATE_OBJECT, {"i": {"apiName": "business_type", "label": "X"}}, "createBusinessType")
    # Fields computed from the stage.
    assert collision(CREATE_FIELD, {"o": "opportunity", "i": {"apiName": "probability", "label": "P", "type": "INTEGER"}},
                     "Opportunity.probability") == (
        "field 'probability' and the win probability of the stage would share the GraphQL field 'Opportunity.probability'")
    collision(CREATE_FIELD, {"o": "opportunity", "i": {"apiName": "stage_history", "label": "H", "type": "TEXT"}},
              "Opportunity.stageHistory")
    collision(CREATE_FIELD, {"o": "opportunity", "i": {"apiName": "days_in_stage", "label": "D", "type": "INTEGER"}},
              "Opportunity.daysInStage")
    assert api.data("{ metadataVersion objects { apiName fields(includeSystem: true) { apiName } } }") == before
    # Objects without stages may have such fields, and names free of any collision are fine.
    api.data(CREATE_OBJECT, {"i": {"apiName": "forecast", "label": "Forecast", "fields": [
        {"apiName": "probability", "label": "P", "type": "INTEGER"}]}})
    api.data(CREATE_OBJECT, {"i": {"apiName": "opportunity_stages_note", "label": "Note"}})
    assert api.data("{ forecasts { totalCount } opportunityStagesNotes { totalCount } }") == {
        "forecasts": {"totalCount": 0}, "opportunityStagesNotes": {"totalCount": 0}}


def test_a_schema_with_names_generated_twice_still_builds(api):
    """Should a business type change ever give a name twice (the metadata service checks object and
    field changes), the schema still builds: the object's stage and type stay strings, a stored
    field keeps its name over a computed one, the rest of the API is served."""
    kinds = (BusinessTypeDef("std", "Standard", default=True, stages=(StageDef("open_deal", "Open", 10, expected_days=2),)),)
    deal = ObjectDef("deal", "Deal", "deals", "Deals", fields=(FieldDef("probability", "Probability", "decimal"),),
                     business_types=kinds)
    clashing = ObjectDef("deal_stage", "Deal stage", "deal_stages", "Deal stages")
    lead = ObjectDef("lead", "Lead", "leads", "Leads", business_types=kinds)
    installed = api.runtime.catalog()
    schema = build_schema(Catalog(installed.version, {**installed.objects, "deal": deal, "deal_stage": clashing, "lead": lead})).schema

    fields = schema.type_map["Deal"].fields
    assert (get_named_type(fields["stage"].type).name, get_named_type(fields["businessType"].type).name) == ("String", "String")
    assert get_named_type(fields["probability"].type).name == "Decimal"
    assert get_named_type(fields["stageCategory"].type).name == "StageCategory"
    assert "id" in schema.type_map["DealStage"].fields
    assert "dealsDueInStage" in schema.query_type.fields
    lead_fields = schema.type_map["Lead"].fields
    assert (get_named_type(lead_fields["stage"].type).name, get_named_type(lead_fields["probability"].type).name) == (
        "LeadStage", "Int")


# -- records ------------------------------------------------------------------------------------
def test_records_take_only_their_types_stages_and_picklist_values(api):
    setup(api)

    product = create(api, name="Laptops", source="WEB")
    project = create(api, name="Campus", businessType="PROJECT_SALE", source="TENDER")
    assert {k: product[k] for k in ("businessType", "stage", "source")} == {
        "businessType": "PRODUCT_SALE", "stage": "FIRST_CONTACT", "source": "WEB"}
    assert {k: project[k] for k in ("businessType", "stage", "source")} == {
        "businessType": "PROJECT_SALE", "stage": "QUALIFICATION", "source": "TENDER"}

    error = refused(api, CREATE, {"i": {"name": "X", "stage": "SCOPING", "source": "TENDER"}})
    assert problems(error) == [("NOT_ALLOWED_FOR_TYPE", "input.source", "'tender' is not a value for Product sale records"),
                               ("INVALID_STAGE", "input.stage", "'scoping' is not a stage of Product sale records")]
    error = refused(api, UPDATE, {"id": project["id"], "i": {"stage": "SOLUTION"}})
    assert problems(error) == [("INVALID_STAGE", "input.stage", "'solution' is not a stage of Project sale records")]
    error = refused(api, UPDATE, {"id": project["id"], "i": {"source": "WEB"}})
    assert problems(error) == [("NOT_ALLOWED_FOR_TYPE", "input.source", "'web' is not a value for Project sale records")]
    # Changing the type needs a stage (and values) of the new type.
    error = refused(api, UPDATE, {"id": product["id"], "i": {"businessType": "PROJECT_SALE"}})
    assert problems(error) == [
        ("NOT_ALLOWED_FOR_TYPE", "input.source", "'web' is not a value for Project sale records"),
        ("INVALID_STAGE", "input.stage", "'first_contact' is not a stage of Project sale records; "
                                         "give one of Project sale's stages with the new business type")]
    # Bulk writes name the item.
    error = refused(api, CREATE_MANY, {"i": [{"name": "A"}, {"name": "B", "businessType": "PROJECT_SALE"},
                                             {"name": "C", "businessType": "PROJECT_SALE", "stage": "WON"}]})
    assert problems(error) == [("INVALID_STAGE", "inputs.2.stage", "'won' is not a stage of Project sale records")]
    error = refused(api, UPDATE_MANY, {"items": [{"id": product["id"], "input": {"stage": "SOLUTION"}},
                                                 {"id": project["id"], "input": {"stage": "LOST"}}]})
    assert problems(error) == [("INVALID_STAGE", "items.1.input.stage", "'lost' is not a stage of Project sale records")]
    assert api.data(GET, {"id": product["id"]})["opportunity"] == {**product, "version": 1}
    assert api.data(GET, {"id": project["id"]})["opportunity"] == {**project, "version": 1}

    moved = move(api, product["id"], businessType="PROJECT_SALE", stage="QUALIFICATION", source="PARTNER")
    assert {k: moved[k] for k in ("businessType", "stage", "source", "version")} == {
        "businessType": "PROJECT_SALE", "stage": "QUALIFICATION", "source": "PARTNER", "version": 2}
    both = api.data(CREATE_MANY, {"i": [{"name": "D", "stage": "SOLUTION"}, {"name": "E", "businessType": "PROJECT_SALE"}]})
    assert [(r["businessType"], r["stage"]) for r in both["createOpportunities"]] == [
        ("PRODUCT_SALE", "SOLUTION"), ("PROJECT_SALE", "QUALIFICATION")]


def test_entry_requirements_block_moves_with_a_message_per_field(api):
    setup(api)
    record = create(api, name="Servers")

    error = refused(api, UPDATE, {"id": record["id"], "i": {"stage": "QUOTE_NEGOTIATION"}})
    assert problems(error) == [("REQUIRED_FOR_STAGE", "input.amount", "is required to enter the stage 'Quote and negotiation'"),
                               ("REQUIRED_FOR_STAGE", "input.closeDate", "is required to enter the stage 'Quote and negotiation'")]
    error = refused(api, UPDATE, {"id": record["id"], "i": {"stage": "NEEDS_CONFIRMED", "nextStep": ""}})
    assert problems(error) == [("REQUIRED_FOR_STAGE", "input.nextStep", "is required to enter the stage 'Needs confirmed'")]
    error = refused(api, CREATE_MANY, {"i": [{"name": "A", "stage": "SOLUTION"},
                                             {"name": "B", "stage": "QUOTE_NEGOTIATION", "amount": "10"}]})
    assert problems(error) == [("REQUIRED_FOR_STAGE", "inputs.1.closeDate", "is required to enter the stage 'Quote and negotiation'")]
    assert api.data(GET, {"id": record["id"]})["opportunity"] == {**record, "version": 1}
    assert api.data("{ opportunities { totalCount } }") == {"opportunities": {"totalCount": 1}}

    moved = move(api, record["id"], stage="QUOTE_NEGOTIATION", amount="1200.50", closeDate="2026-12-01")
    assert (moved["stage"], moved["version"]) == ("QUOTE_NEGOTIATION", 2)
    # Clearing a required field later is not a move: allowed.
    assert move(api, record["id"], amount=None)["stage"] == "QUOTE_NEGOTIATION"


def test_reopening_a_closed_record_needs_the_reopen_action(api):
    setup(api)
    rep = user_token(api, "rep", ["read", "create", "update"])
    closer = user_token(api, "closer", ["read", "create", "update", "reopen"])
    status, body = api.post(CREATE, {"i": {"name": "Routers"}}, token=rep)
    record = body["data"]["createOpportunity"]
    status, body = api.post(UPDATE, {"id": record["id"], "i": {"stage": "WON"}}, token=rep)
    assert status == 200 and body["data"]["updateOpportunity"]["stage"] == "WON", body

    error = refused(api, UPDATE, {"id": record["id"], "i": {"stage": "SOLUTION"}}, code="FORBIDDEN", token=rep)
    assert error["message"] == "None of your roles allows you to reopen closed Opportunity records."
    error = refused(api, UPDATE, {"id": record["id"], "i": {"stage": "LOST"}}, code="FORBIDDEN", token=rep)
    assert api.data(GET, {"id": record["id"]})["opportunity"]["stage"] == "WON"
    # Other changes of a won record are no reopening.
    status, body = api.post(UPDATE, {"id": record["id"], "i": {"nextStep": "Invoice"}}, token=rep)
    assert status == 200 and body["data"]["updateOpportunity"]["stage"] == "WON", body

    status, body = api.post(UPDATE, {"id": record["id"], "i": {"stage": "SOLUTION"}}, token=closer)
    assert status == 200 and "errors" not in body, body
    assert body["data"]["updateOpportunity"]["stage"] == "SOLUTION"
    assert api.data(GET, {"id": record["id"]})["opportunity"]["stage"] == "SOLUTION"


def test_probability_category_days_in_stage_and_due_time(api):
    setup(api)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    first = create(api, name="A first contact")
    won = create(api, name="B won", stage="WON")
    proposal = create(api, name="C proposal", businessType="PROJECT_SALE", stage="PROPOSAL", amount="5")
    scoping = create(api, name="D scoping", businessType="PROJECT_SALE", stage="SCOPING", nextStep="Call")
    entered = {first["id"]: now - timedelta(days=3, hours=1), won["id"]: now - timedelta(days=40, hours=2),
               proposal["id"]: now - timedelta(days=12), scoping["id"]: now - timedelta(hours=20)}
    for record_id, at in entered.items():
        set_stage_entered_at(api, record_id, at)

    nodes = api.data(f"{{ opportunities(orderBy: [NAME_ASC]) {{ nodes {{ {COMPUTED} }} }} }}")["opportunities"]["nodes"]

    assert nodes == [
        {"name": "A first contact", "stage": "FIRST_CONTACT", "stageEnteredAt": iso(entered[first["id"]]), "probability": 10,
         "stageCategory": "OPEN", "daysInStage": 3, "stageDueAt": iso(entered[first["id"]] + timedelta(days=5))},
        {"name": "B won", "stage": "WON", "stageEnteredAt": iso(entered[won["id"]]), "probability": 100,
         "stageCategory": "WON", "daysInStage": 40, "stageDueAt": None},
        {"name": "C proposal", "stage": "PROPOSAL", "stageEnteredAt": iso(entered[proposal["id"]]), "probability": 40,
         "stageCategory": "OPEN", "daysInStage": 12, "stageDueAt": None},
        {"name": "D scoping", "stage": "SCOPING", "stageEnteredAt": iso(entered[scoping["id"]]), "probability": 25,
         "stageCategory": "OPEN", "daysInStage": 0, "stageDueAt": iso(entered[scoping["id"]] + timedelta(days=30))},
    ]
    # Computed from the stored stage with the request's catalog: no statement beyond the page's own.
    api.data("{ opportunities { nodes { name } } }")
    plain = len(selects(api))
    api.data(f"{{ opportunities {{ nodes {{ {COMPUTED} }} }} }}")
    assert len(selects(api)) == plain
    # The same on a single record and a mutation result (the general executor).
    got = api.data(f"query($id: ID!) {{ opportunity(id: $id) {{ {COMPUTED} }} }}", {"id": first["id"]})["opportunity"]
    assert got == nodes[0]
    lost = api.data(f"mutation($id: ID!) {{ updateOpportunity(id: $id, input: {{stage: LOST}}) {{ {COMPUTED} }} }}",
                    {"id": first["id"]})["updateOpportunity"]
    assert (lost["probability"], lost["stageCategory"], lost["daysInStage"], lost["stageDueAt"]) == (0, "LOST", 0, None)


def test_a_hidden_stage_hides_what_is_computed_from_it(api):
    setup(api)
    sec = api.runtime.security
    token = user_token(api, "vic", ["read"])
    sec.set_field_grant(S, "role_vic", "opportunity", "stage", "hidden")
    record = create(api, name="Secret")

    status, body = api.post("{ opportunities { nodes { name probability stageCategory stageDueAt } } }", token=token)

    assert status == 200
    assert body["data"] == {"opportunities": {"nodes": [
        {"name": "Secret", "probability": None, "stageCategory": None, "stageDueAt": None}]}}
    assert sorted((e["path"], e["extensions"]["code"]) for e in body["errors"]) == [
        (["opportunities", "nodes", 0, "probability"], "FORBIDDEN"),
        (["opportunities", "nodes", 0, "stageCategory"], "FORBIDDEN"),
        (["opportunities", "nodes", 0, "stageDueAt"], "FORBIDDEN")]
    status, body = api.post("query($id: ID!) { opportunity(id: $id) { name stageHistory { stage } } }", {"id": record["id"]},
                            token=token)
    assert body["data"] == {"opportunity": {"name": "Secret", "stageHistory": None}}
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [(["opportunity", "stageHistory"], "FORBIDDEN")]


def test_stage_history_after_moves(api):
    setup(api)
    token = user_token(api, "eve", ["read", "create", "update", "reopen"])
    eve = api.runtime.security.authenticate(token).id
    status, body = api.post(f"mutation {{ createOpportunity(input: {{name: \"Switches\"}}) {{ id {HISTORY} }} }}", token=token)
    created = body["data"]["createOpportunity"]
    [entry] = created["stageHistory"]
    assert {k: v for k, v in entry.items() if k != "enteredAt"} == {
        "stage": "FIRST_CONTACT", "businessType": "PRODUCT_SALE", "enteredById": eve, "leftAt": None, "leftById": None,
        "secondsInStage": None}
    record_id = created["id"]
    api.data(UPDATE, {"id": record_id, "i": {"stage": "NEEDS_CONFIRMED", "nextStep": "Demo"}})
    status, body = api.post(UPDATE, {"id": record_id, "i": {"businessType": "PROJECT_SALE", "stage": "PROJECT_WON", "source": "TENDER"}},
                            token=token)
    assert "errors" not in body, body

    history = api.data(f"query($id: ID!) {{ opportunity(id: $id) {{ {HISTORY} }} }}", {"id": record_id})["opportunity"]["stageHistory"]

    assert [(h["stage"], h["businessType"], h["enteredById"], h["leftById"]) for h in history] == [
        ("FIRST_CONTACT", "PRODUCT_SALE", eve, None), ("NEEDS_CONFIRMED", "PRODUCT_SALE", None, eve),
        ("PROJECT_WON", "PROJECT_SALE", eve, None)]
    assert history[0]["enteredAt"] == entry["enteredAt"]
    for earlier, later in zip(history, history[1:]):
        assert earlier["leftAt"] == later["enteredAt"]
        seconds = (datetime.fromisoformat(earlier["leftAt"]) - datetime.fromisoformat(earlier["enteredAt"])).total_seconds()
        assert earlier["secondsInStage"] == int(seconds)
    assert (history[2]["leftAt"], history[2]["secondsInStage"]) == (None, None)
    # The record's stage entry time is that of its last entry.
    assert api.data("query($id: ID!) { opportunity(id: $id) { stageEnteredAt } }", {"id": record_id})["opportunity"] == {
        "stageEnteredAt": history[2]["enteredAt"]}
    # One record, two more statements (its visibility, its history); lists refuse it.
    api.data("query($id: ID!) { opportunity(id: $id) { name } }", {"id": record_id})
    plain = len(selects(api))
    api.data(f"query($id: ID!) {{ opportunity(id: $id) {{ name {HISTORY} }} }}", {"id": record_id})
    assert len(selects(api)) == plain + 2
    for query in (f"{{ opportunities {{ nodes {{ {HISTORY} }} }} }}", f"{{ opportunitiesDueInStage {{ nodes {{ {HISTORY} }} }} }}",
                  f"mutation {{ createOpportunities(inputs: [{{name: \"X\"}}]) {{ {HISTORY} }} }}"):
        error = refused(api, query, {}, code="BAD_QUERY")
        assert error["extensions"]["field"] == "stageHistory"
        assert error["message"] == ("'stageHistory' reads one statement per record, so it is only read on a single record: "
                                    "the opportunity(id) query or a mutation returning one Opportunity.")
    assert api.data("{ opportunities { totalCount } }") == {"opportunities": {"totalCount": 1}}


def test_a_record_moving_to_a_type_without_stages_leaves_its_stage(api):
    setup(api)
    api.data(CREATE_TYPE, {"o": "opportunity", "i": {"apiName": "service", "label": "Service"}})
    record = create(api, name="Support", stage="SOLUTION")

    moved = api.data(f"mutation($id: ID!) {{ updateOpportunity(id: $id, input: {{businessType: SERVICE}}) "
                     f"{{ businessType {COMPUTED} {HISTORY} }} }}", {"id": record["id"]})["updateOpportunity"]

    assert {k: v for k, v in moved.items() if k != "stageHistory"} == {
        "businessType": "SERVICE", "name": "Support", "stage": None, "stageEnteredAt": None, "probability": None,
        "stageCategory": None, "daysInStage": None, "stageDueAt": None}
    [entry] = moved["stageHistory"]
    assert (entry["stage"], entry["businessType"], entry["leftAt"] is not None) == ("SOLUTION", "PRODUCT_SALE", True)
    error = refused(api, UPDATE, {"id": record["id"], "i": {"stage": "SOLUTION"}})
    assert problems(error) == [("INVALID_STAGE", "input.stage", "Service records have no stages")]
    assert [n["name"] for n in api.data(DUE, {"d": 3650})["opportunitiesDueInStage"]["nodes"]] == []


def test_filters_and_groups_use_the_enums(api):
    setup(api)
    for name, kind, stage_name, extra in [("A", "PRODUCT_SALE", "SOLUTION", {}), ("B", "PRODUCT_SALE", "FIRST_CONTACT", {}),
                                          ("C", "PRODUCT_SALE", "SOLUTION", {}), ("D", "PROJECT_SALE", "QUALIFICATION", {}),
                                          ("E", "PROJECT_SALE", "PROPOSAL", {"amount": "9"})]:
        create(api, name=name, businessType=kind, stage=stage_name, **extra)
    listed = "query($f: OpportunityFilter) { opportunities(filter: $f, orderBy: [NAME_ASC]) { nodes { name } } }"

    assert names_of(api, listed, {"f": {"stage": {"eq": "SOLUTION"}}}, key="opportunities") == ["A", "C"]
    assert names_of(api, listed, {"f": {"stage": {"in": ["FIRST_CONTACT", "PROPOSAL"]}}}, key="opportunities") == ["B", "E"]
    assert names_of(api, listed, {"f": {"stage": {"ne": "SOLUTION"}}}, key="opportunities") == ["B", "D", "E"]
    assert names_of(api, listed, {"f": {"businessType": {"eq": "PROJECT_SALE"}}}, key="opportunities") == ["D", "E"]
    assert names_of(api, listed, {"f": {"businessType": {"ne": "PROJECT_SALE"}, "stage": {"notIn": ["SOLUTION"]}}},
                    key="opportunities") == ["B"]
    status, body = api.post(listed, {"f": {"stage": {"eq": "solution"}}})
    assert status == 400 and "OpportunityStage" in body["errors"][0]["message"], body

    groups = api.data("{ opportunityAggregate(groupBy: [BUSINESS_TYPE, STAGE]) { key { businessType stage } count } }")
    assert sorted((g["key"]["businessType"], g["key"]["stage"], g["count"]) for g in groups["opportunityAggregate"]) == [
        ("PRODUCT_SALE", "FIRST_CONTACT", 1), ("PRODUCT_SALE", "SOLUTION", 2), ("PROJECT_SALE", "PROPOSAL", 1),
        ("PROJECT_SALE", "QUALIFICATION", 1)]
    groups = api.data("{ opportunityAggregate(groupBy: [BUSINESS_TYPE]) { key { businessType } count } }")
    assert sorted((g["key"]["businessType"], g["count"]) for g in groups["opportunityAggregate"]) == [
        ("PRODUCT_SALE", 3), ("PROJECT_SALE", 2)]


def test_ordering_by_stage_follows_the_defined_stages(api):
    setup(api)
    for name, kind, stage_name in [("A", "PRODUCT_SALE", "WON"), ("B", "PRODUCT_SALE", "NEEDS_CONFIRMED"),
                                   ("C", "PRODUCT_SALE", "LOST"), ("D", "PROJECT_SALE", "QUALIFICATION"),
                                   ("E", "PRODUCT_SALE", "FIRST_CONTACT")]:
        create(api, name=name, businessType=kind, stage=stage_name, nextStep="x")
    ordered = "query($o: [OpportunityOrderBy!]) { opportunities(orderBy: $o) { nodes { name } } }"

    assert names_of(api, ordered, {"o": ["STAGE_ASC"]}, key="opportunities") == ["E", "B", "A", "C", "D"]
    assert names_of(api, ordered, {"o": ["STAGE_DESC"]}, key="opportunities") == ["D", "C", "A", "B", "E"]


def test_the_due_query_returns_exactly_the_records_past_their_expected_days(api):
    setup(api)
    now = datetime.now(timezone.utc)
    made = {}
    for name, kind, stage_name, entered in [
            ("A overdue", "PRODUCT_SALE", "FIRST_CONTACT", now - timedelta(days=6)),        # 5 days expected
            ("B due tomorrow", "PRODUCT_SALE", "FIRST_CONTACT", now - timedelta(days=4, hours=1)),
            ("C overdue", "PRODUCT_SALE", "NEEDS_CONFIRMED", now - timedelta(days=11)),     # 10 days expected
            ("D no limit", "PROJECT_SALE", "PROPOSAL", now - timedelta(days=400)),          # no expected days
            ("E won", "PRODUCT_SALE", "WON", now - timedelta(days=400)),                    # closed
            ("F due soon", "PROJECT_SALE", "QUALIFICATION", now - timedelta(days=19, hours=12)),  # 20 days expected
            ("G fresh", "PRODUCT_SALE", "SOLUTION", now - timedelta(days=1)),               # 14 days expected
            ("H just in time", "PROJECT_SALE", "CONTRACT_NEGOTIATION", now - timedelta(days=14, hours=23))]:  # 15 days
        record = create(api, name=name, businessType=kind, stage=stage_name, nextStep="x", amount="1", closeDate="2026-01-01")
        set_stage_entered_at(api, record["id"], entered)
        made[name] = record

    def due(within=None, **extra):
        return api.data(DUE, {"d": within, **extra})["opportunitiesDueInStage"]

    assert [n["name"] for n in due()["nodes"]] == ["A overdue", "C overdue"]
    assert [n["name"] for n in due(0)["nodes"]] == ["A overdue", "C overdue"]
    assert [n["name"] for n in due(1)["nodes"]] == ["A overdue", "B due tomorrow", "C overdue", "F due soon", "H just in time"]
    assert due(1)["totalCount"] == 5
    assert [n["name"] for n in due(1, f={"businessType": {"eq": "PROJECT_SALE"}})["nodes"]] == ["F due soon", "H just in time"]
    assert [n["name"] for n in due(13, f={"stage": {"in": ["SOLUTION", "FIRST_CONTACT"]}})["nodes"]] == [
        "A overdue", "B due tomorrow", "G fresh"]
    page = due(1, first=2)
    assert ([n["name"] for n in page["nodes"]], page["pageInfo"]["hasNextPage"]) == (["A overdue", "B due tomorrow"], True)
    rest = due(1, first=2, after=page["pageInfo"]["endCursor"])
    assert [n["name"] for n in rest["nodes"]] == ["C overdue", "F due soon"]
    # A move restarts the clock.
    api.data(UPDATE, {"id": made["A overdue"]["id"], "i": {"stage": "SOLUTION"}})
    assert [n["name"] for n in due()["nodes"]] == ["C overdue"]

    error = refused(api, DUE, {"d": -1})
    assert problems(error) == [("OUT_OF_RANGE", "withinDays", "must be a whole number of days from 0 to 3650")]
    # Objects without stages have no such query.
    status, body = api.post("{ usersDueInStage { totalCount } }")
    assert status == 400 and "usersDueInStage" in body["errors"][0]["message"]
