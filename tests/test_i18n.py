"""The respondent pages are ready for translation: every string they show
goes through Django's translation machinery, and makemessages finds them."""

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import translation

from surveys import catalog
from tests.conftest import require
from tests.factories import report_payload

ROOT = Path(settings.BASE_DIR)
SURVEY_TEMPLATES = ROOT / "surveys" / "templates" / "surveys"
# Pages a respondent can reach: everything under surveys/ but the organizer's,
# and the shared frame and error pages. A new respondent template is linted
# without being listed.
RESPONDENT_TEMPLATES = sorted(
    [path for path in SURVEY_TEMPLATES.glob("*.html") if not path.name.startswith("organizer_")]
    + [ROOT / "server" / "templates" / name for name in ("base.html", "404.html", "500.html")])
# Every template people read: respondent, organizer, dashboard, site and error pages (the API
# docs page is drf-spectacular's, in English like its Swagger UI).
SHOWN_TEMPLATES = sorted(
    path for app in ("server", "surveys", "reports")
    for path in (ROOT / app / "templates").rglob("*.html") if "drf_spectacular" not in path.parts)
# Python modules whose strings respondents read: field labels and help,
# the signal catalog, and the services' validation messages.
RESPONDENT_MODULES = [ROOT / "surveys" / name for name in ("forms.py", "catalog.py",
                                                            "services.py")]
# Words that stay as they are in every language.
ALLOWED_BARE_WORDS = {"Chorus", "CSV", "JSON"}
# Attributes whose values people read or hear.
SHOWN_ATTRIBUTES = {"title", "alt", "placeholder", "aria-label", "aria-description",
                    "aria-roledescription", "aria-valuetext"}
# data-* attributes that carry element ids or flags for chorus.js, not text.
DATA_IDENTIFIERS = {"data-copy", "data-counter", "data-unit-picker", "data-submit-once",
                    "data-path", "data-sending", "data-stat", "data-copy-status",
                    "data-jobs-url", "data-survey", "data-verification-url",
                    "data-token-key-url", "data-tokens-url", "data-token-spent", "data-verify-step"}

_TRANSLATED_BLOCK = re.compile(
    r"{%\s*blocktrans(?:late)?\b.*?%}.*?{%\s*endblocktrans(?:late)?\s*%}", re.S)
_COMMENT_BLOCK = re.compile(r"{%\s*comment\s*%}.*?{%\s*endcomment\s*%}", re.S)
# Blocks of base.html that fill an attribute (a link target, a class name).
_ATTRIBUTE_BLOCK = re.compile(
    r"{%\s*block\s+(?:brand_href|main_class|language_next)\s*%}.*?{%\s*endblock\s*%}", re.S)
_TEMPLATE_SYNTAX = re.compile(r"{%.*?%}|{{.*?}}|{#.*?#}", re.S)


