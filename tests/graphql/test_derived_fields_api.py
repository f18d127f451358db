"""Formula and roll-up fields over HTTP GraphQL, on SQLite and PostgreSQL.

Defined through the metadata API (their derived settings read back), served by the record API
with their result type's scalar, filter and order, kept current by record mutations, and refused
with input paths when they are wrong.
"""
from __future__ import annotations

ORDER = {"apiName": "sales_order", "label": "Order", "pluralApiName": "sales_orders", "pluralLabel": "Orders",
         "fields": [{"apiName": "name", "label": "Name", "type": "TEXT"}]}
LINE = {"apiName": "order_line", "label": "Line", "pluralApiName": "order_lines", "pluralLabel": "Lines",
        "fields": [{"apiName": "sales_order", "label": "Order", "type": "MASTER_DETAIL",
                    "options": {"target": "sales_order", "relationshipName": "lines"}},
                   {"apiName": "qty", "label": "Quantity", "type": "INTEGER"},
                   {"apiName": "price", "label": "Price", "type": "CURRENCY"},
                   {"apiName": "sku", "label": "SKU", "type": "TEXT"}]}
CREATE_OBJECT = "mutation($i: ObjectInput!) { createObject(input: $i) { apiName } }"
CREATE_FIELD = """mutation($o: String!, $i: FieldInput!) { createField(object: $o, input: $i) {
  apiName type options { expression resultType scale inSql notInSqlBecause childObject relationshipField function aggregateField filter } } }"""
FIELDS = [
    ("order_line", {"apiName": "amount", "label": "Amount", "type": "FORMULA",
                    "options": {"expression": "record.price * double(record.qty)", "resultType": "currency"}}),
    ("order_line", {"apiName": "sku_ok", "label": "SKU ok", "type": "FORMULA",
                    "options": {"expression": "record.sku.matches('^[A-Z]+-[0-9]+$')", "resultType": "boolean"}}),
    ("sales_order", {"apiName": "total", "label": "Total", "type": "ROLLUP",
                     "options": {"childObject": "order_line", "function": "sum", "aggregateField": "price"}}),
    ("sales_order", {"apiName": "big_lines", "label": "Big lines", "type": "ROLLUP",
                     "options": {"childObject": "order_line", "function": "count", "filter": "record.qty >= 10"}}),
]


def build(api) -> list[dict]:
    for definition in (ORDER, LINE):
        api.data(CREATE_OBJECT, {"i": definition})
    return [api.data(CREATE_FIELD, {"o": obj, "i": field})["createField"] for obj, field in FIELDS]


def test_definitions_read_back_with_what_the_platform_derived(api):
    created = build(api)
    blank = {"expression": None, "resultType": None, "scale": None, "inSql": None, "notInSqlBecause": None, "childObject": None,
             "relationshipField": None, "function": None, "aggregateField": None, "filter": None}
    assert created == [
        {"apiName": "amount", "type": "FORMULA", "options": {**blank, "expression": "record.price * double(record.qty)",
                                                              "resultType": "currency", "scale": 2, "inSql": True}},
        {"apiName": "sku_ok", "type": "FORMULA", "options": {
            **blank, "expression": "record.sku.matches('^[A-Z]+-[0-9]+$')", "resultType": "boolean", "inSql": False,
            "notInSqlBecause": "'matches()' is not part of the translatable subset at offset 11"}},
        {"apiName": "total", "type": "ROLLUP", "options": {**blank, "childObject": "order_line", "relationshipField": "sales_order",
                                                           "function": "sum", "aggregateField": "price", "resultType": "currency", "scale": 2}},
        {"apiName": "big_lines", "type": "ROLLUP", "options": {**blank, "childObject": "order_line", "relationshipField": "sales_order",
                                                               "function": "count", "filter": "record.qty >= 10", "resultType": "integer"}},
    ]


LINES = """query($f: OrderLineFilter, $o: [OrderLineOrderBy!]) { orderLines(filter: $f, orderBy: $o) { nodes { sku amount skuOk } } }"""
ORDER_QUERY = "query($id: ID!) { salesOrder(id: $id) { total bigLines version lines { totalCount } } }"


