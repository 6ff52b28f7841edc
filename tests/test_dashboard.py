import csv
import datetime as dt
import io
import re

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from reports import charts
from reports import services as report_services
from reports.models import DetectionCluster, DetectionRun, Job
from surveys import intake, services
from surveys.models import HeldReport, Report
from tests.factories import PASSWORD, OrganizerFactory, file_reports, survey_with_units

pytestmark = pytest.mark.django_db

JAN, FEB, MAR = dt.date(2026, 1, 14), dt.date(2026, 2, 10), dt.date(2026, 3, 3)


@pytest.fixture(autouse=True)
def cold_cache():
    # Releases are cached per publication; tests that count queries need a cold start.
    cache.clear()


def page(client, survey, query: str = ""):
    return client.get(f"/d/{survey.dashboard_token}/{query}")


def shared(client, survey, what: str) -> dict:
    response = client.get(f"/api/v1/d/{survey.dashboard_token}/{what}/")
    assert response.status_code == 200
    return response.json()


def organizer_client(organizer) -> Client:
    client = Client()
    assert client.login(username=organizer.username, password=PASSWORD)
    return client


def test_shared_dashboard_shows_overview_timeline_heatmap_and_how_to_read(client, published):
    response = page(client, published)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Reports over time, all units" in html
    assert '<svg class="chart"' in html
    assert 'class="hm-group"' in html
    assert "<summary" in html
    assert "How to read this" in html
    assert "p-value" in html
    assert 'data-stat="reports"' in html
    assert "<script>" not in html
    assert "style=" not in html


def test_a_new_report_below_the_publication_threshold_changes_nothing(
        client, published, django_capture_on_commit_callbacks):
    before = page(client, published).content
    api_before = shared(client, published, "aggregates")
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(published, 2, unit="Acme/Cloud")  # 2 new reports < k = 3: held
    assert Report.objects.filter(survey=published).count() == 16
    assert HeldReport.objects.filter(survey=published).count() == 2
    assert page(client, published).content == before
    assert shared(client, published, "aggregates") == api_before


def test_dashboard_reads_never_touch_reports(client, published):
    for path in (f"/d/{published.dashboard_token}/",
                 f"/d/{published.dashboard_token}/?unit=Acme/Retail",
                 f"/api/v1/d/{published.dashboard_token}/aggregates/",
                 f"/api/v1/d/{published.dashboard_token}/export/"):
        cache.clear()
        with CaptureQueriesContext(connection) as queries:
            assert client.get(path).status_code == 200
        assert not [q for q in queries if '"surveys_report"' in q["sql"]], path


def test_parent_minus_child_cannot_reveal_a_small_team(client, published):
    cells = {(c["unit"], c["period"]): c["reports"]
             for c in shared(client, published, "aggregates")["cells"]}
    # Retail = Marketing 6 + Sales 1 in January: showing both would give Sales = 1.
    retail, marketing = cells[("Acme/Retail", "2026-01-01")], cells[
        ("Acme/Retail/Marketing", "2026-01-01")]
    assert cells[("Acme/Retail/Sales", "2026-01-01")] is None
    assert retail is None or marketing is None


def test_suppressed_cells_say_hidden_on_the_page(client, published):
    html = page(client, published).content.decode()
    assert 'class="suppressed" data-period="2026-01-01" data-hidden>hidden' in html
    assert "fewer than 3" in html


def test_subtree_timeline_is_the_units_released_row(client, published):
    html = page(client, published, "?unit=Acme/Cloud").content.decode()
    assert "Reports over time in Acme/Cloud" in html
    assert '<tr data-period="2026-02-01"><th scope="row">Feb 2026</th><td>5</td>' in html


def test_bad_filters_answer_400_with_field_messages(client, published):
    response = page(client, published, "?start=2026-13-01&end=nope")
    assert response.status_code == 400
    html = response.content.decode()
    assert "start: " in html
    assert "end: " in html
    response = page(client, published, "?start=2026-03-01&end=2026-01-01")
    assert response.status_code == 400
    assert "The end must not be before the start." in response.content.decode()


