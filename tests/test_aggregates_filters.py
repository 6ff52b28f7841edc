import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

pytestmark = pytest.mark.django_db

JAN, FEB = dt.date(2026, 1, 14), dt.date(2026, 2, 10)


def aggregates(client, survey, query: str = ""):
    return client.get(f"/api/v1/d/{survey.dashboard_token}/aggregates/{query}")


def in_subtree(unit: str, path: str) -> bool:
    return path == unit or path.startswith(unit + "/")


@pytest.mark.parametrize(("query", "unit", "first", "last"), [
    ("?unit=Acme/Retail", "Acme/Retail", None, None),
    ("?from=2026-02-01", None, "2026-02-01", None),
    ("?to=2026-01-01", None, None, "2026-01-01"),
    ("?unit=Acme/Retail/Marketing&from=2026-01-01&to=2026-01-31",
     "Acme/Retail/Marketing", "2026-01-01", "2026-01-31"),
])
def test_a_filtered_body_is_the_matching_subset_of_the_unfiltered_body(
        client, published, query, unit, first, last):
    whole = aggregates(client, published).json()
    response = aggregates(client, published, query)
    assert response.status_code == 200

    def keep(row):
        return ((unit is None or in_subtree(unit, row["unit"]))
                and (first is None or row["period"] >= first)
                and (last is None or row["period"] <= last))

    assert response.json() == {
        "min_group_size": whole["min_group_size"],
        "cells": [c for c in whole["cells"] if keep(c)],
        "units": [t for t in whole["units"] if unit is None or in_subtree(unit, t["unit"])],
        "breakdowns": [b for b in whole["breakdowns"] if keep(b)],
    }
    assert response.json()["cells"]


def test_a_cell_hidden_in_the_whole_table_stays_hidden_in_every_filter(client, published):
    whole = {(c["unit"], c["period"]): c for c in aggregates(client, published).json()["cells"]}
    hidden = {key for key, cell in whole.items() if cell["suppressed"]}
    # Sales' single report, and Marketing's 4 in February next to Retail's 4.
    assert ("Acme/Retail/Sales", "2026-01-01") in hidden
    assert ("Acme/Retail/Marketing", "2026-02-01") in hidden
    for query in ("?unit=Acme/Retail/Sales", "?unit=Acme/Retail/Marketing&from=2026-02-01",
                  "?unit=Acme/Retail&from=2026-01-01&to=2026-02-01"):
        for cell in aggregates(client, published, query).json()["cells"]:
            assert cell == whole[(cell["unit"], cell["period"])], query
            if (cell["unit"], cell["period"]) in hidden:
                assert cell["reports"] is None


def test_the_organizer_api_filters_the_same_way(client, published, organizer):
    from tests.test_dashboard import organizer_client

    mine = organizer_client(organizer).get(
        f"/api/v1/surveys/{published.id}/aggregates/?unit=Acme/Cloud&from=2026-02-01")
    assert mine.status_code == 200
    assert mine.json() == aggregates(client, published, "?unit=Acme/Cloud&from=2026-02-01").json()


@pytest.mark.parametrize(("query", "field"), [
    ("?from=yesterday", "from"),
    ("?to=2026-13-01", "to"),
    ("?unit=", "unit"),
    ("?from=", "from"),
    ("?to=", "to"),
    ("?unti=Acme", "unti"),
    ("?from=2026-01-01&=null", ""),
])
def test_a_bad_filter_is_a_400_naming_the_field(client, published, query, field):
    response = aggregates(client, published, query)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert field in response.json()


@pytest.mark.parametrize("unit", ["Acme/Nowhere", "Acme/Retail/", "0"])
def test_a_unit_not_in_the_tree_is_a_404_naming_the_field(client, published, unit):
    response = aggregates(client, published, f"?unit={unit}")
    assert response.status_code == 404
    assert "unit" in response.json()


def test_the_filters_are_documented_in_the_schema(client):
    schema = client.get("/api/schema/?format=json").json()
    for path in ("/api/v1/surveys/{survey_id}/aggregates/",
                 "/api/v1/d/{dashboard_token}/aggregates/"):
        names = {p["name"] for p in schema["paths"][path]["get"].get("parameters", [])
                 if p["in"] == "query"}
        assert {"unit", "from", "to"} <= names, path


def test_a_unit_filter_reads_the_signal_counts_of_its_subtree_alone(client, published):
    # The cost of a filtered read follows the subtree: other units' breakdowns stay unread.
    with CaptureQueriesContext(connection) as queries:
        assert aggregates(client, published, "?unit=Acme/Retail").status_code == 200
    sent = " ".join(query["sql"] for query in queries.captured_queries)
    assert "Acme/Retail/Marketing" in sent
    assert "Acme/Cloud" not in sent


def test_a_unit_filter_never_fetches_the_whole_count_matrix(client, published):
    # The units x periods matrix grows with the tree and the reports; a subtree's counts
    # come from its units' rows.
    with CaptureQueriesContext(connection) as queries:
        assert aggregates(client, published, "?unit=Acme/Retail").status_code == 200
    fetched = [query["sql"] for query in queries.captured_queries
               if '"reports_releasedtable"' in query["sql"]]
    assert fetched
    assert not any('"reports_releasedtable"."release"' in sql for sql in fetched)
    assert any('"reports_releasedtable"."tree"' in sql for sql in fetched)
