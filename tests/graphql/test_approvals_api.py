"""The approvals API over HTTP GraphQL, on SQLite and PostgreSQL: a process configured through
createAutomation (bad settings named at the input's paths), a claim submitted, decided through two
steps with comments and read back with its history; the lock on a pending record and every refusal
come back with their codes, never as internal errors."""
from __future__ import annotations

import pytest
from lowcode.metadata import SYSTEM_ACTOR as S

CREATE_PROCESS = """mutation($input: AutomationInput!) { createAutomation(object: "claim", input: $input) { apiName kind settings } }"""
SUBMIT = """mutation($id: ID!, $comment: String, $process: String) {
  submitForApproval(object: "claim", id: $id, comment: $comment, process: $process) {
    id object recordId process processLabel status step stepLabel stepLabels submittedBy version approvers } }"""
APPROVE = "mutation($id: ID!, $comment: String) { approveRequest(id: $id, comment: $comment) { status step stepLabel approvers version } }"
REJECT = "mutation($id: ID!, $comment: String) { rejectRequest(id: $id, comment: $comment) { status step } }"
RECALL = "mutation($id: ID!, $comment: String) { recallRequest(id: $id, comment: $comment) { status actions { action comment } } }"
REQUEST = """query($id: ID!) { approvalRequest(id: $id) { status decidedAt actions { step actorId action comment at } } }"""
REQUESTS = """query($status: String, $awaiting: Boolean, $mine: Boolean, $first: Int) {
  approvalRequests(status: $status, awaitingMe: $awaiting, mine: $mine, first: $first) { id status step } }"""
CREATE_CLAIM = "mutation($input: ClaimCreateInput!) { createClaim(input: $input) { id status } }"
UPDATE_CLAIM = "mutation($id: ID!, $input: ClaimUpdateInput!) { updateClaim(id: $id, input: $input) { id status amount } }"
CLAIM_STATUS = "query($id: ID!) { claim(id: $id) { status } }"
UNKNOWN = "00000000-0000-4000-8000-00000000abcd"


@pytest.fixture
def people(api):
    """Shanghai below East: ann sells in Shanghai, cat manages East, fin does finance in East;
    ``{name: (user id, token)}``."""
    rt = api.runtime
    rt.metadata.create_objects(S, [{"api_name": "claim", "label": "Claim", "plural_api_name": "claims", "plural_label": "Claims", "fields": [
        {"api_name": "title", "label": "Title", "type": "text"},
        {"api_name": "amount", "label": "Amount", "type": "currency", "options": {"precision": 12, "scale": 2}},
        {"api_name": "status", "label": "Status", "type": "picklist", "default": "draft", "options": {"restricted": True, "values": [
            {"api_name": name, "label": name.title()} for name in ("draft", "submitted", "approved", "rejected")]}}]}])
    sec = rt.security
    east = sec.create_unit(S, "East")["id"]
    shanghai = sec.create_unit(S, "Shanghai", east)["id"]
    found = {}
    for role in ("sales", "manager", "finance"):
        sec.create_role(S, role, role.title())
        sec.set_object_grant(S, role, "claim", ["read", "create", "update"], "unit_and_below", "unit_and_below")
    for name, unit, role in (("ann", shanghai, "sales"), ("cat", east, "manager"), ("fin", east, "finance")):
        user = sec.create_user(S, {"username": name})
        sec.add_membership(S, user["id"], unit, role)
        found[name] = (user["id"], sec.issue_token(S, "tests", user_id=user["id"])["token"])
    return found


def settings(**changes):
    return {"entry": "record.amount > 0.0",
            "steps": [{"label": "Manager", "approver": "manager", "role": "manager"},
                      {"label": "Finance", "approver": "role", "role": "finance"}],
            "on_submit": {"status": "submitted"}, "on_approve": {"status": "approved"}, "on_reject": {"status": "rejected"},
            "on_recall": {"status": "draft"}, **changes}


