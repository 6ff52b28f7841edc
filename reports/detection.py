"""Cluster detection on a survey's reports: jobs, scan runs, and their reads.

The scan itself is `reports.scan` (plain numpy). This module adapts database
rows to its arrays, stores each run so it can be reproduced (seed, replica
count, numpy and code versions, a fingerprint of the input), and turns ranked
cuts into clusters that only ever release figures about groups of at least
the survey's minimum group size.

A run is a Celery chord: `detection_prepare` computes the observed cuts and
stores the input arrays once; chunk tasks compute replica maxima for
(model, start, stop) from the stored arrays; `detection_rank` scores and
stores the clusters. Chunk results are upserted on (run, model, start), so a
retried chunk changes nothing.
"""

import datetime as dt
import hashlib
import io
import logging
import math
import secrets
from pathlib import Path

import numpy as np
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Max, Min, OuterRef, Q, Subquery
from django.utils import timezone

from reports import detectable, phrases, scan
from reports.jobs import (
    _UNFINISHED,
    JobFailure,
    job_finish,
    job_mark_running,
    job_progress_set,
)
from reports.models import AggregationState, DetectionChunk, DetectionCluster, DetectionRun, Job
from reports.simulate import branch_units
from surveys import catalog
from surveys.models import (
    STUDY_WINDOW_MAX_YEARS,
    OrgUnit,
    Report,
    Survey,
    years_before,
)
from surveys.periods import next_period_start, periods_between

DEFAULT_REPLICAS = 999
MIN_REPLICAS = 99
MAX_REPLICAS = 9999
CUTS_PER_MODEL = 20
# One statistic for both signals whose null holds on real org data:
# `profile_floor` scores every cut as its counts against a time profile half way
# between the rest of the company's and a uniform one, plus its signature LLR on
# cuts holding at least two pattern reports, and calibrates on replicas that
# permute periods and case labels together, so it needs no Bonferroni split
# between the two. It replaced `profile` (the same without the floor), whose
# replicas' one-case cuts raised the bar a drive seen only in counts had to
# reach, and `joint` (targeted + signature), which lost a sixth of such a drive's
# power to the rest's noise (BENCHMARKS.md, "Detection"). `wave` alarms on any
# company-wide review season and `per_capita` on teams that simply report more
# by habit; they, `profile`, `joint`, and targeted and signature on their own,
# run only when asked for by name.
DEFAULT_MODELS = ("profile_floor",)
# The largest scan a run takes on, in units x periods: the scan's arrays grow
# with it (BENCHMARKS.md measures 20,000 units x 156 weeks). Larger surveys are
# refused before anything is loaded.
MAX_DETECTION_CELLS = 4_000_000
# A stuck job must not block automatic runs for ever.
JOB_STALE_AFTER = dt.timedelta(hours=2)
CODE_VERSION = hashlib.sha256(Path(scan.__file__).read_bytes()).hexdigest()[:16]

# Celery's per-task lines are off (they would date reports); a chunk line
# names only its run and replica range, so operators still see where it ran.
logger = logging.getLogger(__name__)

# A cluster is a finding, and is released at all, only at this adjusted p-value or below.
SIGNIFICANCE_LEVEL = 0.05


# --------------------------------------------------------------------------------------
# inputs: database rows -> scan arrays
# --------------------------------------------------------------------------------------


def detection_size_check(*, survey: Survey) -> None:
    """Refuses, with words for the organizer, a scan larger than
    MAX_DETECTION_CELLS units x periods or longer than the longest study
    window, from two counting queries and before any array is built."""
    units = OrgUnit.objects.filter(survey=survey).count()
    span = Report.objects.filter(survey=survey).aggregate(first=Min("period_start"),
                                                          last=Max("period_start"))
    if span["first"] is None:
        return
    periods = periods_between(period=survey.period, first=span["first"], last=span["last"])
    today = timezone.localdate()
    longest = periods_between(period=survey.period,
                              first=years_before(today, STUDY_WINDOW_MAX_YEARS), last=today)
    # The messages do not name the span itself, which would date the
    # earliest and latest reports beyond what the published cells show.
    if periods > longest:
        raise JobFailure(
            f"The reports span more {survey.period}s than detection scans: at most {longest:,} "
            f"({STUDY_WINDOW_MAX_YEARS} years).")
    if units * periods > MAX_DETECTION_CELLS:
        raise JobFailure(
            f"This survey is too large for detection: its {units:,} units times the "
            f"{survey.period}s its reports span exceed {MAX_DETECTION_CELLS:,} unit-periods.")