def test_an_unknown_unit_filter_shows_all_units(client, published):
    response = page(client, published, "?unit=Nowhere")
    assert response.status_code == 200
    assert "Reports over time, all units" in response.content.decode()


def test_signal_breakdown_shows_only_released_signal_counts(client, published):
    # February: Cloud 5, all with the same signal.  Marketing's 4 are hidden: next to
    # Retail's 4 they would show that nobody in Sales reported.
    html = page(client, published, "?unit=Acme/Cloud&start=2026-02-01").content.decode()
    assert "What people in Acme/Cloud report" in html
    assert "Share of the 5 reports for Feb 2026." in html
    assert "The feedback turned suddenly" in html
    february = page(client, published, "?unit=Acme/Retail/Marketing&start=2026-02-01")
    assert "What people in" not in february.content.decode()
    body = shared(client, published, "aggregates")
    assert body["breakdowns"]
    for row in body["breakdowns"]:
        for value in (*row["signals"].values(), *row["outcomes"].values()):
            assert value >= 3


def test_exports_equal_the_api_figures(published, organizer):
    client = organizer_client(organizer)
    api_export = shared(client, published, "export")
    mine = client.get(f"/api/v1/surveys/{published.id}/export/").json()
    download = client.get(f"/organizer/surveys/{published.id}/export.json")
    assert download["Content-Disposition"].startswith("attachment")
    assert api_export == mine == download.json()
    aggregates = shared(client, published, "aggregates")
    assert [{key: cell[key] for key in ("unit", "period", "reports", "suppressed")}
            for cell in api_export["cells"]] == aggregates["cells"]
    rows = list(csv.DictReader(io.StringIO(
        client.get(f"/organizer/surveys/{published.id}/export.csv").content.decode())))
    csv_cells = [{"unit": r["unit"], "period": r["period"],
                  "reports": int(r["reports"]) if r["reports"] else None,
                  "suppressed": r["suppressed"] == "true"} for r in rows if r["scope"] == "cell"]
    assert csv_cells == aggregates["cells"]
    totals = {r["unit"]: r["reports"] or None for r in rows if r["scope"] == "unit total"}
    assert totals == {t["unit"]: (str(t["reports"]) if t["reports"] is not None else None)
                      for t in aggregates["units"]}
    codes = {key.split(":", 1)[1] for key in rows[0] if key.startswith("signal:")}
    for row, cell in zip((r for r in rows if r["scope"] == "cell"), api_export["cells"],
                         strict=True):
        assert {c: int(row[f"signal:{c}"]) for c in codes if row[f"signal:{c}"]} == cell["signals"]


def test_csv_export_neutralises_spreadsheet_formulas(organizer, publish_at_once,
                                                     django_capture_on_commit_callbacks):
    survey = survey_with_units(owner=organizer, paths=["=HYPERLINK(1)/Team"])
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(survey, 3, unit="=HYPERLINK(1)/Team")
    body = organizer_client(organizer).get(f"/organizer/surveys/{survey.id}/export.csv")
    assert "'=HYPERLINK(1)/Team" in body.content.decode()
    assert "\n=HYPERLINK" not in body.content.decode().replace("cell,'=", "")


def test_exports_are_the_owners_only(published):
    intruder = organizer_client(OrganizerFactory())
    assert intruder.get(f"/organizer/surveys/{published.id}/export.csv").status_code == 404
    assert intruder.get(f"/organizer/surveys/{published.id}/export.json").status_code == 404
    assert Client().get(f"/organizer/surveys/{published.id}/export.csv").status_code == 302


def test_rotating_the_dashboard_link_makes_the_old_token_404(published, organizer):
    client = organizer_client(organizer)
    old = published.dashboard_token
    response = client.post(f"/organizer/surveys/{published.id}/dashboard-link/")
    assert response.status_code == 302
    published.refresh_from_db()
    assert published.dashboard_token != old
    assert client.get(f"/d/{old}/").status_code == 404
    assert client.get(f"/api/v1/d/{old}/aggregates/").status_code == 404
    assert client.get(f"/api/v1/d/{old}/export/").status_code == 404
    assert client.get(f"/d/{published.dashboard_token}/").status_code == 200