def process(api, **changes):
    return api.data(CREATE_PROCESS, {"input": {"apiName": "expenses", "kind": "approval_process", "label": "Expenses",
                                               "settings": settings(**changes)}})


def codes(errors):
    return [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]]


def test_bad_settings_are_named_at_the_input_paths(api, people):
    status, errors = api.errors(CREATE_PROCESS, {"input": {"apiName": "expenses", "kind": "approval_process", "label": "Expenses",
                                                           "settings": settings(entry="record.amount >>", steps=[
                                                               {"label": "Manager", "approver": "manager", "role": "manager"},
                                                               {"label": "Boss", "approver": "role", "role": "treasury"}],
                                                               on_approve={"colour": "green"})}})
    assert status == 200 and errors[0]["extensions"]["code"] == "INVALID_DEFINITION"
    assert codes(errors) == [("SYNTAX_ERROR", "input.settings.entry"), ("NO_SUCH_ROLE", "input.settings.steps.1.role"),
                             ("UNKNOWN_FIELD", "input.settings.on_approve.colour")]
    _, errors = api.errors(CREATE_PROCESS, {"input": {"apiName": "expenses", "kind": "approval_process", "label": "Expenses",
                                                      "settings": settings(steps=[])}})
    assert codes(errors) == [("REQUIRED", "input.settings.steps")]
    assert api.runtime.catalog().object("claim").automations == ()


def test_a_claim_is_submitted_decided_in_two_steps_and_read_back(api, people):
    (ann, ann_token), (cat, cat_token), (fin, fin_token) = people["ann"], people["cat"], people["fin"]
    assert process(api)["createAutomation"]["kind"] == "approval_process"
    made = api.data(CREATE_CLAIM, {"input": {"title": "Fair trip", "amount": "800.00"}}, token=ann_token)["createClaim"]

    _, errors = api.errors(SUBMIT, {"id": made["id"]}, token=cat_token)
    assert (errors[0]["extensions"]["code"], errors[0]["extensions"]["ctx"]["step"]) == ("NO_APPROVER", 1), \
        "cat may submit ann's claim, but nobody manages him"
    submitted = api.data(SUBMIT, {"id": made["id"], "comment": "Receipts attached"}, token=ann_token)["submitForApproval"]
    assert submitted == {"id": submitted["id"], "object": "claim", "recordId": made["id"], "process": "expenses", "processLabel": "Expenses",
                         "status": "pending", "step": 1, "stepLabel": "Manager", "stepLabels": ["Manager", "Finance"], "submittedBy": ann,
                         "version": 1, "approvers": [cat]}
    request_id = submitted["id"]
    assert api.data(CLAIM_STATUS, {"id": made["id"]}, token=ann_token)["claim"]["status"] == "SUBMITTED"

    _, errors = api.errors(UPDATE_CLAIM, {"id": made["id"], "input": {"amount": "1.00"}}, token=ann_token)
    assert (errors[0]["extensions"]["code"], errors[0]["extensions"]["ctx"]["request_id"]) == ("LOCKED", request_id)
    _, errors = api.errors(SUBMIT, {"id": made["id"]}, token=ann_token)
    assert errors[0]["extensions"]["code"] == "ALREADY_PENDING"
    _, errors = api.errors(APPROVE, {"id": request_id}, token=fin_token)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    _, errors = api.errors(APPROVE, {"id": request_id}, token=ann_token)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"

    assert api.data(REQUESTS, {"awaiting": True}, token=cat_token)["approvalRequests"] == [
        {"id": request_id, "status": "pending", "step": 1}]
    assert api.data(REQUESTS, {"awaiting": True}, token=fin_token)["approvalRequests"] == []
    assert api.data(APPROVE, {"id": request_id, "comment": "OK"}, token=cat_token)["approveRequest"] == {
        "status": "pending", "step": 2, "stepLabel": "Finance", "approvers": [fin], "version": 2}
    _, errors = api.errors(APPROVE, {"id": request_id}, token=cat_token)
    assert errors[0]["extensions"]["code"] == "CONFLICT"
    assert api.data(APPROVE, {"id": request_id}, token=fin_token)["approveRequest"]["status"] == "approved"
    assert api.data(CLAIM_STATUS, {"id": made["id"]}, token=ann_token)["claim"]["status"] == "APPROVED"

    read = api.data(REQUEST, {"id": request_id}, token=ann_token)["approvalRequest"]
    assert read["status"] == "approved" and read["decidedAt"]
    assert [(a["step"], a["actorId"], a["action"], a["comment"]) for a in read["actions"]] == [
        (0, ann, "submit", "Receipts attached"), (1, cat, "approve", "OK"), (2, fin, "approve", None)]
    assert api.data(REQUESTS, {"mine": True}, token=ann_token)["approvalRequests"] == [{"id": request_id, "status": "approved", "step": 2}]
    assert api.data(UPDATE_CLAIM, {"id": made["id"], "input": {"amount": "900.00"}}, token=ann_token)["updateClaim"]["amount"] == "900.00"


