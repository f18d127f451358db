"""The public pools API: administrators set pools up; members list a pool's records, claim and
release them; both read the moves.

Every name starts with ``publicPool``/``PublicPool`` so that an object named ``pool`` keeps the
names the record API gives it (``pools``, ``createPool``, ...).
"""
from __future__ import annotations

import graphene

from .common import PageInfo
from .scalars import JSON, DateTime


class PublicPoolMember(graphene.ObjectType):
    unit_id = graphene.ID(required=True)
    include_below = graphene.Boolean(required=True, description="Members of the unit's sub-units belong too.")
    role = graphene.String(description="Only members holding this role; null: any role.")


class PublicPool(graphene.ObjectType):
    api_name = graphene.String(required=True)
    label = graphene.String(required=True)
    object_api_name = graphene.String(required=True)
    protection = graphene.String(required=True, description="activity or stage.")
    activity_object = graphene.String()
    activity_field = graphene.String()
    stage = graphene.String()
    protection_days = graphene.Int(required=True)
    reminder_days = graphene.Int(required=True, description="0: no reminder.")
    daily_claim_limit = graphene.Int(required=True)
    max_held = graphene.Int(required=True)
    cooldown_days = graphene.Int(required=True)
    active = graphene.Boolean(required=True)
    members = graphene.List(graphene.NonNull(PublicPoolMember), required=True)
    created_at = DateTime(required=True)
    updated_at = DateTime(required=True)


class PublicPoolMemberInput(graphene.InputObjectType):
    unit_id = graphene.ID(required=True)
    include_below = graphene.Boolean(default_value=False)
    role = graphene.String()


class PublicPoolSettings:
    label = graphene.String()
    protection = graphene.String(description="activity (days without an activity record) or stage (days without reaching a stage).")
    activity_object = graphene.String()
    activity_field = graphene.String(description="The activity's lookup to the pooled object.")
    stage = graphene.String()
    protection_days = graphene.Int()
    reminder_days = graphene.Int()
    daily_claim_limit = graphene.Int()
    max_held = graphene.Int()
    cooldown_days = graphene.Int()
    active = graphene.Boolean()
    members = graphene.List(graphene.NonNull(PublicPoolMemberInput))


class PublicPoolInput(PublicPoolSettings, graphene.InputObjectType):
    api_name = graphene.String(required=True)
    object_api_name = graphene.String(required=True)


class PublicPoolUpdateInput(PublicPoolSettings, graphene.InputObjectType):
    pass


class PublicPoolRecord(graphene.ObjectType):
    id = graphene.ID(required=True)
    entered_at = DateTime(required=True)
    previous_owner_id = graphene.ID()
    values = JSON(required=True, description="The record's id and the name-like fields asked for.")


class PublicPoolRecordConnection(graphene.ObjectType):
    nodes = graphene.List(graphene.NonNull(PublicPoolRecord), required=True)
    page_info = graphene.Field(PageInfo, required=True)

    @staticmethod
    def resolve_nodes(page, _info):
        return page.records

    @staticmethod
    def resolve_page_info(page, _info):
        first = page.records[0].cursor if page.records else None
        return {"has_next_page": page.has_next_page, "has_previous_page": page.after is not None,
                "start_cursor": first, "end_cursor": page.end_cursor}


class PublicPoolMove(graphene.ObjectType):
    id = graphene.ID(required=True)
    pool = graphene.String(required=True)
    record_id = graphene.ID(required=True)
    action = graphene.String(required=True, description="recycle, claim, release or return.")
    actor_id = graphene.ID(description="Who moved it; null: the platform (a recycle).")
    from_owner_id = graphene.ID()
    to_owner_id = graphene.ID()
    reason = graphene.String()
    at = DateTime(required=True)


def _plain(value) -> dict:
    """An input object as the service's definition: only the settings given."""
    settings = {key: item for key, item in dict(value).items()}
    if settings.get("members") is not None:
        settings["members"] = [dict(member) for member in settings["members"]]
    return settings


class PoolsQuery(graphene.ObjectType):
    public_pools = graphene.List(graphene.NonNull(PublicPool), required=True,
                                 description="Every pool (administrators) or the pools you are a member of.")
    public_pool_records = graphene.Field(PublicPoolRecordConnection, required=True, pool=graphene.String(required=True),
                                         first=graphene.Int(default_value=50, description="1 to 200."), after=graphene.String(),
                                         fields=graphene.List(graphene.NonNull(graphene.String)),
                                         description="The records waiting in a pool, newest arrivals first (members and administrators).")
    public_pool_moves = graphene.List(graphene.NonNull(PublicPoolMove), required=True, pool=graphene.String(required=True),
                                      record_id=graphene.ID(), description="A pool's moves in order (members and administrators).")

    @staticmethod
    def resolve_public_pools(_root, info):
        context = info.context
        return context.pools.pools(context.actor)

    @staticmethod
    def resolve_public_pool_records(_root, info, pool, first=50, after=None, fields=None):
        context = info.context
        return context.pools.pool_records(context.actor, pool, first=first, after=after, fields=fields)

    @staticmethod
    def resolve_public_pool_moves(_root, info, pool, record_id=None):
        context = info.context
        return context.pools.moves(context.actor, pool, record_id)


class PoolsMutation(graphene.ObjectType):
    create_public_pool = graphene.Field(PublicPool, required=True, input=PublicPoolInput(required=True),
                                        description="Create a pool (administrators).")
    update_public_pool = graphene.Field(PublicPool, required=True, api_name=graphene.String(required=True),
                                        input=PublicPoolUpdateInput(required=True),
                                        description="Change a pool's settings; members, when given, replace the list (administrators).")
    delete_public_pool = graphene.Boolean(required=True, api_name=graphene.String(required=True),
                                          description="Delete a pool with its moves; its records stay ownerless (administrators).")
    claim_public_pool_record = graphene.Field(PublicPoolMove, required=True, pool=graphene.String(required=True),
                                              id=graphene.ID(required=True), description="Take a record from the pool (members).")
    release_public_pool_record = graphene.Field(PublicPoolMove, required=True, pool=graphene.String(required=True),
                                                id=graphene.ID(required=True), reason=graphene.String(required=True),
                                                description="Give your record back to the pool, saying why.")

    @staticmethod
    def resolve_create_public_pool(_root, info, input):
        context = info.context
        return context.pools.create_pool(context.actor, _plain(input))

    @staticmethod
    def resolve_update_public_pool(_root, info, api_name, input):
        context = info.context
        return context.pools.update_pool(context.actor, api_name, _plain(input))

    @staticmethod
    def resolve_delete_public_pool(_root, info, api_name):
        context = info.context
        context.pools.delete_pool(context.actor, api_name)
        return True

    @staticmethod
    def resolve_claim_public_pool_record(_root, info, pool, id):
        context = info.context
        return context.pools.claim(context.actor, pool, id)

    @staticmethod
    def resolve_release_public_pool_record(_root, info, pool, id, reason):
        context = info.context
        return context.pools.release(context.actor, pool, id, reason)
