"""The apps admin API: the apps found and installed, and installing, upgrading and uninstalling
them by name (only apps in the platform's apps folder; never a path from a client)."""
from __future__ import annotations

import graphene

from ..metadata.errors import FieldError, ValidationFailed
from ..metadata.names import camel_case
from .scalars import JSON, DateTime


class App(graphene.ObjectType):
    name = graphene.String(required=True)
    title = graphene.String(required=True)
    installed_version = graphene.String(description="Null while not installed.")
    available_version = graphene.String(description="The version in the apps folder; null when its manifest does not load.")
    installed_at = DateTime()
    depends = graphene.List(graphene.NonNull(graphene.String), required=True)


class UninstalledApp(graphene.ObjectType):
    name = graphene.String(required=True)
    version = graphene.String(required=True)
    exported = JSON(description="With export: true, the app's records as they were (per object).")


class AppsQuery(graphene.ObjectType):
    apps = graphene.List(graphene.NonNull(App), required=True, description="Apps in the apps folder or installed.")

    @staticmethod
    def resolve_apps(_root, info):
        return info.context.apps.list()


def _name(value: str) -> str:
    if not value or "/" in value or "\\" in value or value.startswith("."):
        raise ValidationFailed.of([FieldError("INVALID_VALUE", "name", "must be the name of an app in the apps folder")])
    return value


def _paths(error):
    error.errors = [FieldError(e.code, ".".join(camel_case(p) if not p.isdigit() else p for p in e.field.split(".")) if e.field else e.field,
                               e.message, e.ctx) for e in error.errors]
    return error


class AppsMutation(graphene.ObjectType):
    install_app = graphene.Field(App, required=True, name=graphene.String(required=True),
                                 description="Install with everything the manifest brings, all or nothing (administrators).")
    upgrade_app = graphene.Field(App, required=True, name=graphene.String(required=True),
                                 description="Apply the difference to the new manifest, keeping data (administrators).")
    uninstall_app = graphene.Field(UninstalledApp, required=True, name=graphene.String(required=True),
                                   export=graphene.Boolean(default_value=False),
                                   description="Remove what the app owns, its objects' records included (administrators).")

    @staticmethod
    def resolve_install_app(_root, info, name):
        context = info.context
        return _run(lambda: context.apps.install_app(context.actor, _name(name)))

    @staticmethod
    def resolve_upgrade_app(_root, info, name):
        context = info.context
        return _run(lambda: context.apps.upgrade_app(context.actor, _name(name)))

    @staticmethod
    def resolve_uninstall_app(_root, info, name, export=False):
        context = info.context
        return _run(lambda: context.apps.uninstall_app(context.actor, _name(name), export=export))


def _run(call):
    from ..metadata.errors import LowcodeError

    try:
        return call()
    except LowcodeError as error:
        raise _paths(error)