def test_rotating_the_link_needs_post_csrf_and_the_owner(published, organizer):
    old = published.dashboard_token
    url = f"/organizer/surveys/{published.id}/dashboard-link/"
    assert organizer_client(organizer).get(url).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.login(username=organizer.username, password=PASSWORD)
    assert strict.post(url).status_code == 403
    assert organizer_client(OrganizerFactory()).post(url).status_code == 404
    published.refresh_from_db()
    assert published.dashboard_token == old


def test_organizer_page_has_the_tools_and_the_dashboard(published, organizer):
    html = organizer_client(organizer).get(f"/organizer/surveys/{published.id}/").content.decode()
    assert f'action="/organizer/surveys/{published.id}/dashboard-link/"' in html
    assert f'action="/api/v1/surveys/{published.id}/rebuild/"' in html
    assert f'action="/api/v1/surveys/{published.id}/detections/"' in html
    assert "reports/organizer.js" in html
    assert "<progress" in html
    assert f"/organizer/surveys/{published.id}/export.csv" in html
    assert "Reports over time, all units" in html


def finished_run_with_cluster(survey, **cluster):
    job = Job.objects.create(survey=survey, kind=Job.Kind.DETECTION, status=Job.Status.SUCCEEDED,
                             progress=1.0)
    run = DetectionRun.objects.create(survey=survey, job=job, seed=1, replicas=99,
                                      chunk_size=99, finished=timezone.now(),
                                      parameters={"min_reports": survey.min_group_size})
    values = {"rank": 0, "model": "poisson", "scope": "unit", "unit_path": "Acme/Retail/Marketing",
              "start": dt.date(2026, 1, 1), "end": dt.date(2026, 1, 1), "observed": 6,
              "n_reports": 6, "expected": 1.5, "relative_risk": 4.1, "llr": 5.0, "p_raw": 0.001,
              "p_value": 0.001, "summary": "live summary"}
    values.update(cluster)
    return DetectionCluster.objects.create(run=run, **values)


def test_cluster_card_counts_come_from_the_released_cells(client, published):
    finished_run_with_cluster(published, unit_path="Acme/Cloud", start=dt.date(2026, 2, 1),
                              end=dt.date(2026, 2, 1), observed=17)
    html = page(client, published).content.decode()
    # Cloud's released cell gives the count, but the unit's total over the
    # whole survey is needed for a ratio.
    assert "Acme/Cloud, 1–28 Feb 2026: 5 reports" in html
    assert "17 reports" not in html
    assert "4.1×" not in html
    assert "live summary" not in html


def test_a_cluster_ratio_is_worked_out_from_released_counts_only(
        client, survey, publish_at_once, django_capture_on_commit_callbacks):
    # Every cell at least k, so every cell and total is released.
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(survey, 6, signals=("abrupt_reversal",))
        file_reports(survey, 3, unit="Acme/Retail/Sales", signals=("abrupt_reversal",))
        file_reports(survey, 4, unit="Acme/Cloud")
        file_reports(survey, 4, period=FEB, signals=("abrupt_reversal",))
        file_reports(survey, 3, unit="Acme/Retail/Sales", period=FEB,
                     signals=("abrupt_reversal",))
        file_reports(survey, 5, unit="Acme/Cloud", period=FEB)
    finished_run_with_cluster(survey, unit_path="Acme/Retail", start=dt.date(2026, 2, 1),
                              end=dt.date(2026, 2, 1), relative_risk=4.1, p_value=0.004)
    body = shared(client, survey, "clusters")
    # Retail's 7 in February of its 16, against the rest's 5 of 9: 7 * 9 / (16 * 5).
    assert [(c["unit"], c["reports"], c["ratio"], c["p_value"]) for c in body["clusters"]] == [
        ("Acme/Retail", 7, 0.8, "at most 0.01")]
    assert body["clusters"][0]["sentence"].startswith(
        "Acme/Retail, 1–28 Feb 2026: 7 reports, 0.8× what the rest of the organisation "
        "would predict (p ≤ 0.01)")
    assert shared(client, survey, "export")["clusters"][0]["sentence"] == (
        body["clusters"][0]["sentence"])