def test_rejections_recalls_and_refusals_keep_their_codes(api, people):
    (ann, ann_token), (cat, cat_token) = people["ann"], people["cat"]
    process(api)
    made = api.data(CREATE_CLAIM, {"input": {"title": "Dinner", "amount": "80.00"}}, token=ann_token)["createClaim"]
    free = api.data(CREATE_CLAIM, {"input": {"title": "Nothing", "amount": "0.00"}}, token=ann_token)["createClaim"]
    _, errors = api.errors(SUBMIT, {"id": free["id"]}, token=ann_token)
    assert errors[0]["extensions"]["code"] == "NO_PROCESS"
    _, errors = api.errors(SUBMIT, {"id": made["id"], "process": "travel"}, token=ann_token)
    assert (errors[0]["extensions"]["code"], errors[0]["extensions"]["field"]) == ("NO_PROCESS", "process")
    _, errors = api.errors(SUBMIT, {"id": UNKNOWN}, token=ann_token)
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    _, errors = api.errors(APPROVE, {"id": "not-an-id"}, token=cat_token)
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    _, errors = api.errors(REQUESTS, {"status": "done"}, token=ann_token)
    assert codes(errors) == [("INVALID_VALUE", "status")]

    first = api.data(SUBMIT, {"id": made["id"]}, token=ann_token)["submitForApproval"]["id"]
    _, errors = api.errors(RECALL, {"id": first}, token=cat_token)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert api.data(RECALL, {"id": first, "comment": "Wrong date"}, token=ann_token)["recallRequest"] == {
        "status": "recalled", "actions": [{"action": "submit", "comment": None}, {"action": "recall", "comment": "Wrong date"}]}
    assert api.data(CLAIM_STATUS, {"id": made["id"]}, token=ann_token)["claim"]["status"] == "DRAFT"

    second = api.data(SUBMIT, {"id": made["id"]}, token=ann_token)["submitForApproval"]["id"]
    assert api.data(REJECT, {"id": second, "comment": "Not a business dinner"}, token=cat_token)["rejectRequest"] == {
        "status": "rejected", "step": 1}
    assert api.data(CLAIM_STATUS, {"id": made["id"]}, token=ann_token)["claim"]["status"] == "REJECTED"
    _, errors = api.errors(RECALL, {"id": second}, token=ann_token)
    assert errors[0]["extensions"]["code"] == "CONFLICT"
    assert [r["status"] for r in api.data(REQUESTS, {}, token=cat_token)["approvalRequests"]] == ["rejected", "recalled"]
    assert api.data(REQUESTS, {"first": 1})["approvalRequests"] == [{"id": second, "status": "rejected", "step": 1}]
