"""The inbox API: the signed-in user's own notifications, their unread count, and marking them read.

Named ``inbox``/``Inbox*`` rather than ``notification(s)`` so that an object named ``notification``
keeps the names the record API would give it.
"""
from __future__ import annotations

import graphene

from .common import PageInfo
from .scalars import DateTime


class InboxNotification(graphene.ObjectType):
    id = graphene.ID(required=True)
    kind = graphene.String(required=True, description="What delivered it: reminder, approval, announcement, trigger, ...")
    title = graphene.String(required=True)
    body = graphene.String(required=True)
    object_api_name = graphene.String(description="The object of the record it links to, if any.")
    record_id = graphene.ID(description="The record it links to, if any; read it through the record API as usual.")
    created_at = DateTime(required=True)
    read_at = DateTime(description="When it was marked read; null while unread.")


class InboxConnection(graphene.ObjectType):
    nodes = graphene.List(graphene.NonNull(InboxNotification), required=True)
    page_info = graphene.Field(PageInfo, required=True)
    unread_count = graphene.Int(required=True, description="Unread notifications in the whole inbox, not only this page.")

    @staticmethod
    def resolve_nodes(page, _info):
        return page.notifications

    @staticmethod
    def resolve_page_info(page, _info):
        first = page.notifications[0].cursor if page.notifications else None
        return {"has_next_page": page.has_next_page, "has_previous_page": page.after is not None,
                "start_cursor": first, "end_cursor": page.end_cursor}

    @staticmethod
    def resolve_unread_count(page, _info):
        return page.unread_count


class InboxQuery(graphene.ObjectType):
    inbox = graphene.Field(InboxConnection, required=True, unread_only=graphene.Boolean(default_value=False),
                           first=graphene.Int(default_value=50, description="1 to 200."), after=graphene.String(),
                           description="Your notifications, newest first.")
    inbox_unread_count = graphene.Int(required=True, description="How many of your notifications are unread.")

    @staticmethod
    def resolve_inbox(_root, info, unread_only=False, first=50, after=None):
        context = info.context
        return context.notifications.inbox(context.actor, unread_only=unread_only, first=first, after=after)

    @staticmethod
    def resolve_inbox_unread_count(_root, info):
        context = info.context
        return context.notifications.unread_count(context.actor)


class InboxMutation(graphene.ObjectType):
    mark_inbox_read = graphene.Int(required=True, ids=graphene.List(graphene.NonNull(graphene.ID), required=True),
                                   description="Mark these notifications of yours read; returns how many were unread.")
    mark_all_inbox_read = graphene.Int(required=True, description="Mark all your notifications read; returns how many were unread.")

    @staticmethod
    def resolve_mark_inbox_read(_root, info, ids):
        context = info.context
        return context.notifications.mark_read(context.actor, ids)

    @staticmethod
    def resolve_mark_all_inbox_read(_root, info):
        context = info.context
        return context.notifications.mark_all_read(context.actor)
