import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from surveys import services
from surveys.models import OrgUnit, UnitAncestor

pytestmark = pytest.mark.django_db


def csv_url(survey) -> str:
    return f"/api/v1/surveys/{survey.id}/units/csv/"


def send_csv(client, survey, text: str | bytes):
    body = text.encode() if isinstance(text, str) else text
    return client.generic("POST", csv_url(survey), body, content_type="text/csv")


def test_a_csv_body_with_a_header_row_loads_units_and_their_parents(organizer_api, survey):
    response = send_csv(organizer_api, survey,
                        "path,headcount\r\nBeta/Ops/Night shift,7\r\n\r\nBeta/Sales, 12 \r\n"
                        "Gamma,\r\n")
    assert response.status_code == 200
    assert response.json() == {"units": 3}
    units = dict(OrgUnit.objects.filter(survey=survey).values_list("path", "headcount"))
    assert units["Beta/Ops/Night shift"] == 7
    assert units["Beta/Sales"] == 12
    assert units["Beta/Ops"] is None
    assert units["Gamma"] is None
    night = OrgUnit.objects.get(survey=survey, path="Beta/Ops/Night shift")
    assert set(UnitAncestor.objects.filter(unit=night)
               .values_list("ancestor__path", flat=True)) == {"Beta", "Beta/Ops",
                                                              "Beta/Ops/Night shift"}


def test_a_multipart_upload_loads_units_and_reloading_it_changes_nothing(organizer_api,
                                                                         survey):
    content = "\ufeffBeta/Ops,4\nBeta/Ops/Night shift\n".encode()
    for _ in range(2):
        upload = SimpleUploadedFile("units.csv", content, content_type="text/csv")
        response = organizer_api.post(csv_url(survey), {"file": upload}, format="multipart")
        assert response.status_code == 200
    assert OrgUnit.objects.filter(survey=survey, path__startswith="Beta").count() == 3
    assert OrgUnit.objects.get(survey=survey, path="Beta/Ops").headcount == 4


def test_bad_lines_are_named_by_number_and_nothing_is_written(organizer_api, survey):
    before = OrgUnit.objects.count()
    response = send_csv(organizer_api, survey,
                        "path,headcount\nBeta/Ops,3\nBeta//Sales,2\nBeta/HR,-1\nBeta/IT,x\n"
                        "Beta/A,1,2\n")
    assert response.status_code == 400
    errors = response.json()["file"]
    assert [error.split(":")[0] for error in errors] == ["Line 3", "Line 4", "Line 5", "Line 6"]
    assert "non-empty names" in errors[0]
    assert "whole number" in errors[1]
    assert "columns" in errors[3]
    assert OrgUnit.objects.count() == before


@pytest.mark.parametrize(("body", "message"), [
    (b"Beta,1\n\xff\xfe\n", "UTF-8"),
    (b"", "Send a CSV file"),
    (b"path,headcount\n", "no units"),
    (b'"Beta,1\n', "not valid CSV"),
])
def test_unreadable_files_are_rejected(organizer_api, survey, body, message):
    before = OrgUnit.objects.count()
    response = send_csv(organizer_api, survey, body)
    assert response.status_code == 400
    assert message in str(response.json())
    assert OrgUnit.objects.count() == before


def test_csv_import_needs_the_owner(api, survey):
    assert send_csv(api, survey, "Beta\n").status_code == 401
    from tests.factories import OrganizerFactory
    api.force_authenticate(OrganizerFactory())
    assert send_csv(api, survey, "Beta\n").status_code == 404


def twenty_thousand_units() -> list[str]:
    lines = []
    for division in range(20):
        lines.append(f"Division {division}")
        for department in range(9):
            lines.append(f"Division {division}/Department {department},50")
            lines.extend(f"Division {division}/Department {department}/Team {team},"
                         f"{team % 12}" for team in range(110))
    return lines


@pytest.mark.slow
def test_twenty_thousand_units_load_in_one_request(organizer_api, organizer):
    survey = services.survey_create(owner=organizer, title="Big org")
    lines = twenty_thousand_units()
    assert len(lines) == 20_000
    response = send_csv(organizer_api, survey, "path,headcount\n" + "\n".join(lines))
    assert response.status_code == 200
    assert response.json() == {"units": 20_000}
    assert OrgUnit.objects.filter(survey=survey).count() == 20_000
    # Closure rows: each unit with each ancestor, itself included.
    assert UnitAncestor.objects.filter(survey=survey).count() == 20 + 180 * 2 + 19_800 * 3
    team = OrgUnit.objects.get(survey=survey, path="Division 7/Department 3/Team 42")
    assert team.headcount == 6
    assert team.depth == 2
    assert team.parent.path == "Division 7/Department 3"
    one_more = send_csv(organizer_api, survey, "Division 99\n")
    assert one_more.status_code == 400
    assert "20000" in str(one_more.json())
    assert OrgUnit.objects.filter(survey=survey).count() == 20_000


def test_the_organizer_page_uploads_a_csv(organizer, survey):
    client = Client()
    client.force_login(organizer)
    url = reverse("organizer-units-csv", args=[survey.id])
    upload = SimpleUploadedFile("units.csv", b"Beta/Ops,3\nBeta/Sales\n", content_type="text/csv")
    response = client.post(url, {"file": upload})
    assert response.status_code == 302
    assert OrgUnit.objects.filter(survey=survey, path__startswith="Beta").count() == 3
    assert any("Loaded 2 units" in str(message)
               for message in get_messages(response.wsgi_request))


def test_the_organizer_page_shows_bad_lines_and_writes_nothing(organizer, survey):
    client = Client()
    client.force_login(organizer)
    before = OrgUnit.objects.count()
    upload = SimpleUploadedFile("units.csv", b"Beta/Ops,3\nBeta/Sales,many\n")
    response = client.post(reverse("organizer-units-csv", args=[survey.id]), {"file": upload})
    # Answered on the page, under the upload control.
    assert response.status_code == 400
    errors = response.content.decode().split('id="units-file-errors"', 1)[1].split("</div>")[0]
    assert "<li>Line 2:" in errors
    assert OrgUnit.objects.count() == before
