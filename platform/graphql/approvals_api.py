"""The approvals API: submit a record for approval, approve, reject or recall a request with a
comment, and read requests with their history.

Refusals keep their codes: LOCKED (a pending record), ALREADY_PENDING, NO_PROCESS, NO_APPROVER,
FORBIDDEN (not an approver of the step, not the submitter), CONFLICT (decided meanwhile).
"""
from __future__ import annotations

import graphene

from ..runtime.approvals.kind import KIND
from .scalars import DateTime


class ApprovalAction(graphene.ObjectType):
    step = graphene.Int(required=True, description="The step the request was at; 0: the submission.")
    actor_id = graphene.ID(description="Who acted; null: the platform.")
    action = graphene.String(required=True, description="submit, approve, reject or recall.")
    comment = graphene.String()
    at = DateTime(required=True)


class ApprovalRequest(graphene.ObjectType):
    id = graphene.ID(required=True)
    object = graphene.String(required=True, description="The api name of the record's object.")
    record_id = graphene.ID(required=True)
    process = graphene.String(required=True, description="The api name of the approval process followed.")
    process_label = graphene.String(required=True)
    status = graphene.String(required=True, description="pending, approved, rejected or recalled.")
    step = graphene.Int(required=True, description="The current step (or the one decided last), from 1.")
    step_label = graphene.String(required=True)
    step_labels = graphene.List(graphene.NonNull(graphene.String), required=True,
                                description="The steps of the request's plan: those whose conditions held when submitted.")
    submitted_by = graphene.ID(required=True)
    submitted_at = DateTime(required=True)
    decided_at = DateTime()
    version = graphene.Int(required=True)
    approvers = graphene.List(graphene.NonNull(graphene.ID), required=True,
                              description="Who may decide the current step (empty once decided).")
    actions = graphene.List(graphene.NonNull(ApprovalAction), required=True, description="Every action, in order.")


def _approvals(info):
    """The approval service: the runtime registered it as the ``approval_process`` automation kind."""
    return info.context.metadata.automation_kinds.get(KIND)


class ApprovalsQuery(graphene.ObjectType):
    approval_requests = graphene.List(
        graphene.NonNull(ApprovalRequest), required=True, status=graphene.String(), awaiting_me=graphene.Boolean(default_value=False),
        mine=graphene.Boolean(default_value=False), object=graphene.String(), record_id=graphene.ID(),
        first=graphene.Int(default_value=50, description="1 to 200."),
        description="Requests newest first: those you submitted or may decide (administrators: all).")
    approval_request = graphene.Field(ApprovalRequest, required=True, id=graphene.ID(required=True),
                                      description="One request with its history (its submitter, approvers and administrators).")

    @staticmethod
    def resolve_approval_requests(_root, info, status=None, awaiting_me=False, mine=False, object=None, record_id=None, first=50):
        return _approvals(info).requests(info.context.actor, status=status, awaiting_me=awaiting_me, mine=mine, object_name=object,
                                         record_id=record_id, first=first)

    @staticmethod
    def resolve_approval_request(_root, info, id):
        return _approvals(info).request(info.context.actor, id)


class ApprovalsMutation(graphene.ObjectType):
    submit_for_approval = graphene.Field(
        ApprovalRequest, required=True, object=graphene.String(required=True), id=graphene.ID(required=True), comment=graphene.String(),
        process=graphene.String(description="The process to follow; default: the first whose entry criteria hold."),
        description="Submit a record you may edit; it is locked until the request is decided or recalled.")
    approve_request = graphene.Field(ApprovalRequest, required=True, id=graphene.ID(required=True), comment=graphene.String(),
                                     description="Approve the current step (its approvers; administrators override).")
    reject_request = graphene.Field(ApprovalRequest, required=True, id=graphene.ID(required=True), comment=graphene.String(),
                                    description="Reject the request at the current step.")
    recall_request = graphene.Field(ApprovalRequest, required=True, id=graphene.ID(required=True), comment=graphene.String(),
                                    description="Withdraw your pending request.")

    @staticmethod
    def resolve_submit_for_approval(_root, info, object, id, comment=None, process=None):
        return _approvals(info).submit(info.context.actor, object, id, comment, process)

    @staticmethod
    def resolve_approve_request(_root, info, id, comment=None):
        return _approvals(info).approve(info.context.actor, id, comment)

    @staticmethod
    def resolve_reject_request(_root, info, id, comment=None):
        return _approvals(info).reject(info.context.actor, id, comment)

    @staticmethod
    def resolve_recall_request(_root, info, id, comment=None):
        return _approvals(info).recall(info.context.actor, id, comment)