@pytest.mark.parametrize(("p_value", "verdict"), [
    (0.0005, "Very unlikely to be chance"), (0.004, "Unlikely to be chance"),
    (0.03, "Not likely to be chance, though chance alone would do this in up to one survey "
           "in twenty")])
def test_a_finding_says_in_words_how_likely_chance_is_before_any_number(
        client, published, p_value, verdict):
    finished_run_with_cluster(published, unit_path="Acme/Cloud", start=dt.date(2026, 2, 1),
                              end=dt.date(2026, 2, 1), p_value=p_value)
    assert shared(client, published, "clusters")["clusters"][0]["verdict"] == verdict
    html = page(client, published).content.decode()
    summary = re.search(r"<details class=\"cluster\"[^>]*>\s*<summary>(.*?)</summary>", html,
                        re.S).group(1)
    assert summary.index(verdict) < summary.index("Acme/Cloud")


def test_the_clusters_endpoint_reads_a_fixed_number_of_queries(
        client, published, django_assert_num_queries):
    finished_run_with_cluster(published, unit_path="Acme/Retail", end=dt.date(2026, 2, 1))
    url = f"/api/v1/d/{published.dashboard_token}/clusters/"
    # survey, run, its clusters, the released table, the units' signal counts
    with django_assert_num_queries(5):
        assert len(client.get(url).json()["clusters"]) == 1


def test_a_cluster_whose_hidden_cells_could_hold_fewer_than_k_is_not_listed(client, published):
    finished_run_with_cluster(published, unit_path="Acme/Retail/Sales", observed=99)
    html = page(client, published).content.decode()
    assert "Acme/Retail/Sales, 1–31 Jan 2026" not in html
    assert "99" not in html
    assert "No finding is not evidence that nothing happened" in html
    assert shared(client, published, "clusters")["clusters"] == []


def test_a_cluster_above_the_significance_level_is_released_nowhere(
        client, organizer, published):
    finished_run_with_cluster(published, unit_path="Acme", p_value=0.06)
    assert shared(client, published, "clusters")["clusters"] == []
    assert shared(client, published, "export")["clusters"] == []
    own = organizer_client(organizer)
    assert own.get(f"/api/v1/surveys/{published.id}/clusters/").json()["clusters"] == []
    html = own.get(f"/organizer/surveys/{published.id}/").content.decode()
    assert "cluster-sentence" not in html
    assert "No cluster stands out at the survey's significance level" in html


def seeded(owner, *, departments: int, teams: int, periods: int):
    paths = [f"Co/D{d}/T{t}" for d in range(departments) for t in range(teams)]
    survey = survey_with_units(owner=owner, paths=paths, min_group_size=3)
    units = dict(survey.units.values_list("path", "id"))
    Report.objects.bulk_create([
        Report(survey=survey, unit_id=units[path], period_start=dt.date(2025, 1 + p, 1),
               signals=1 + (i % 7), received_week=dt.date(2026, 1, 5),
               receipt_hash=f"{survey.id}-{path}-{p}-{i}")
        for path in paths for p in range(periods) for i in range((hash(path) + p) % 6)
    ])
    report_services.cells_rebuild(survey_id=survey.id)
    report_services.publication_maybe_publish(survey_id=survey.id, force=True)
    return survey


@pytest.mark.parametrize("what", ["page", "aggregates", "export", "organizer page",
                                  "organizer export"])
