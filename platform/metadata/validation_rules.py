"""Validation rules: how they are checked and stored (evaluated by ``lowcode.runtime.rules``)."""
from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy import Connection, delete, insert

from . import store
from .definitions import ObjectDef, ValidationRuleDef
from .errors import FieldError
from .expressions import MAX_LENGTH, expression_problems
from .schemas import setting_name


class ValidationRuleSchema(Schema):
    api_name = fields.String(required=True, validate=setting_name)
    expression = fields.String(required=True, validate=validate.Length(1, MAX_LENGTH))
    message = fields.String(required=True, validate=validate.Length(1, 1000))
    field = fields.String(load_default=None, allow_none=True)
    business_type = fields.String(load_default=None, allow_none=True)
    active = fields.Boolean(load_default=True)


class ValidationRuleUpdateSchema(ValidationRuleSchema):
    class Meta:
        exclude = ("api_name",)

    expression = fields.String(validate=validate.Length(1, MAX_LENGTH))
    message = fields.String(validate=validate.Length(1, 1000))
    field = fields.String(allow_none=True)
    business_type = fields.String(allow_none=True)
    active = fields.Boolean()


def rule_def(data: dict[str, Any], position: int) -> ValidationRuleDef:
    return ValidationRuleDef(api_name=data["api_name"], expression=data["expression"], message=data["message"],
                             field=data.get("field"), business_type=data.get("business_type"),
                             active=data.get("active", True), position=position)


def problems(obj: ObjectDef, rule: ValidationRuleDef) -> list[FieldError]:
    errors = expression_problems(obj, rule.expression)
    if rule.field is not None and obj.field(rule.field) is None:
        errors.append(FieldError("UNKNOWN_FIELD", "field", f"'{obj.api_name}' has no field named '{rule.field}'"))
    if rule.business_type is not None and obj.business_type(rule.business_type) is None:
        errors.append(FieldError("UNKNOWN_BUSINESS_TYPE", "business_type",
                                 f"'{obj.api_name}' has no business type '{rule.business_type}'"))
    return errors


def write(conn: Connection, object_api_name: str, rules: tuple[ValidationRuleDef, ...]) -> None:
    table = store.validation_rules
    conn.execute(delete(table).where(table.c.object_api_name == object_api_name))
    for position, rule in enumerate(rules):
        conn.execute(insert(table).values(
            object_api_name=object_api_name, api_name=rule.api_name, business_type=rule.business_type,
            expression=rule.expression, message=rule.message, field=rule.field, active=rule.active, position=position))