class ShownText(HTMLParser):
    """Collects the text a page shows: text nodes outside script and style,
    and the attributes read aloud or displayed."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.shown: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag, attrs):
        if tag in {"script", "style"}:
            self._hidden_depth += 1
        for name, value in attrs:
            if value and (name in SHOWN_ATTRIBUTES
                          or (name.startswith("data-") and name not in DATA_IDENTIFIERS)):
                self.shown.append(value)
            if value and tag == "input" and name == "value" and (
                    dict(attrs).get("type") in {"submit", "button", "reset"}):
                self.shown.append(value)

    def handle_endtag(self, tag):
        if tag in {"script", "style"}:
            self._hidden_depth -= 1

    def handle_data(self, data):
        if not self._hidden_depth:
            self.shown.append(data)


def bare_text(source: str) -> list[str]:
    """What is left of a template once translated text and template syntax are
    removed: words found here would reach the page untranslated."""
    source = _COMMENT_BLOCK.sub(" ", source)
    source = _ATTRIBUTE_BLOCK.sub("", source)
    source = _TRANSLATED_BLOCK.sub(" ", source)
    source = _TEMPLATE_SYNTAX.sub("", source)
    parser = ShownText()
    parser.feed(source)
    parser.close()
    words = re.findall(r"[^\W\d_][\w'’-]*", " ".join(parser.shown))
    return [word for word in words if word not in ALLOWED_BARE_WORDS]


def po_msgids(path: Path) -> set[str]:
    """The msgids (and plural msgids) of a .po file."""
    ids: set[str] = set()
    current: list[str] | None = None
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        if line.startswith(("msgid ", "msgid_plural ")):
            if current is not None:
                ids.add("".join(current))
            current = [_po_string(line.split(" ", 1)[1])]
        elif line.startswith('"') and current is not None:
            current.append(_po_string(line))
        elif current is not None:
            ids.add("".join(current))
            current = None
    ids.discard("")
    return ids


def _po_string(quoted: str) -> str:
    body = quoted.strip()[1:-1]
    return re.sub(r'\\(["\\nt])', lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), body)


@pytest.fixture(scope="module")
def german_po(tmp_path_factory) -> Path:
    """Runs makemessages -l de over copies of the respondent templates and
    modules, into a scratch locale directory; returns the .po file."""
    require(shutil.which("xgettext") is not None,
            "needs GNU gettext (xgettext): apt-get install gettext")
    work = tmp_path_factory.mktemp("i18n")
    for path in [*RESPONDENT_TEMPLATES, *RESPONDENT_MODULES]:
        target = work / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    (work / "locale").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        call_command("makemessages", locale=["de"], extensions=["html", "py"], verbosity=0,
                     no_obsolete=True)
    return work / "locale" / "de" / "LC_MESSAGES" / "django.po"


@pytest.fixture(scope="module")
def german_catalogue(german_po) -> set[str]:
    return po_msgids(german_po)


FORM_STRINGS = [
    "Send my report",
    "Your unit",
    "When did the feedback change?",
    "What did you see?",
    "Tick all that apply. Leave all unticked if none do.",
    "Anything else? (optional)",
    "Please check the answers marked below.",
    "Pick a unit from this survey's list.",
    "Pick a date from %(first)s to %(last)s: this survey's study window runs from its start "
    "to the current period.",
    "Matching units",
    "No names, please.",
]
RECEIPT_STRINGS = [
    "Your report was received",
    "This code is shown only once, on this page.",
    "It cannot be recovered.",
    "I have saved my receipt",
    "This report was already received",
]
PRIVACY_STRINGS = [
    "What happens to your answer",
    "What is stored",
    "Only the answers on this page, and the week in which it is published.",
    "What is not stored",
    "No account, name, email, IP address, browser details or exact time. This page loads "
    "nothing from other sites and has no analytics.",
    "Chorus keeps no IP addresses, browser details or exact times, and loads nothing from other "
    "sites.",
]
AMEND_STRINGS = ["Change a report", "Save my changes", "Show my answers",
                 "No report matches that receipt. Check it for typos; a withdrawn report no "
                 "longer matches."]


@pytest.mark.parametrize("text", FORM_STRINGS + RECEIPT_STRINGS + PRIVACY_STRINGS
                         + AMEND_STRINGS)
def test_makemessages_collects_the_key_respondent_strings(german_catalogue, text):
    assert text in german_catalogue


def test_makemessages_collects_text_with_placeholders_from_blocktranslate(german_catalogue):
    assert any("any total smaller than %(k)s is hidden" in msgid for msgid in german_catalogue)
    assert any(msgid.startswith("Thank you. Your report to “%(title)s” is stored")
               for msgid in german_catalogue)


def test_makemessages_collects_every_signal_and_outcome_label(german_catalogue):
    with translation.override(None):
        texts = {str(entry.label) for entry in (*catalog.SIGNALS, *catalog.OUTCOMES)}
        texts |= {str(entry.description) for entry in catalog.SIGNALS if entry.description}
    assert texts - german_catalogue == set()


@pytest.mark.parametrize("template", SHOWN_TEMPLATES, ids=lambda path: path.name)
def test_templates_show_no_untranslated_text(template):
    assert bare_text(template.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("source", [
    "<p>Thank you</p>",
    '<button aria-label="Close">{% translate "x" %}</button>',
    '<div data-chosen="Chosen: %(unit)s"></div>',
    "<p>{% translate 'Hello' %} world</p>",
    "<p>{% blocktranslate %}Hello{% endblocktranslate %} again</p>",
])
def test_the_lint_finds_bare_text(source):
    assert bare_text(source)


def test_the_lint_accepts_translated_text_template_syntax_and_identifiers():
    source = ('{% load i18n %}<title>{% translate "Hi" %} · Chorus</title>'
              '<p title="{% translate \'Tip\' %}">{% blocktranslate with n=3 %}{{ n }} left'
              '{% endblocktranslate %} {{ survey.title }}</p>'
              '<button data-copy="receipt" value="withdraw">{% translate "Go" %}</button>'
              '<script>var label = "not shown";</script>{# a note #}'
              '{% comment %}Notes for us.{% endcomment %}')
    assert bare_text(source) == []



def pseudo_translated(po_text: str) -> str:
    """Translates every message to itself between « and », placeholders
    kept, so that text on a page without the marks has escaped translation."""
    blocks = []
    for block in po_text.split("\n\n"):
        # The header comes out of makemessages fuzzy, and msgfmt drops fuzzy entries.
        lines = [line for line in block.splitlines() if line != "#, fuzzy"]
        head = []
        for line in lines:
            if line.startswith("msgstr"):
                break
            head.append(line)
        ids: dict[str, list[str]] = {}
        for line in head:
            if line.startswith(("msgid ", "msgid_plural ")):
                key, _space, first = line.partition(" ")
                ids[key] = [first]
            elif line.startswith('"') and ids:
                ids[key].append(line)
        if ids.get("msgid", ['""']) == ['""']:
            blocks.append("\n".join(lines))
        elif "msgid_plural" in ids:
            blocks.append("\n".join([*head, 'msgstr[0] "«"', *ids["msgid"], '"»"',
                                     'msgstr[1] "«"', *ids["msgid_plural"], '"»"']))
        else:
            blocks.append("\n".join([*head, 'msgstr "«"', *ids["msgid"], '"»"']))
    return "\n\n".join(blocks)


@pytest.fixture
def pseudo_german(german_po, settings, client, api):
    """The respondent pages in "de", every string replaced by «itself», asked for as a
    browser asks (Accept-Language)."""
    require(shutil.which("msgfmt") is not None,
            "needs GNU gettext (msgfmt): apt-get install gettext")
    locale = german_po.parent.parent.parent.with_name("pseudo") / "locale"
    messages = locale / "de" / "LC_MESSAGES"
    messages.mkdir(parents=True, exist_ok=True)
    (messages / "django.po").write_text(pseudo_translated(german_po.read_text(encoding="utf-8")),
                                        encoding="utf-8")
    subprocess.run(["msgfmt", "--check-format", "-o", str(messages / "django.mo"),
                    str(messages / "django.po")], check=True)
    settings.LOCALE_PATHS = [str(locale)]
    settings.LANGUAGES = [("en", "English"), ("de", "Deutsch")]
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "de"
    api.defaults["HTTP_ACCEPT_LANGUAGE"] = "de"
    with translation.override("de"):
        yield


def shown_text(response) -> str:
    parser = ShownText()
    parser.feed(response.content.decode())
    return " ".join(parser.shown)


@pytest.mark.django_db
def test_pages_render_translated_strings_from_templates_forms_catalog_and_services(
        client, survey, pseudo_german):
    page = shown_text(client.get(f"/s/{survey.share_token}/"))
    for text in ("Send my report", "What is not stored", "Your unit", "Choose a month",
                 "I was in good standing before", "Skip this question"):
        assert f"«{text}»" in page
    assert "«Matching units»" in client.get(f"/s/{survey.share_token}/").content.decode()
    rejected = shown_text(client.post(f"/s/{survey.share_token}/",
                                      {**report_payload(unit="Acme/Nowhere"), "period": ""}))
    assert "«Pick the month or week when it started.»" in rejected
    amend = shown_text(client.get(f"/s/{survey.share_token}/amend/"))
    assert "«Change a report»" in amend
    assert "«Your receipt»" in amend


@pytest.mark.django_db
def test_a_service_message_is_translated_when_it_is_raised(api, survey, pseudo_german):
    response = api.post(f"/api/v1/s/{survey.share_token}/reports/",
                        report_payload(unit="Acme/Nowhere"), format="json")
    assert response.json()["unit"] == ["«Pick a unit from this survey's list.»"]
