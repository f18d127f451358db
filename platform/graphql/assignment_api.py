"""The assignment rules API: run an object's assignment rule over existing records now.

Rules themselves are automations (``createAutomation`` with kind ``assignment_rule``, read through
an object's ``automations``); the only thing of their own is running one on demand, for
administrators and users who may transfer the records.
"""
from __future__ import annotations

import graphene

from ..runtime.assignment import AssignmentRules


class AssignmentOutcome(graphene.ObjectType):
    id = graphene.ID(required=True)
    owner_id = graphene.ID(description="The record's owner now; null while it waits in a pool.")
    org_unit_id = graphene.ID()
    entry = graphene.Int(description="The index of the entry that decided; null: none did and the record stayed as it was.")
    method = graphene.String(description="user, round_robin, region or pool; null when no entry decided.")
    pool = graphene.String(description="The public pool the record went into.")


class AssignmentMutation(graphene.ObjectType):
    assign_records = graphene.List(
        graphene.NonNull(AssignmentOutcome), required=True, object=graphene.String(required=True),
        ids=graphene.List(graphene.NonNull(graphene.ID), required=True), rule=graphene.String(),
        description="Run an assignment rule (by default the object's first active one) over these records, all or none; "
                    "administrators and users who may transfer them.")

    @staticmethod
    def resolve_assign_records(_root, info, object, ids, rule=None):
        context = info.context
        rules = context.metadata.automation_kinds.get(AssignmentRules.kind)
        return rules.assign(context.actor, object, ids, rule)