def detection_inputs(*, survey: Survey) -> dict[str, np.ndarray]:
    """The survey as scan arrays.

    Units are ordered parents first (depth, then path). Periods run from the
    first to the last period with reports. Reports are sorted by content
    (unit, period, signals, outcome): rows that sort equal are
    interchangeable, so the arrays depend only on what was reported.
    """
    units = list(OrgUnit.objects.filter(survey=survey).order_by("depth", "path")
                 .values_list("id", "path", "parent_id", "headcount"))
    index = {unit_id: i for i, (unit_id, _, _, _) in enumerate(units)}
    parents = np.array([index[parent] if parent is not None else -1
                        for _, _, parent, _ in units], dtype=np.int64)
    headcount = np.array([np.nan if head is None else float(head)
                          for _, _, _, head in units], dtype=np.float64)
    rows = list(Report.objects.filter(survey=survey)
                .values_list("unit_id", "period_start", "signals", "outcome"))
    periods: list[dt.date] = []
    if rows:
        day, last = min(row[1] for row in rows), max(row[1] for row in rows)
        while day <= last:
            periods.append(day)
            day = next_period_start(period=survey.period, start=day)
    period_index = {day: i for i, day in enumerate(periods)}
    outcome_index = {code: i for i, code in enumerate(catalog.OUTCOME_CODES)}
    table = np.array(
        sorted((index[unit], period_index[period], signals, outcome_index.get(outcome, -1))
               for unit, period, signals, outcome in rows),
        dtype=np.int64).reshape(-1, 4)
    return {
        "unit_paths": np.array([path for _, path, _, _ in units], dtype=str),
        "parents": parents,
        "headcount": headcount,
        "period_ordinals": np.array([day.toordinal() for day in periods], dtype=np.int64),
        "report_units": table[:, 0].copy(),
        "report_periods": table[:, 1].copy(),
        "report_signals": table[:, 2].copy(),
        "report_outcomes": table[:, 3].copy(),
    }


def _signature_cases(signals: np.ndarray) -> np.ndarray:
    required = catalog.signals_to_mask(catalog.SIGNATURE_ALL)
    any_of = catalog.signals_to_mask(catalog.SIGNATURE_ANY)
    return ((signals & required) == required) & ((signals & any_of) != 0)


def scan_data(arrays: dict[str, np.ndarray]) -> scan.ScanData:
    headcount = arrays["headcount"]
    return scan.ScanData(
        parents=arrays["parents"], report_units=arrays["report_units"],
        report_periods=arrays["report_periods"],
        n_periods=max(1, arrays["period_ordinals"].size),
        report_cases=_signature_cases(arrays["report_signals"]),
        headcount=headcount if np.isfinite(headcount).any() else None,
    )


