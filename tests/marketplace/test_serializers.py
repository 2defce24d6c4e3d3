from decimal import Decimal

from rest_framework import serializers

from marketplace.api.serializers import FieldsOnceModelSerializer, FieldsOnceSerializer
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


class _ItemInput(FieldsOnceSerializer):
    sku = serializers.IntegerField(min_value=1)


class _CartInput(FieldsOnceSerializer):
    items = _ItemInput(many=True, allow_empty=False)
    note = serializers.CharField(max_length=5, default="")


def test_input_serializers_build_once_and_each_validation_is_its_own():
    good = _CartInput(data={"items": [{"sku": 2}]})
    bad = _CartInput(data={"items": [{"sku": 0}], "note": "too long"})

    assert good.is_valid()
    assert not bad.is_valid()
    assert good.validated_data == {"items": [{"sku": 2}], "note": ""}
    assert bad.errors == {
        "items": {0: {"sku": ["Ensure this value is greater than or equal to 1."]}},
        "note": ["Ensure this field has no more than 5 characters."],
    }
    assert good.errors == {}
    assert "_fields_built_once" in _CartInput.__dict__
    assert "_fields_built_once" in _ItemInput.__dict__
    assert good.fields["items"] is not bad.fields["items"]
    assert good.fields["items"].child is not bad.fields["items"].child
    assert good.fields["note"].parent is good
    assert bad.fields["items"].child.root is bad
