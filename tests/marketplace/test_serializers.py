from decimal import Decimal

from rest_framework import serializers

from marketplace.api.serializers import FieldsOnceModelSerializer
from orders.models import Order, OrderLine


class _LineSerializer(FieldsOnceModelSerializer):
    note = serializers.SerializerMethodField()

    class Meta:
        model = OrderLine
        fields = ("id", "title", "quantity", "note")

    def get_note(self, line) -> str:
        return self.context["note"]


class _OrderSerializer(FieldsOnceModelSerializer):
    lines = _LineSerializer(many=True, read_only=True)
    tags = serializers.ListField(child=serializers.CharField(), source="tag_list")

    class Meta:
        model = Order
        fields = ("id", "lines", "tags")


def test_fields_are_built_once_and_each_instance_gets_its_own_bound_copies():
    line = OrderLine(id=7, title="西红柿", quantity=Decimal("2.500"))
    first = _LineSerializer(line, context={"note": "a"})
    second = _LineSerializer(line, context={"note": "b"})

    assert first.data == {"id": 7, "title": "西红柿", "quantity": "2.500", "note": "a"}
    assert second.data == {"id": 7, "title": "西红柿", "quantity": "2.500", "note": "b"}
    assert "_fields_built_once" in _LineSerializer.__dict__
    for name in ("id", "quantity", "note"):
        assert first.fields[name] is not second.fields[name]
        assert (first.fields[name].parent, second.fields[name].parent) == (first, second)
        assert first.fields[name].field_name == second.fields[name].field_name == name
    assert list(first.fields) == list(second.fields) == ["id", "title", "quantity", "note"]


def test_nested_serializers_and_child_fields_are_bound_to_each_instance_of_their_own():
    """A shallow copy would share the nested serializer (and a list field's child) between
    instances, bound to the first: the second would answer with the first's context."""
    order = Order(id=3)
    order.tag_list = ["早市"]
    line = OrderLine(id=7, order=order, title="西红柿", quantity=Decimal("1.000"))
    order._prefetched_objects_cache = {"lines": [line]}
    first = _OrderSerializer(order, context={"note": "a"})
    second = _OrderSerializer(order, context={"note": "b"})

    assert first.data == {
        "id": 3,
        "lines": [{"id": 7, "title": "西红柿", "quantity": "1.000", "note": "a"}],
        "tags": ["早市"],
    }
    assert second.data["lines"][0]["note"] == "b"
    for name in ("lines", "tags"):
        assert first.fields[name] is not second.fields[name]
        assert first.fields[name].child is not second.fields[name].child
        assert first.fields[name].child.parent is first.fields[name]
        assert second.fields[name].child.root is second
