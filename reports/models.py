"""Derived data. Reports (surveys.Report, the published set) are the only
source of truth; every row here can be deleted and rebuilt from them."""

import uuid

from django.db import models

from surveys.models import UNIT_PATH_MAX_LENGTH, OrgUnit, Survey


class PendingChange(models.Model):
    """A (unit, period) whose cells must be recomputed.

    Written and consumed inside a publication's transaction, for the cells
    its reports changed. It names no report, and its random id orders nothing.
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
    serialises publications and recomputation of one survey's cells.
    `published_at` names the slot of the latest publication (surveys.slots),
    never the moment it committed."""

    survey = models.OneToOneField(Survey, on_delete=models.CASCADE, primary_key=True,
                                  related_name="aggregation")
    published_at = models.DateTimeField(null=True, blank=True)
    publications = models.PositiveIntegerField(default=0)


class Job(models.Model):
    """An organizer's background action (rebuild, detection) and how far it got.

    Progress only moves forward: every update is conditional on the row still
    being unfinished and behind, so a late or retried task cannot rewind it.
    """

    class Kind(models.TextChoices):
        REBUILD = "rebuild", "Rebuild"
        DETECTION = "detection", "Detection"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=9, choices=Kind.choices)
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)
    # Why a failed job failed, in words for the organizer; empty otherwise.
    error = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(progress__gte=0, progress__lte=1),
                                   name="job_progress_range"),
        ]
        indexes = [models.Index(fields=["survey", "kind", "status"], name="job_survey_kind_idx")]


class DetectionRun(models.Model):
    """One scan of a survey's reports: everything needed to reproduce it.

    `inputs` holds the scan arrays once (an .npz blob), so chunk tasks receive
    only the run id. Report rows enter the arrays in a canonical content order,
    never in storage order, so equal data gives equal arrays and fingerprints.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="detection_runs")
    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="detection_run")
    seed = models.BigIntegerField()
    replicas = models.PositiveIntegerField()
    chunk_size = models.PositiveIntegerField()
    numpy_version = models.CharField(max_length=32, blank=True)
    code_version = models.CharField(max_length=64, blank=True)
    fingerprint = models.CharField(max_length=64, blank=True)
    parameters = models.JSONField(default=dict)
    models_run = models.JSONField(default=list)
    observed = models.JSONField(default=dict)
    inputs = models.BinaryField(null=True, blank=True)
    # The publication (AggregationState.publications) whose reports the run scans.
    publication = models.PositiveIntegerField(null=True)
    # What the run could have found (reports.detectable): its critical LLR, the periods
    # it scanned and the surveyed headcount, from which a read states, with the released
    # total, the least relative risk a drive needs to be found. Null until ranked.
    detectable = models.JSONField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)


class DetectionChunk(models.Model):
    """Replica maxima of replicas [start, stop) of one model, as float64 bytes."""

    run = models.ForeignKey(DetectionRun, on_delete=models.CASCADE, related_name="chunks")
    model = models.CharField(max_length=16)
    start = models.PositiveIntegerField()
    stop = models.PositiveIntegerField()
    maxima = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "model", "start"], name="detectionchunk_unique"),
        ]


class DetectionCluster(models.Model):
    """A ranked cut of a finished run; only cuts with at least k observed are kept."""

    run = models.ForeignKey(DetectionRun, on_delete=models.CASCADE, related_name="clusters")
    rank = models.PositiveIntegerField()
    model = models.CharField(max_length=16)
    scope = models.CharField(max_length=8)
    unit_path = models.CharField(max_length=1000)
    start = models.DateField()
    end = models.DateField()
    observed = models.PositiveIntegerField()
    n_reports = models.PositiveIntegerField()
    expected = models.FloatField()
    relative_risk = models.FloatField(null=True)
    llr = models.FloatField()
    p_raw = models.FloatField()
    p_value = models.FloatField()
    signals = models.JSONField(default=list)
    summary = models.TextField(blank=True)
    signature_dominant = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "rank"], name="detectioncluster_unique_rank"),
        ]


class ReleasedTable(models.Model):
    """What a survey's dashboards may show, as of its last publication point.

    Computed once per publication, in the transaction that writes the published cells, so a
    read never runs disclosure control. ``tree`` holds the units, their parents and the
    periods; ``release`` the released report counts as a units x periods matrix (each
    unit's row, and its signal and outcome counts, are in `ReleasedPart` too),
    ``aggregates`` the aggregates API's body,
    ``comments`` the released comment sets. Valid only for the ``min_group_size`` it was
    computed with.
    """

    survey = models.OneToOneField(Survey, on_delete=models.CASCADE, primary_key=True,
                                  related_name="released_table")
    publications = models.PositiveIntegerField()
    min_group_size = models.PositiveIntegerField()
    published_at = models.DateTimeField(null=True, blank=True)
    # Apart from the counts, so that a read of a few units never fetches the whole matrix.
    tree = models.JSONField(default=dict)
    release = models.JSONField(default=dict)
    aggregates = models.TextField(blank=True)
    # The released comment sets (`reports.comments`), each already in its shown order.
    comments = models.JSONField(default=list)
    # How the survey admitted its reports (`selectors.membership_fields`): a verified
    # survey's domains and the addresses verified, as a lower band only; {} for a link
    # survey. Kept here, as of the publication, because the issuance rows it counts are
    # destroyed when the survey closes.
    membership = models.JSONField(default=dict)


class ReleasedPart(models.Model):
    """One unit's released report, signal and outcome counts at the last publication, as
    JSON text:
    written with the survey's ReleasedTable, in the same transaction. A row per unit, so a
    read that shows a few units fetches those rows alone, whatever the size of the rest."""

    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="+")
    unit = models.CharField(max_length=UNIT_PATH_MAX_LENGTH)
    parts = models.TextField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["survey", "unit"], name="releasedpart_unique_unit"),
        ]