def test_dashboard_reads_take_a_fixed_number_of_queries(organizer, what,
                                                        django_assert_num_queries):
    small = seeded(organizer, departments=1, teams=2, periods=2)
    large = seeded(organizer, departments=6, teams=8, periods=9)
    client = organizer_client(organizer)
    session = 2  # session and user, for the organizer's pages and API

    def path(survey):
        return {"page": f"/d/{survey.dashboard_token}/?unit=Co/D0",
                "aggregates": f"/api/v1/d/{survey.dashboard_token}/aggregates/",
                "export": f"/api/v1/d/{survey.dashboard_token}/export/",
                "organizer page": f"/organizer/surveys/{survey.id}/",
                "organizer export": f"/organizer/surveys/{survey.id}/export.csv"}[what]

    # survey, the stored release and the released signal counts (of the units a page shows,
    # or of all for an export), then the latest detection run (if shown), and the released
    # comment sets; the aggregates are one stored text
    expected = {"page": 5, "aggregates": 2, "export": 5, "organizer page": 7 + session,
                "organizer export": 5 + session}[what]
    for survey in (small, large):
        cache.clear()
        with django_assert_num_queries(expected):
            assert client.get(path(survey)).status_code == 200


def test_a_cached_release_is_replaced_at_the_next_publication(client, published,
                                                              django_capture_on_commit_callbacks):
    before = shared(client, published, "aggregates")
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(published, 3, unit="Acme/Cloud", period=FEB)
    after = shared(client, published, "aggregates")
    cloud = {c["period"]: c["reports"] for c in after["cells"] if c["unit"] == "Acme/Cloud"}
    assert cloud["2026-02-01"] == 8
    assert before != after


def test_a_survey_with_nothing_published_says_so(client, organizer):
    survey = survey_with_units(owner=organizer, paths=["Acme/Team"])
    intake.report_create(survey=survey, draft=services.ReportDraft(
        unit="Acme/Team", period=JAN, signals=()))
    html = page(client, survey).content.decode()
    assert "Nothing is published yet" in html
    assert shared(client, survey, "aggregates")["cells"] == []


UNIT_OPTION = re.compile(r'<option value="([^"]+)">')


@pytest.fixture
def sparse(organizer, publish_at_once, django_capture_on_commit_callbacks):
    """Marketing 6 in January and March, Sales 1 in January, nobody in Quiet or in February."""
    survey = survey_with_units(owner=organizer, min_group_size=3, paths=[
        "Acme/Retail/Marketing", "Acme/Retail/Sales", "Acme/Cloud", "Acme/Quiet/Nobody"])
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(survey, 6)
        file_reports(survey, 1, unit="Acme/Retail/Sales")
        file_reports(survey, 6, period=MAR)
    report_services.publication_maybe_publish(survey_id=survey.id, force=True)
    return survey


TREE = ["Acme", "Acme/Cloud", "Acme/Quiet", "Acme/Quiet/Nobody", "Acme/Retail",
        "Acme/Retail/Marketing", "Acme/Retail/Sales"]


def test_the_unit_filter_lists_the_whole_tree_whoever_reported(client, sparse):
    html = page(client, sparse).content.decode()
    assert UNIT_OPTION.findall(html) == TREE
    html = page(client, sparse, "?unit=Acme/Quiet/Nobody").content.decode()
    assert "Reports over time in Acme/Quiet/Nobody" in html  # an empty unit opens too


