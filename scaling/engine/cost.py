"""What a change of capacity costs and what it does to utilisation."""

from __future__ import annotations

from dataclasses import dataclass

# An average month (365.25 days / 12), so monthly figures add up over a year.
HOURS_PER_MONTH = 730.5


@dataclass(frozen=True)
class CostImpact:
    per_hour: float
    per_month: float


def cost_impact(current_units: int, desired_units: int, cost_per_unit_hour: float) -> CostImpact:
    """Change in running cost if capacity goes from ``current_units`` to ``desired_units``."""
    delta = (desired_units - current_units) * cost_per_unit_hour
    return CostImpact(per_hour=delta, per_month=delta * HOURS_PER_MONTH)


def expected_utilization(demand: float, units: int, unit_capacity: float) -> float | None:
    """Utilisation if ``demand`` (in capacity units of work) is served by ``units`` units.

    ``None`` when there is no capacity to divide by: saying "infinite" would be
    a number nobody can act on.
    """
    capacity = units * unit_capacity
    if capacity <= 0:
        return None
    return demand / capacity
