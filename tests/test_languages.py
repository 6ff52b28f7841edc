"""Chorus ships in English, Spanish and German: complete catalogs, the language chosen
from the browser or the switcher at the foot of every page, and the API's field messages
in the language the client asked for."""

import datetime as dt
import gettext
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import translation

from reports import phrases
from reports.selectors import ClusterShare, ReleasedCluster, cluster_sentence
from tests.conftest import require
from tests.factories import report_payload
from tests.test_i18n import _po_string, po_msgids

ROOT = Path(settings.BASE_DIR)
SHIPPED = [code for code, _name in settings.LANGUAGES if code != settings.LANGUAGE_CODE]
SOURCE_APPS = ("server", "surveys", "reports")


def po_entries(path: Path) -> list[dict]:
    """Each entry of a .po file: its flags, msgid, msgid_plural and msgstr / msgstr[n]."""
    entries, entry, key = [], None, None
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        if not line.strip():
            if entry is not None:
                entries.append(entry)
            entry, key = None, None
            continue
        entry = entry if entry is not None else {"flags": set(), "strings": {}}
        if line.startswith("#,"):
            entry["flags"] |= {flag.strip() for flag in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            entry["strings"][key] += _po_string(line)
        else:
            key, _space, quoted = line.partition(" ")
            entry["strings"][key] = _po_string(quoted)
    return [e for e in entries if e["strings"]]


@pytest.fixture(scope="module")
def extracted_msgids(tmp_path_factory) -> set[str]:
    """What makemessages finds in the project's sources today, run over a copy so the
    shipped catalogs are left as they are."""
    require(shutil.which("xgettext") is not None,
            "needs GNU gettext (xgettext): apt-get install gettext")
    work = tmp_path_factory.mktemp("extract")
    for app in SOURCE_APPS:
        shutil.copytree(ROOT / app, work / app,
                        ignore=shutil.ignore_patterns("__pycache__", "static", "migrations"))
    (work / "locale").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        call_command("makemessages", locale=["de"], extensions=["html", "py"], verbosity=0,
                     no_obsolete=True)
    return po_msgids(work / "locale" / "de" / "LC_MESSAGES" / "django.po")


def shipped_po(language: str) -> Path:
    return ROOT / "locale" / language / "LC_MESSAGES" / "django.po"


def test_spanish_and_german_ship():
    assert set(SHIPPED) == {"es", "de"}
    for language in SHIPPED:
        assert shipped_po(language).is_file()
        assert shipped_po(language).with_suffix(".mo").is_file()


@pytest.mark.parametrize("language", SHIPPED)
def test_every_string_in_the_sources_is_in_the_shipped_catalog(extracted_msgids, language):
    shipped = po_msgids(shipped_po(language))
    assert sorted(extracted_msgids - shipped) == []


@pytest.mark.parametrize("language", SHIPPED)
def test_the_shipped_catalog_holds_no_string_the_sources_no_longer_use(extracted_msgids,
                                                                       language):
    assert sorted(po_msgids(shipped_po(language)) - extracted_msgids) == []


@pytest.mark.parametrize("language", SHIPPED)
def test_every_string_in_the_shipped_catalog_is_translated(language):
    untranslated = []
    for entry in po_entries(shipped_po(language)):
        strings = entry["strings"]
        if strings.get("msgid") == "":
            assert "fuzzy" not in entry["flags"], "the header is still fuzzy"
            continue
        translations = [value for key, value in strings.items() if key.startswith("msgstr")]
        if "fuzzy" in entry["flags"] or not translations or not all(translations):
            untranslated.append(strings["msgid"])
    assert untranslated == []


@pytest.mark.parametrize("language", SHIPPED)
def test_the_shipped_catalog_keeps_every_placeholder_and_compiles(language, tmp_path):
    require(shutil.which("msgfmt") is not None,
            "needs GNU gettext (msgfmt): apt-get install gettext")
    result = subprocess.run(["msgfmt", "--check", "-o", str(tmp_path / "django.mo"),
                             str(shipped_po(language))], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("language", SHIPPED)
def test_the_compiled_catalog_matches_its_source(language):
    with shipped_po(language).with_suffix(".mo").open("rb") as compiled:
        catalog = gettext.GNUTranslations(compiled)
    for entry in po_entries(shipped_po(language)):
        strings = entry["strings"]
        if not strings.get("msgid"):
            continue
        context = strings.get("msgctxt")
        if "msgid_plural" in strings:
            for n, key in ((1, "msgstr[0]"), (2, "msgstr[1]")):
                found = (catalog.npgettext(context, strings["msgid"], strings["msgid_plural"], n)
                         if context else
                         catalog.ngettext(strings["msgid"], strings["msgid_plural"], n))
                assert found == strings[key], strings["msgid"]
        else:
            found = (catalog.pgettext(context, strings["msgid"]) if context
                     else catalog.gettext(strings["msgid"]))
            assert found == strings["msgstr"], strings["msgid"]


def in_language(language: str, text: str) -> str:
    with translation.override(language):
        translated = translation.gettext(text)
    assert translated != text, f"{text!r} has no {language} translation"
    return translated


@pytest.mark.django_db
@pytest.mark.parametrize("language", SHIPPED)
def test_the_form_speaks_the_language_the_browser_asks_for(client, survey, language):
    page = client.get(f"/s/{survey.share_token}/", HTTP_ACCEPT_LANGUAGE=f"{language},en;q=0.5")
    body = page.content.decode()
    assert f'<html lang="{language}">' in body
    assert in_language(language, "Send my report") in body
    assert page["Content-Language"] == language


@pytest.mark.django_db
def test_a_language_the_service_does_not_ship_falls_back_to_english(client, survey):
    body = client.get(f"/s/{survey.share_token}/", HTTP_ACCEPT_LANGUAGE="fi").content.decode()
    assert '<html lang="en">' in body
    assert "Send my report" in body


@pytest.mark.django_db
def test_every_page_offers_the_other_languages_by_their_own_names(client, survey):
    body = client.get(f"/s/{survey.share_token}/", HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert '<span class="language" aria-current="true" lang="de">Deutsch</span>' in body
    assert 'name="language" value="es" lang="es">Español</button>' in body
    assert 'name="language" value="en" lang="en">English</button>' in body
    assert f'name="next" value="/s/{survey.share_token}/"' in body


@pytest.mark.django_db
def test_the_switcher_keeps_the_choice_in_a_cookie_and_returns_to_the_page(client, survey):
    form = f"/s/{survey.share_token}/"
    # No CSRF token: respondent pages send no referrer, and a language is all it sets.
    client.handler.enforce_csrf_checks = True
    response = client.post("/i18n/setlang/", {"language": "es", "next": form})
    assert response.status_code == 302
    assert response["Location"] == form
    cookie = response.cookies[settings.LANGUAGE_COOKIE_NAME]
    assert cookie.value == "es"
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    body = client.get(form, HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert '<html lang="es">' in body


@pytest.mark.django_db
def test_the_switcher_never_sends_anyone_off_the_site(client):
    response = client.post("/i18n/setlang/", {"language": "de",
                                              "next": "https://elsewhere.example/"})
    assert response.status_code == 302
    assert "elsewhere.example" not in response["Location"]


@pytest.mark.django_db
@pytest.mark.parametrize("language", SHIPPED)
def test_intake_answers_field_messages_in_the_language_asked_for(api, survey, language):
    response = api.post(f"/api/v1/s/{survey.share_token}/reports/",
                        report_payload(unit="Acme/Nowhere"), format="json",
                        HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 400
    assert response.json()["unit"] == [in_language(language, "Pick a unit from this survey's "
                                                             "list.")]


@pytest.mark.django_db
def test_intake_without_a_language_answers_in_english(api, survey):
    response = api.post(f"/api/v1/s/{survey.share_token}/reports/",
                        report_payload(unit="Acme/Nowhere"), format="json")
    assert response.json()["unit"] == ["Pick a unit from this survey's list."]


def released_cluster(**changes) -> ReleasedCluster:
    fields = {
        "model": "targeted", "scope": "unit", "unit": "Acme/Retail",
        "start": dt.date(2026, 2, 1), "end": dt.date(2026, 2, 1), "last_day": dt.date(2026, 2, 28),
        "reports": 7, "ratio": 2.5, "p_value": "at most 0.01",
        "signals": [ClusterShare("abrupt_reversal", "", 5, 71, 20, 3.6)],
        "attrition_signature": False, "summary": "", "sentence": ""}
    return ReleasedCluster(**{**fields, **changes})


def test_a_cluster_sentence_is_in_english_by_default():
    with translation.override(settings.LANGUAGE_CODE):
        assert cluster_sentence(released_cluster()) == (
            "Acme/Retail, 1–28 Feb 2026: 7 reports, 2.5× what the rest of the organisation "
            "would predict (p ≤ 0.01); 71% say the feedback turned suddenly.")


def test_a_cluster_sentence_is_written_in_the_active_language_with_its_numbers_and_months():
    december = {"start": dt.date(2025, 12, 1), "end": dt.date(2025, 12, 1),
                "last_day": dt.date(2025, 12, 31)}
    with translation.override("de"):
        sentence = cluster_sentence(released_cluster(**december))
        claim = phrases.signal_claim("abrupt_reversal", 71)
    assert sentence.startswith("Acme/Retail, 1–31 Dez 2025: 7 ")
    assert "2,5×" in sentence
    assert "0,01" in sentence
    assert claim in sentence
    assert "71" in claim
    assert "the feedback turned suddenly" not in sentence
    assert "reports" not in sentence


def test_a_cluster_summary_is_written_in_the_active_language():
    shares = [phrases.SignalShare("abrupt_reversal", 5, 0.71, 0.2, 3.6)]
    with translation.override("es"):
        summary = phrases.cluster_summary(shares=shares, signature_dominant=True)
    assert "feedback" not in summary
    assert "elsewhere" not in summary
    assert "71" in summary
    assert "20" in summary


@pytest.mark.django_db
def test_the_switcher_on_a_not_found_page_carries_nothing_of_the_address(client):
    response = client.get("/s/almost-a-share-token/")
    assert response.status_code == 404
    body = response.content.decode()
    assert 'name="next" value=""' in body
    assert "almost-a-share-token" not in body