def inputs_fingerprint(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{value.dtype.str}:{value.shape};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _pack(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _unpack(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(bytes(blob)), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


# Chunk tasks of one run on one worker process share the decoded arrays, the
# scan's per-model set-up (tree tables, window totals) and the chunk plan, which
# together cost more than a chunk's replicas. The key includes the fingerprint,
# so a cached entry can never stand for other inputs.
_loaded: dict[tuple[str, str], tuple[dict, scan.ScanData]] = {}
_LOADED_MAX = 4


def _run_data(run: DetectionRun) -> tuple[dict, scan.ScanData]:
    key = (str(run.id), run.fingerprint)
    if key not in _loaded:
        while len(_loaded) >= _LOADED_MAX:
            _loaded.pop(next(iter(_loaded)))
        blob = DetectionRun.objects.filter(id=run.id).values_list("inputs", flat=True).get()
        arrays = _unpack(blob)
        _loaded[key] = (arrays, scan_data(arrays))
    return _loaded[key]


def _forget(run_id) -> None:
    for key in [key for key in _loaded if key[0] == str(run_id)]:
        _loaded.pop(key, None)


# --------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------


def chunk_size_for(replicas: int) -> int:
    """About four chunks per model: two tasks per worker for a default run on
    two workers, each a few seconds on a large survey, and few enough that the
    per-task round trips stay small."""
    return int(min(max(math.ceil(replicas / 4), 50), 2500))


def _entropy(seed: int, model: str) -> tuple[int, int]:
    return (int(seed), scan.MODELS.index(model))


@transaction.atomic
def detection_start(*, survey: Survey, replicas: int = DEFAULT_REPLICAS, seed: int | None = None,
                    chunk_size: int | None = None,
                    models: list[str] | None = None) -> DetectionRun:
    """Starts a run; `models` limits it to some of the available models."""
    from reports.tasks import detection_prepare

    if not MIN_REPLICAS <= replicas <= MAX_REPLICAS:
        raise ValueError("replicas out of range")
    if not detection_sees_only_published(survey_id=survey.id):
        raise ValidationError({"detail": [NOTHING_PUBLISHED % {"k": survey.min_group_size}]})
    job = Job.objects.create(survey=survey, kind=Job.Kind.DETECTION)
    run = DetectionRun.objects.create(
        survey=survey, job=job, replicas=replicas,
        publication=AggregationState.objects.values_list("publications", flat=True)
        .get(survey_id=survey.id),
        seed=secrets.randbits(62) if seed is None else seed,
        chunk_size=chunk_size or chunk_size_for(replicas),
        parameters={"models": list(models or DEFAULT_MODELS)},
    )
    detection_prepare.delay_on_commit(run_id=str(run.id))
    return run


NOTHING_PUBLISHED = (
    "Nothing is published yet. Detection scans only the reports the latest publication "
    "counted, so that a result cannot date a single report; the first publication comes "
    "once at least %(k)d reports are in.")


def detection_sees_only_published(*, survey_id) -> bool:
    """True once the survey has been published: reports reach Report only at a
    publication, so Report is then exactly what the latest one counted,
    whatever has arrived since (it is held, not in Report)."""
    return AggregationState.objects.filter(survey_id=survey_id,
                                           published_at__isnull=False).exists()


@transaction.atomic
def detection_start_if_due(*, survey_id) -> DetectionRun | None:
    """Starts the automatic run that follows a publication, unless one is
    under way. Two sweeps may have queued the same survey and their tasks may
    run at once on two workers: the survey's aggregation row is locked first,
    so the second sees the first one's run."""
    list(AggregationState.objects.select_for_update(no_key=True)
         .filter(survey_id=survey_id).values_list("pk", flat=True))
    if str(survey_id) not in {str(s) for s in surveys_due_for_detection()}:
        return None
    return detection_start(survey=Survey.objects.get(id=survey_id))


def detection_prepare(*, run_id) -> list[tuple[str, int, int]]:
    """Stores the input arrays and observed cuts; returns the chunk plan.

    A retry reuses the stored arrays, so every chunk of a run scans the same data.
    """
    run = DetectionRun.objects.select_related("survey").get(id=run_id)
    job_mark_running(job_id=run.job_id)
    if run.inputs is None:
        with transaction.atomic():
            # Under the survey's aggregation lock, which every publication
            # takes: the reports read are exactly one publication's.
            run.publication = (AggregationState.objects.select_for_update(no_key=True)
                               .values_list("publications", flat=True)
                               .get(survey_id=run.survey_id))
            detection_size_check(survey=run.survey)
            arrays = detection_inputs(survey=run.survey)
        data = scan_data(arrays)
        k = run.survey.min_group_size
        models = scan.available_models(data)
        if run.parameters.get("models"):
            models = [model for model in models if model in run.parameters["models"]]
        observed = {}
        for model in models:
            cuts = scan.observed_cuts(data, model, min_reports=k, limit=CUTS_PER_MODEL)
            observed[model] = [
                {"branch": cut.branch, "start": cut.start, "end": cut.end,
                 "observed": cut.observed, "expected": cut.expected, "llr": cut.llr,
                 "n_reports": cut.n_reports}
                for cut in cuts]
        require_finite(observed, what="observed cuts")
        run.inputs = _pack(arrays)
        run.fingerprint = inputs_fingerprint(arrays)
        run.numpy_version = np.__version__
        run.code_version = CODE_VERSION
        run.models_run = models
        run.observed = observed
        run.parameters = {**run.parameters, "min_reports": k, "max_window": scan.resolve_max_window(
            data.n_periods, None), "leave_branch_out": True, "cuts_per_model": CUTS_PER_MODEL,
            "period": run.survey.period, "entropy": "(seed, model index)",
            "targeted_statistic": "branch x window table LLR", "adjustment": "bonferroni"}
        run.save(update_fields=["inputs", "fingerprint", "numpy_version", "code_version",
                                "models_run", "observed", "parameters", "publication"])
        # This worker process runs chunks too: spare them decoding what is at hand.
        _loaded[(str(run.id), run.fingerprint)] = (arrays, data)
    return chunk_plan(run=run)


def _has_non_finite(value) -> bool:
    if isinstance(value, dict):
        return any(_has_non_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(item) for item in value)
    if isinstance(value, float | np.floating):
        return not math.isfinite(value)
    return False


def require_finite(value, *, what: str) -> None:
    """Stored statistics are finite numbers or None: JSON has no NaN or
    infinity (SQLite's JSON_VALID and PostgreSQL's jsonb refuse them) and no
    reader could make sense of one. The scan gives finite values by
    construction; this stops a run that does not, before anything is written."""
    if _has_non_finite(value):
        raise JobFailure(f"Detection computed a value that is not a finite number ({what}); "
                         "nothing was stored. The error was logged for the operator.")


def chunk_plan(*, run: DetectionRun) -> list[tuple[str, int, int]]:
    """Only models with an observed cut need a null distribution."""
    return [(model, start, min(start + run.chunk_size, run.replicas))
            for model in run.models_run if run.observed.get(model)
            for start in range(0, run.replicas, run.chunk_size)]


def detection_chunk(*, run_id, model: str, start: int, stop: int) -> None:
    # The input blob is read only on a cache miss, not with every chunk.
    run = DetectionRun.objects.defer("inputs").get(id=run_id)
    _, data = _run_data(run)
    maxima = scan.replica_maxima(
        data, model, entropy=_entropy(run.seed, model), start=start, stop=stop,
        min_reports=run.parameters["min_reports"],
        max_window=run.parameters["max_window"],
        leave_branch_out=run.parameters["leave_branch_out"])
    DetectionChunk.objects.bulk_create(
        [DetectionChunk(run=run, model=model, start=start, stop=stop,
                        maxima=maxima.astype("<f8").tobytes())],
        update_conflicts=True, unique_fields=["run", "model", "start"],
        update_fields=["stop", "maxima"])
    done = DetectionChunk.objects.filter(run=run).count()
    total = len(chunk_plan(run=run))
    logger.info("detection run %s: %s replicas %d-%d done", run.id, model, start, stop)
    job_progress_set(job_id=run.job_id, progress=done / total if total else 1.0)


def _maxima(run: DetectionRun, model: str) -> np.ndarray:
    chunks = list(run.chunks.filter(model=model).order_by("start").values_list(
        "start", "stop", "maxima"))
    expected_start = 0
    parts = []
    for start, stop, blob in chunks:
        if start != expected_start:
            raise RuntimeError(f"replicas {expected_start}..{start} of {model} are missing")
        parts.append(np.frombuffer(bytes(blob), dtype="<f8"))
        expected_start = stop
    if expected_start != run.replicas:
        raise RuntimeError(f"replicas {expected_start}..{run.replicas} of {model} are missing")
    return np.concatenate(parts)


def _shares(*, inside: np.ndarray, arrays: dict, k: int) -> list[phrases.SignalShare]:
    """Share of the cluster's reports with each signal and outcome, against the
    reports outside it. A share is shown only when the reports it counts are
    at least k; the outside share only when the outside group is at least k and
    its count is zero or at least k, so no figure narrows down fewer than k."""
    signals = arrays["report_signals"]
    outcomes = arrays["report_outcomes"]
    n_in = int(inside.sum())
    n_out = int(inside.size - n_in)
    flags = [(code, (signals & catalog.signal_bit(code)) != 0) for code in catalog.SIGNAL_CODES]
    flags += [(code, outcomes == i) for i, code in enumerate(catalog.OUTCOME_CODES)]
    out = []
    for code, has in flags:
        count = int((has & inside).sum())
        if n_in < k or count < k:
            continue
        outside = int((has & ~inside).sum())
        baseline = None
        if n_out >= k and (outside == 0 or outside >= k):
            baseline = outside / n_out
        share = count / n_in
        lift = share / baseline if baseline else None
        out.append(phrases.SignalShare(code, count, share, baseline, lift))
    out.sort(key=lambda s: (-(s.lift if s.lift is not None else math.inf), -s.share, s.code))
    return out


def detection_rank(*, run_id) -> int:
    """Scores the observed cuts against the replica maxima and stores the
    clusters (at least k observed), best first; returns how many.

    The stored rows keep the run's exact figures (counts, expectation, ratio, LLR, shares
    against live reports) so that a run can be checked and reproduced; they are never
    released as they are: `reports.selectors.cluster_release` decides what of a cluster
    leaves the server."""
    run = DetectionRun.objects.select_related("survey").defer("inputs").get(id=run_id)
    arrays, _ = _run_data(run)
    k = run.survey.min_group_size
    n_models = len(run.models_run)
    parents = arrays["parents"]
    paths = arrays["unit_paths"]
    days = [dt.date.fromordinal(int(o)) for o in arrays["period_ordinals"]]
    ranked = []
    critical = math.inf
    for model in run.models_run:
        if not run.observed.get(model):
            continue  # no cut to score, so no replicas were drawn (chunk_plan)
        maxima = _maxima(run, model)
        critical = min(critical, detectable.critical_llr(
            maxima, alpha=SIGNIFICANCE_LEVEL, n_models=n_models))
        cuts = [cut for cut in run.observed[model] if cut["observed"] >= k]
        if not cuts:
            continue
        for cut in cuts:
            p_raw = scan.monte_carlo_p(cut["llr"], maxima)
            ranked.append((scan.bonferroni(p_raw, n_models), -cut["llr"], model, cut, p_raw))
    ranked.sort(key=lambda item: (item[0], item[1], scan.MODELS.index(item[2])))
    clusters = []
    for rank, (p_value, _, model, cut, p_raw) in enumerate(ranked):
        branch = cut["branch"]
        members = np.zeros(parents.size, dtype=bool)
        members[branch_units(parents, branch)] = True
        inside = (members[arrays["report_units"]]
                  & (arrays["report_periods"] >= cut["start"])
                  & (arrays["report_periods"] <= cut["end"]))
        shares = _shares(inside=inside, arrays=arrays, k=k)
        n_in = int(inside.sum())
        dominant = phrases.signature_marked({s.code: s.share for s in shares})
        expected = float(cut["expected"])
        clusters.append(DetectionCluster(
            run=run, rank=rank, model=model,
            scope="company" if parents[branch] < 0 else "unit",
            unit_path=str(paths[branch]), start=days[cut["start"]], end=days[cut["end"]],
            observed=cut["observed"], n_reports=n_in, expected=expected,
            relative_risk=cut["observed"] / expected if expected > 0 else None,
            llr=cut["llr"], p_raw=p_raw, p_value=p_value,
            signals=[{"code": s.code, "share": s.share, "baseline_share": s.baseline_share,
                      "lift": s.lift} for s in shares],
            summary=phrases.cluster_summary(shares=shares, signature_dominant=dominant),
            signature_dominant=dominant,
        ))
    require_finite([[c.expected, c.relative_risk, c.llr, c.p_raw, c.p_value, c.signals]
                    for c in clusters], what="clusters")
    with transaction.atomic():
        DetectionCluster.objects.filter(run=run).delete()
        DetectionCluster.objects.bulk_create(clusters)
        DetectionRun.objects.filter(id=run.id, finished__isnull=True).update(
            finished=timezone.now(), detectable=_detectable_fields(arrays, critical))
        job_finish(job_id=run.job_id, succeeded=True)
    _forget(run.id)
    return len(clusters)


def _detectable_fields(arrays: dict, critical: float) -> dict:
    """What a read needs to say how large a drive the run could have found
    (`reports.selectors.detectable_sizes`): nothing here is released as it is."""
    own = arrays["headcount"]
    headcount = float(np.nansum(own)) if np.isfinite(own).any() else 0.0
    return {"critical_llr": critical if math.isfinite(critical) else None,
            "periods": int(max(1, arrays["period_ordinals"].size)), "headcount": headcount}


def detection_failed(*, run_id) -> bool:
    return DetectionRun.objects.filter(id=run_id, job__status=Job.Status.FAILED).exists()


def detection_fail(*, run_id, error: str = "") -> None:
    run = DetectionRun.objects.filter(id=run_id).only("job_id").first()
    if run is not None:
        job_finish(job_id=run.job_id, succeeded=False, error=error)
    _forget(run_id)


def surveys_due_for_detection(*, now: dt.datetime | None = None) -> list:
    """Surveys with a publication newer than the one their latest run scanned
    and no run under way, whatever has arrived since (it waits, held, for the
    next publication); one query. detection_start_if_due checks again under a
    lock."""
    now = now or timezone.now()
    busy = Job.objects.filter(kind=Job.Kind.DETECTION, status__in=_UNFINISHED,
                              created__gt=now - JOB_STALE_AFTER).values("survey_id")
    latest_run = (DetectionRun.objects.filter(survey_id=OuterRef("survey_id"))
                  .order_by("-created").values("publication")[:1])
    due = (AggregationState.objects
           .filter(published_at__isnull=False, publications__gt=0)
           .exclude(survey_id__in=busy)
           .annotate(latest_run=Subquery(latest_run))
           .filter(Q(latest_run__isnull=True) | Q(publications__gt=F("latest_run")))
           .values_list("survey_id", flat=True))
    return sorted(due, key=str)


# --------------------------------------------------------------------------------------
# synthetic surveys
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# reads
# --------------------------------------------------------------------------------------
