from decimal import Decimal

from rest_framework import serializers

from marketplace.api.serializers import FieldsOnceModelSerializer
from orders.models import OrderLine


class _LineSerializer(FieldsOnceModelSerializer):
    note = serializers.SerializerMethodField()

    class Meta:
        model = OrderLine
        fields = ("id", "title", "quantity", "note")

    def get_note(self, line) -> str:
        return self.context["note"]


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
    assert list(first.fields) == list(second.fields) == ["id", "title", "quantity", "note"]