def test_values_filters_order_and_upkeep_through_the_record_api(api):
    build(api)
    order = api.data('mutation { createSalesOrder(input: {name: "O-1"}) { id total bigLines } }')["createSalesOrder"]
    assert (order["total"], order["bigLines"]) == ("0.00", 0)
    created = api.data("""mutation($i: [OrderLineCreateInput!]!) { createOrderLines(inputs: $i) { id amount skuOk } }""", {"i": [
        {"salesOrderId": order["id"], "qty": 12, "price": "2.50", "sku": "AB-1"},
        {"salesOrderId": order["id"], "qty": 3, "price": "10.10", "sku": "nope"},
        {"salesOrderId": order["id"], "qty": 1, "price": None, "sku": "CD-22"}]})["createOrderLines"]
    assert [(c["amount"], c["skuOk"]) for c in created] == [("30.00", True), ("30.30", False), (None, True)]
    assert api.data(ORDER_QUERY, {"id": order["id"]})["salesOrder"] == {"total": "12.60", "bigLines": 1, "version": 1, "lines": {"totalCount": 3}}

    nodes = api.data(LINES, {"f": {"amount": {"gte": "30.10"}}, "o": ["AMOUNT_DESC"]})["orderLines"]["nodes"]
    assert nodes == [{"sku": "nope", "amount": "30.30", "skuOk": False}]
    ordered = api.data(LINES, {"o": ["AMOUNT_ASC"]})["orderLines"]["nodes"]
    assert [n["sku"] for n in ordered] == ["AB-1", "nope", "CD-22"]
    status, errors = api.errors(LINES, {"f": {"skuOk": {"eq": True}}})
    assert status == 400 and "skuOk" in errors[0]["message"] and errors[0]["extensions"]["code"] == "BAD_QUERY"
    status, errors = api.errors(LINES, {"o": ["SKU_OK_ASC"]})
    assert status == 400 and errors[0]["extensions"]["code"] == "BAD_QUERY"

    updated = api.data("mutation($id: ID!) { updateOrderLine(id: $id, input: {qty: 20}) { amount } }", {"id": created[1]["id"]})
    assert updated["updateOrderLine"] == {"amount": "202.00"}
    assert api.data(ORDER_QUERY, {"id": order["id"]})["salesOrder"]["bigLines"] == 2
    api.data("mutation($id: ID!) { deleteOrderLine(id: $id) }", {"id": created[0]["id"]})
    assert api.data(ORDER_QUERY, {"id": order["id"]})["salesOrder"]["total"] == "10.10"
    api.data("mutation($id: ID!) { restoreOrderLine(id: $id) { id } }", {"id": created[0]["id"]})
    assert api.data(ORDER_QUERY, {"id": order["id"]})["salesOrder"] == {"total": "12.60", "bigLines": 2, "version": 1, "lines": {"totalCount": 3}}
    groups = api.data("{ salesOrderAggregate { count sum { total bigLines } } }")["salesOrderAggregate"]
    assert groups == [{"count": 1, "sum": {"total": "12.60", "bigLines": "2"}}]


def test_computed_values_cannot_be_written(api):
    build(api)
    status, errors = api.errors('mutation { createSalesOrder(input: {name: "x", total: "5"}) { id } }')
    assert status == 400 and errors[0]["extensions"]["code"] == "BAD_QUERY" and "total" in errors[0]["message"]
    status, errors = api.errors('mutation { createOrderLine(input: {amount: "5"}) { id } }')
    assert status == 400 and "amount" in errors[0]["message"]


def test_wrong_definitions_name_the_input_and_change_nothing(api):
    build(api)
    version = api.data("{ metadataVersion }")["metadataVersion"]
    cases = [
        ("order_line", {"apiName": "bad", "label": "Bad", "type": "FORMULA", "options": {"expression": "record.qty *", "resultType": "integer"}},
         ("SYNTAX_ERROR", "input.options.expression")),
        ("order_line", {"apiName": "bad", "label": "Bad", "type": "FORMULA", "options": {"expression": "record.price * 2", "resultType": "currency"}},
         ("TYPE_MISMATCH", "input.options.expression")),
        ("order_line", {"apiName": "bad", "label": "Bad", "type": "FORMULA", "options": {"expression": "record.amount", "resultType": "currency"}},
         ("FORMULA_REFERENCE", "input.options.expression")),
        ("sales_order", {"apiName": "bad", "label": "Bad", "type": "ROLLUP", "options": {"childObject": "order_line", "function": "sum",
                                                                                      "aggregateField": "sku"}},
         ("INVALID_VALUE", "input.options.aggregateField")),
        ("sales_order", {"apiName": "bad", "label": "Bad", "type": "ROLLUP", "options": {"childObject": "order_line", "function": "count",
                                                                                      "filter": "record.sku.matches('x')"}},
         ("NOT_TRANSLATABLE", "input.options.filter")),
    ]
    for obj, field, (code, path) in cases:
        status, errors = api.errors(CREATE_FIELD, {"o": obj, "i": field})
        assert status == 200 and errors[0]["extensions"]["code"] == "INVALID_DEFINITION"
        assert [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]] == [(code, path)], field
    assert api.data("{ metadataVersion }")["metadataVersion"] == version
