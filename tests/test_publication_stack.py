"""Publication on PostgreSQL with real processes: what the database files
say about reports (pageinspect), and what a running stack releases when an
organizer rebuilds or detects between publications, or a beat publishes."""

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from reports import detection
from reports import services as report_services
from reports.models import AggregationState, DetectionRun
from surveys import services
from surveys.models import OrgUnit, Report, Survey
from tests.conftest import require
from tests.factories import OrganizerFactory, invite_token, report_payload, survey_with_units
from tests.stack import job_wait, wait_for

pytestmark = pytest.mark.services

UNITS = ["Acme/Retail/Marketing", "Acme/Retail/Sales", "Acme/Cloud"]


def months_back(count: int) -> list[dt.date]:
    day = timezone.localdate().replace(day=1)
    months = []
    for _ in range(count):
        months.append(day)
        day = (day - dt.timedelta(days=1)).replace(day=1)
    return months


def heap_items(table: str) -> list[tuple]:
    """(ctid page, line pointer, xmin, xmax, raw tuple) of every tuple version
    still in the table's pages, dead ones included."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        cursor.execute(f"""
            SELECT b, lp, t_xmin::text::bigint, t_xmax::text::bigint, t_data
            FROM generate_series(0, (pg_relation_size('{table}')
                                     / current_setting('block_size')::int)::int - 1) AS b,
                 LATERAL heap_page_items(get_raw_page('{table}', b))
            WHERE lp_len > 0""")  # noqa: S608 - table names from the test
        return cursor.fetchall()


@pytest.fixture
def postgres(transactional_db, settings):
    require(connection.vendor == "postgresql", "needs PostgreSQL (DATABASE_URL)")
    settings.CHORUS_PUBLISH_INTERVAL_SECONDS = 3600
    settings.CHORUS_SUBMISSIONS_PER_DAY = 0


def test_the_database_files_pair_no_invite_code_with_a_report_nor_order_a_batch(postgres):
    # Fresh heap files: rows other tests deleted or rolled back stay on the pages
    # (with their xmax) until vacuum, and would read as this test's.
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE surveys_invitecode, surveys_report, surveys_heldreport, "
                       "surveys_spenttoken")
    organizer = OrganizerFactory()
    survey = survey_with_units(owner=organizer, min_group_size=3, paths=UNITS)
    services.survey_update(survey=survey, fields={"access": Survey.Access.INVITE})
    organizer_api = APIClient()
    organizer_api.force_authenticate(organizer)
    codes = organizer_api.post(f"/api/v1/surveys/{survey.id}/invites/", {"count": 12},
                               format="json").json()["codes"]
    units = dict(OrgUnit.objects.filter(survey=survey).values_list("path", "id"))
    arrivals = []
    api = APIClient()
    bought = [invite_token(api, survey, code) for code in codes]
    for index, (token, month) in enumerate(zip(bought, months_back(4) * 3, strict=True)):
        unit = UNITS[index % 3]
        response = api.post(f"/api/v1/s/{survey.share_token}/reports/", report_payload(
            unit=unit, period=month.isoformat(), token=token,
            comment=f"marker-{index:02d}-sealed"), format="json")
        assert response.status_code == 201, response.content
        arrivals.append((units[unit], month))
    assert len(set(arrivals)) == 12

    def paired() -> set:
        # A code is used up by the transaction that signs its token; no transaction that
        # wrote a report, a held report or a spent token deleted a code.
        redeemed = {xmax for *_, xmax, _data in heap_items("surveys_invitecode") if xmax}
        assert len(redeemed) == 12
        return redeemed & {xmin for table in ("surveys_report", "surveys_heldreport",
                                              "surveys_spenttoken")
                           for _b, _lp, xmin, _x, _d in heap_items(table)}

    assert paired() == set()
    assert report_services.publication_maybe_publish(
        survey_id=survey.id, now=timezone.now() + dt.timedelta(hours=1))
    assert Report.objects.filter(survey=survey).count() == 12
    assert paired() == set()

    redeemed = {xmax for *_, xmax, _data in heap_items("surveys_invitecode") if xmax}
    reports = heap_items("surveys_report")
    assert redeemed.isdisjoint({xmax for *_, xmax, _d in reports if xmax})
    # One transaction wrote the batch, so transaction ids order nothing in it.
    assert len({xmin for _b, _lp, xmin, _x, _d in reports}) == 1
    # Nor does heap order.
    with connection.cursor() as cursor:
        cursor.execute("SELECT unit_id, period_start FROM surveys_report WHERE survey_id = %s "
                       "ORDER BY ctid", [survey.id])
        stored = cursor.fetchall()
    assert sorted(stored) == sorted(arrivals)
    assert stored != arrivals
    assert stored != arrivals[::-1]
    assert len(set(Report.objects.filter(survey=survey).values_list("received_week",
                                                                    flat=True))) == 1
    # The held rows showed a sealed blob, never the answers.
    held = b"".join(bytes(data) for *_, data in heap_items("surveys_heldreport"))
    assert len(heap_items("surveys_heldreport")) >= 12
    assert b"marker-" not in held
    assert b"marker-00-sealed" in b"".join(bytes(data) for *_, data in reports)


def _released(stack, survey) -> dict:
    status, body = stack.request("GET", f"/api/v1/d/{survey.dashboard_token}/aggregates/")
    assert status == 200, body
    return body


def _publications(survey) -> int:
    state = AggregationState.objects.filter(survey=survey).first()
    return state.publications if state else 0


def _file(stack, survey, count: int) -> None:
    for index in range(count):
        status, body = stack.request("POST", f"/api/v1/s/{survey.share_token}/reports/",
                                     report_payload(unit=UNITS[index % 3]))
        assert status == 201, body


def test_a_rebuild_right_after_a_report_moves_no_released_figure_and_loses_no_report(stack):
    survey = survey_with_units(owner=OrganizerFactory(), min_group_size=5, paths=UNITS)
    auth = {"Authorization": f"Token {Token.objects.create(user=survey.owner).key}"}
    stack.start_web()
    stack.start_worker()
    _file(stack, survey, 5)
    wait_for(lambda: _publications(survey) == 1, timeout=60, what="the first publication")
    before = _released(stack, survey)

    _file(stack, survey, 1)
    status, job = stack.request("POST", f"/api/v1/surveys/{survey.id}/rebuild/", {},
                                headers=auth)
    assert status == 202, job
    job_wait(stack, survey_id=survey.id, job_id=job["id"], headers=auth, timeout=60,
             log=stack.logs)
    status, started = stack.request("POST", f"/api/v1/surveys/{survey.id}/detections/",
                                    {"replicas": 99, "seed": 7}, headers=auth)
    assert status == 202, started
    job_wait(stack, survey_id=survey.id, job_id=started["id"], headers=auth, timeout=120,
             log=stack.logs)

    assert _released(stack, survey) == before
    run = DetectionRun.objects.get(job_id=started["id"])
    assert detection._unpack(run.inputs)["report_units"].size == 5
    # The report filed before the rebuild still counts towards the next publication.
    _file(stack, survey, 4)
    wait_for(lambda: _publications(survey) == 2, timeout=60, what="the second publication")
    assert Report.objects.filter(survey=survey).count() == 10


def test_a_beat_publishes_at_slot_boundaries_and_detection_follows_with_reports_waiting(stack):
    survey = survey_with_units(owner=OrganizerFactory(), min_group_size=3, paths=UNITS)
    stack.extra_env["CHORUS_PUBLISH_INTERVAL_SECONDS"] = "2"
    stack.start_web()
    stack.start_worker()
    stack.start_beat(sweep_seconds=0.5)
    _file(stack, survey, 3)

    wait_for(lambda: _publications(survey) >= 1, timeout=60, what="a scheduled publication")
    status, body = stack.request("GET", f"/api/v1/d/{survey.dashboard_token}/export/")
    assert status == 200, body
    published_at = dt.datetime.fromisoformat(body["published_at"])
    assert published_at.microsecond == 0
    assert int(published_at.timestamp()) % 2 == 0
    assert Report.objects.filter(survey=survey).count() == 3

    _file(stack, survey, 1)  # waits: fewer than k new reports
    run = wait_for(lambda: DetectionRun.objects.filter(survey=survey, finished__isnull=False)
                   .first(), timeout=120, interval=0.5, what="the automatic detection run")
    assert run.publication == _publications(survey)
    assert detection._unpack(run.inputs)["report_units"].size == 3


def test_concurrent_changes_to_a_published_report_and_a_publication_all_succeed(postgres):
    import threading

    survey = survey_with_units(owner=OrganizerFactory(), min_group_size=3, paths=UNITS)
    api = APIClient()
    receipts = [api.post(f"/api/v1/s/{survey.share_token}/reports/",
                         report_payload(unit=UNITS[index % 3]), format="json").json()["receipt"]
                for index in range(6)]
    boundary = timezone.now() + dt.timedelta(hours=1)
    assert report_services.publication_maybe_publish(survey_id=survey.id, now=boundary)
    for _ in range(3):
        api.post(f"/api/v1/s/{survey.share_token}/reports/", report_payload(), format="json")
    barrier = threading.Barrier(9)
    outcomes: list = []

    def amend(receipt: str, unit: str) -> None:
        try:
            barrier.wait()
            response = APIClient().patch(
                f"/api/v1/s/{survey.share_token}/reports/{receipt}/", {"unit": unit},
                format="json")
            outcomes.append(response.status_code)
        finally:
            connection.close()

    def publish() -> None:
        try:
            barrier.wait()
            outcomes.append(report_services.publication_maybe_publish(
                survey_id=survey.id, now=boundary + dt.timedelta(hours=1)))
        finally:
            connection.close()

    threads = [threading.Thread(target=amend, args=(receipts[index % 2], UNITS[index % 3]))
               for index in range(8)] + [threading.Thread(target=publish)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes, key=str) == [200] * 8 + [True]
    report_services.publication_maybe_publish(survey_id=survey.id, force=True)
    assert Report.objects.filter(survey=survey).count() == 9
