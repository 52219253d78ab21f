"""telemetry.serializers: invalid-choice errors that name the accepted values."""

from __future__ import annotations

import pytest
from rest_framework import serializers

from telemetry.models import Series
from telemetry.serializers import (
    MAX_LISTED_CHOICES,
    ChoiceField,
    ModelSerializer,
    MultipleChoiceField,
)
from tests.choices import listed_choices


def _error(field: serializers.Field, value) -> str:
    with pytest.raises(serializers.ValidationError) as raised:
        field.run_validation(value)
    return str(raised.value.detail[0])


def test_a_bad_choice_names_what_was_sent_and_every_valid_value():
    choices = [("mean", "Mean"), ("max", "Maximum"), ("", "none")]
    message = _error(ChoiceField(choices=choices), "median")
    assert message.startswith('"median" is not a valid choice.')
    assert listed_choices(message) == [key for key, _ in choices]


def test_numbers_are_listed_bare_and_strings_quoted():
    message = _error(ChoiceField(choices=[1, 7, "30"]), "2")
    assert message.endswith('Valid choices: 1, 7, "30".')


def test_a_long_list_is_cut_and_says_how_many_were_left_out():
    keys = [f"choice{i}" for i in range(MAX_LISTED_CHOICES + 15)]
    message = _error(ChoiceField(choices=keys), "nope")
    assert listed_choices(message)[:MAX_LISTED_CHOICES] == keys[:MAX_LISTED_CHOICES]
    assert message.endswith("… (15 more).")
    assert keys[MAX_LISTED_CHOICES] not in message
    short = _error(ChoiceField(choices=keys[:MAX_LISTED_CHOICES]), "nope")
    assert "…" not in short and listed_choices(short) == keys[:MAX_LISTED_CHOICES]


def test_choices_set_after_construction_are_the_ones_listed():
    field = ChoiceField(choices=["a"])
    field.choices = ["b", "c"]
    assert listed_choices(_error(field, "a")) == ["b", "c"]


def test_multiple_choice_names_the_bad_item_and_the_valid_values():
    message = _error(MultipleChoiceField(choices=["a", "b"]), ["a", "z"])
    assert message.startswith('"z" is not a valid choice.')
    assert listed_choices(message) == ["a", "b"]


def test_a_callers_own_message_still_wins():
    field = ChoiceField(choices=["a"], error_messages={"invalid_choice": "{input}: use {choices}"})
    assert _error(field, "b") == 'b: use "a"'


def test_model_serializers_build_choice_model_fields_with_our_field():
    class SeriesKindSerializer(ModelSerializer):
        class Meta:
            model = Series
            fields = ["kind"]

    field = SeriesKindSerializer().fields["kind"]
    assert isinstance(field, ChoiceField)
    assert listed_choices(_error(field, "histogram")) == list(Series.Kind.values)
