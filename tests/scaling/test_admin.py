"""Admin pages render: every model's list, the resource chart page, the dry-run action."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from scaling import services
from scaling.models import ScalableResource

from .factories import cpu_rule, resource, samples
from .test_concurrency import form_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def test_every_model_lists_and_the_chart_page_draws_decisions(staff):
    res = resource()
    cpu_rule(res)
    samples("test.cpu", [0.9])
    services.decisions_evaluate(resource_ids=[res.pk], execute=True)
    for model in ("scalableresource", "scalingrule", "scalingdecision"):
        response = staff.get(reverse(f"admin:scaling_{model}_changelist"))
        assert response.status_code == 200, model
    page = staff.get(reverse("admin:scaling_scalableresource_chart", args=[res.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "utilisation" in html and "decision: executed" in html


def test_dry_run_action_reports_without_writing(staff):
    from scaling.models import ScalingDecision

    res = resource()
    cpu_rule(res)
    samples("test.cpu", [0.9])
    response = staff.post(
        reverse("admin:scaling_scalableresource_changelist"),
        {"action": "evaluate_dry_run", "_selected_action": [res.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "4-&gt;6" in response.content.decode() or "4->6" in response.content.decode()
    assert ScalingDecision.objects.count() == 0


def test_the_admin_form_names_a_bad_actuator_config():
    res = resource(actuator="webhook")
    res.actuator_config = {"retries": "three"}
    with pytest.raises(ValidationError) as raised:
        res.full_clean()
    assert "retries" in str(raised.value.message_dict["actuator_config"])


def test_the_admin_refuses_overlapping_steps():
    res = resource()
    rule = cpu_rule(res, kind="step", steps=[{"lower": 0.8, "upper": None, "change": 1},
                                             {"lower": 0.9, "upper": None, "change": 3}])  # fmt: skip
    with pytest.raises(ValidationError, match="overlaps"):
        rule.full_clean()


def test_the_admin_may_lower_max_units_below_the_current_size():
    res = resource(current_units=30, max_units=40)
    res.max_units = 10
    res.full_clean()  # the engine clamps the size at the next evaluation


def test_bounds_crossed_by_a_concurrent_admin_edit_are_reported_not_a_500(staff, monkeypatch):
    res = resource(min_units=1, max_units=10)
    update = services.resource_update

    def another_admin_first(*, resource_id, data):
        ScalableResource.objects.filter(pk=resource_id).update(min_units=8)
        return update(resource_id=resource_id, data=data)

    monkeypatch.setattr(services, "resource_update", another_admin_first)
    url = reverse("admin:scaling_scalableresource_change", args=[res.pk])
    page = staff.get(url)
    data = {**form_data(page.context["adminform"].form), "max_units": "5"}
    for inline in page.context["inline_admin_formsets"]:
        data.update(form_data(inline.formset.management_form))
    response = staff.post(url, data, follow=True)
    assert response.status_code == 200
    assert any("Not saved: min_units" in str(m) for m in response.context["messages"])
    res.refresh_from_db()
    assert (res.min_units, res.max_units) == (8, 10)


def test_the_resource_list_says_when_a_size_is_outside_the_bounds(staff):
    resource(name="capped", current_units=12, max_units=6)
    resource(name="fine", current_units=4)
    html = staff.get(reverse("admin:scaling_scalableresource_changelist")).content.decode()
    assert html.count("current size 12 is above max_units 6") == 1
    assert "within" in html
