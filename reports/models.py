"""Derived data. Reports (surveys.Report) are the only source of truth; every
row here can be deleted and rebuilt from them."""

import uuid

from django.db import models

from surveys.models import OrgUnit, Survey


class UnitAncestor(models.Model):
    """Closure of the org tree: one row per (unit, ancestor-or-self)."""

    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="+")
    unit = models.ForeignKey(OrgUnit, on_delete=models.CASCADE, related_name="ancestor_links")
    ancestor = models.ForeignKey(OrgUnit, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["unit", "ancestor"], name="unitancestor_unique"),
        ]
        indexes = [models.Index(fields=["ancestor", "unit"], name="unitancestor_ancestor_idx")]


class PendingChange(models.Model):
    """Outbox: a (unit, period) whose cells must be recomputed.

    Written in the same transaction as the report it stands for, so a change
    is never lost when the broker is down; the aggregation task deletes the
    rows it handled. It names no report, and its random id orders nothing.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="+")
    unit = models.ForeignKey(OrgUnit, on_delete=models.CASCADE, related_name="+")
    period_start = models.DateField()


class CellCounts(models.Model):
    unit = models.ForeignKey(OrgUnit, on_delete=models.CASCADE, related_name="+")
    period_start = models.DateField()
    reports = models.PositiveIntegerField()
    signals = models.JSONField(default=dict)
    outcomes = models.JSONField(default=dict)

    class Meta:
        abstract = True


class Cell(CellCounts):
    """Live counts for a unit (with all its descendants) in a period. Never
    released directly: dashboards read PublishedCell."""

    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="cells")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["survey", "unit", "period_start"],
                                    name="cell_unique_unit_period"),
        ]


class PublishedCell(CellCounts):
    """The counts as of the survey's last publication point."""

    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="published_cells")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["survey", "unit", "period_start"],
                                    name="publishedcell_unique_unit_period"),
        ]


class AggregationState(models.Model):
    """Per-survey bookkeeping for publication; its row is also the lock that
    serialises recomputation of one survey's cells."""

    survey = models.OneToOneField(Survey, on_delete=models.CASCADE, primary_key=True,
                                  related_name="aggregation")
    changes_since_publication = models.PositiveIntegerField(default=0)
    published_at = models.DateTimeField(null=True, blank=True)
    publications = models.PositiveIntegerField(default=0)