def test_an_empty_unit_reads_exactly_like_a_unit_with_one_report(client, sparse, organizer):
    body = shared(client, sparse, "aggregates")
    cells = {(c["unit"], c["period"]): c for c in body["cells"]}
    periods = ["2026-01-01", "2026-02-01", "2026-03-01"]  # February too, where nobody reported
    assert sorted(cells) == sorted((unit, period) for unit in TREE for period in periods)
    withheld = {"reports": None, "suppressed": True}
    for key in [("Acme/Retail/Sales", "2026-01-01"), ("Acme/Quiet/Nobody", "2026-01-01"),
                ("Acme/Cloud", "2026-01-01"), ("Acme", "2026-02-01")]:
        assert {k: cells[key][k] for k in withheld} == withheld, key
    assert cells[("Acme", "2026-01-01")]["reports"] == 7
    totals = {t["unit"]: t for t in body["units"]}
    assert [t["unit"] for t in body["units"]] == TREE
    assert totals["Acme/Quiet"]["reports"] is None
    assert totals["Acme/Quiet"]["suppressed"]
    k = body["min_group_size"]
    export = shared(client, sparse, "export")
    numbers = [c["reports"] for c in body["cells"]] + [t["reports"] for t in body["units"]]
    numbers += [c["reports"] for c in export["cells"]] + [t["reports"] for t in export["units"]]
    numbers += [bar["reports"] for bar in export["timeline"]]
    for row in export["cells"] + export["units"]:
        numbers += [*row["signals"].values(), *row["outcomes"].values()]
    assert all(value is None or value >= k for value in numbers)
    assert "units_with_reports" not in export["overview"]
    download = organizer_client(organizer).get(f"/organizer/surveys/{sparse.id}/export.csv")
    rows = list(csv.DictReader(io.StringIO(download.content.decode())))
    counted = [value for row in rows for name, value in row.items()
               if name == "reports" or name.startswith(("signal:", "outcome:"))]
    assert all(value == "" or int(value) >= k for value in counted)
    for query in ("", "?unit=Acme/Quiet", "?unit=Acme/Retail/Sales", "?unit=Acme/Cloud"):
        html = page(client, sparse, query).content.decode()
        assert "<td>0</td>" not in html
        assert '">0</td>' not in html
        assert "</span>0</span>" not in html  # heatmap
        assert "Units with reports" not in html
        assert ">0 reports" not in html
        assert ": 0 reports" not in html


def test_a_tree_of_twenty_thousand_units_keeps_the_page_bounded_and_queries_fixed(
        organizer, django_assert_num_queries):
    teams = 20_000 - 1 - 10 - 1_000  # the largest tree a survey may have
    paths = [f"Co/O{o}/D{o}.{d}/T{o}.{d}.{t}" for o in range(10) for d in range(100)
             for t in range(19)][:teams]
    survey = survey_with_units(owner=organizer, paths=paths, min_group_size=3)
    units = dict(survey.units.values_list("path", "id"))
    assert len(units) == 20_000
    Report.objects.bulk_create([
        Report(survey=survey, unit_id=units[path], period_start=dt.date(2025, 1 + p, 1),
               signals=1, received_week=dt.date(2026, 1, 5),
               receipt_hash=f"{survey.id}-{path}-{p}-{i}")
        for path in paths[:400] for p in range(2) for i in range(4)])
    report_services.cells_rebuild(survey_id=survey.id)
    report_services.publication_maybe_publish(survey_id=survey.id, force=True)
    client = Client()
    cache.clear()
    # the survey, the stored release and parts, the detection run, the released comments
    with django_assert_num_queries(5):
        response = client.get(f"/d/{survey.dashboard_token}/?unit=Co/O0")
    assert response.status_code == 200
    html = response.content.decode()
    assert len(UNIT_OPTION.findall(html)) == len(units)
    # every path once in the filter, the heatmap down to departments: about 60 bytes a unit
    assert len(response.content) < 80 * len(units), len(response.content)


@pytest.mark.parametrize(("most", "ticks"), [
    (0, (0, 1, 2)), (2, (0, 1, 2)), (3, (0, 2, 4)), (5, (0, 5, 10)), (9, (0, 5, 10)),
    (11, (0, 10, 20)), (25, (0, 20, 40)), (41, (0, 50, 100)), (100, (0, 50, 100)),
    (101, (0, 100, 200)),
])
def test_the_chart_axis_has_evenly_spaced_integer_ticks_above_the_tallest_bar(most, ticks):
    assert charts.axis_ticks(most) == ticks


def test_the_next_update_is_never_named_by_the_published_time(client, published, settings):
    # A slot shorter than the minute the page shows: both times would read the same.
    settings.CHORUS_PUBLISH_INTERVAL_SECONDS = 1
    html = page(client, published).content.decode()
    shown = re.search(r'Figures published</span>\s*<span class="stat-value small">([^<]+)<',
                      html).group(1)
    assert f"no sooner than {shown}" not in html
    assert "Next update" in html
