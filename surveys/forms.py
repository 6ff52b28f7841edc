"""HTML forms: parsing and display only; the services decide what is valid."""

import datetime as dt
import re

from django import forms
from django.utils.translation import gettext_lazy as _

from surveys import catalog
from surveys.models import (
    MIN_GROUP_SIZE_FLOOR,
    MIN_GROUP_SIZE_MAX,
    REPORT_CODE_MAX_LENGTH,
    REPORT_COMMENT_MAX_LENGTH,
    REPORT_TOKEN_MAX_LENGTH,
    UNIT_PATH_MAX_LENGTH,
    Survey,
)
from surveys.periods import period_label, period_start_for
from surveys.services import report_period_range

PERIODS_OFFERED = {Survey.Period.MONTH: 24, Survey.Period.WEEK: 78}


def period_choices(*, survey: Survey, today: dt.date) -> list[tuple[str, str]]:
    """The recent months (or weeks) a respondent can pick, newest first, none
    before the survey's study start (report_period_range).

    A list of periods rather than a free date: the survey stores only the
    period anyway, and an exact day would be one more thing that identifies.
    """
    period = survey.period
    first, _last = report_period_range(survey=survey, today=today)
    start = period_start_for(period=period, day=today)
    choices = []
    for _index in range(PERIODS_OFFERED[period]):
        if start < first:
            break
        choices.append((start.isoformat(), period_label(period=period, start=start)))
        start = period_start_for(period=period, day=start - dt.timedelta(days=1))
    blank = _("Choose a month") if period == Survey.Period.MONTH else _("Choose a week")
    return [("", blank), *choices]


class ReportForm(forms.Form):
    unit = forms.CharField(
        label=_("Your unit"), max_length=UNIT_PATH_MAX_LENGTH,
        help_text=_("Pick the smallest group you are comfortable naming; larger groups protect "
                    "you better."),
        error_messages={"required": _("Type or pick your unit.")},
    )
    period = forms.ChoiceField(
        label=_("When did the feedback change?"),
        error_messages={"required": _("Pick the month or week when it started.")},
    )
    signals = forms.MultipleChoiceField(
        label=_("What did you see?"), required=False, widget=forms.CheckboxSelectMultiple,
        choices=[(entry.code, entry.label) for entry in catalog.SIGNALS],
    )
    outcome = forms.ChoiceField(
        label=_("Where are you now? (optional)"), required=False,
        choices=[("", _("Skip this question"))]
        + [(entry.code, entry.label) for entry in catalog.OUTCOMES],
    )
    comment = forms.CharField(
        label=_("Anything else? (optional)"), required=False, max_length=REPORT_COMMENT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4, "maxlength": REPORT_COMMENT_MAX_LENGTH}),
        help_text=_("Do not include names, job titles, project names or anything else that "
                    "points to you or to anyone else. Email addresses, phone numbers, links and "
                    "@handles are removed automatically; names are not."),
    )

    # The membership token of a verified or invite-only survey, filled in by verify.js once
    # the browser holds one.
    token = forms.CharField(required=False, max_length=REPORT_TOKEN_MAX_LENGTH,
                            widget=forms.HiddenInput)

    # One per rendering of the form, so that a reload of the receipt page,
    # which posts the same form again, files nothing (see report_create_once).
    submission_token = forms.CharField(required=False, max_length=REPORT_CODE_MAX_LENGTH,
                                       widget=forms.HiddenInput)

    def __init__(self, *args, survey: Survey, today: dt.date, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["period"].choices = period_choices(survey=survey, today=today)
        if not survey.needs_token:
            del self.fields["token"]


class ReceiptForm(forms.Form):
    receipt = forms.CharField(label=_("Your receipt"), max_length=REPORT_CODE_MAX_LENGTH,
                              error_messages={"required": _("Paste your receipt.")})

    def clean_receipt(self) -> str:
        return self.cleaned_data["receipt"].strip()


class AmendForm(ReportForm):
    """The answers of a stored report, to change; the receipt rides along
    hidden, so it never appears in a URL."""

    receipt = forms.CharField(max_length=REPORT_CODE_MAX_LENGTH, widget=forms.HiddenInput,
                              error_messages={"required": _("Paste your receipt.")})

    def __init__(self, *args, survey: Survey, today: dt.date, **kwargs):
        super().__init__(*args, survey=survey, today=today, **kwargs)
        self.fields.pop("token", None)
        del self.fields["submission_token"]
        # A report older than the periods offered keeps its own period on offer.
        chosen = str(self["period"].value() or "")
        field = self.fields["period"]
        if chosen and chosen not in {value for value, _label in field.choices}:
            try:
                start = dt.date.fromisoformat(chosen)
            except ValueError:
                return
            field.choices = [*field.choices,
                             (chosen, period_label(period=survey.period, start=start))]

    def clean_receipt(self) -> str:
        return self.cleaned_data["receipt"].strip()


class WithdrawForm(forms.Form):
    CHECK = "check"
    WITHDRAW = "withdraw"

    receipt = forms.CharField(label=_("Your receipt"), max_length=REPORT_CODE_MAX_LENGTH,
                              error_messages={"required": _("Paste your receipt.")})
    action = forms.ChoiceField(choices=[(CHECK, _("Check")), (WITHDRAW, _("Withdraw"))],
                               required=False)

    def clean_receipt(self) -> str:
        return self.cleaned_data["receipt"].strip()

    def clean_action(self) -> str:
        # Older pages posted no action; they only ever withdrew.
        return self.cleaned_data["action"] or self.WITHDRAW


class SurveySettingsForm(forms.Form):
    """What an organizer may change about a survey at any time."""

    title = forms.CharField(
        label=_("Title"), max_length=200,
        help_text=_("Respondents see it at the top of the form; the shared dashboard shows "
                    "it too."))
    access = forms.ChoiceField(
        label=_("Who may report"), choices=Survey.Access.choices, initial=Survey.Access.LINK,
        widget=forms.RadioSelect,
        help_text=_("With invite codes, someone who only has the link cannot report: you hand "
                    "each coworker one code, which buys them one token nobody can tie to "
                    "their report. With a verified work "
                    "address, each coworker proves by a mailed code that they hold an address "
                    "at one of the domains below, and gets one token nobody can tie to their "
                    "report."))
    email_domains = forms.CharField(
        label=_("Work email domains (verified access only)"), required=False, max_length=2000,
        help_text=_("For example acme.example, acme.co.uk: separated by commas or spaces."))
    closes_on = forms.DateField(
        label=_("Last day for reports (optional)"), required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("After this day the form says the survey is closed. Leave it empty to "
                    "close the survey yourself."))


    def clean_email_domains(self) -> list[str]:
        # Checked as domains by the service (surveys.membership.email_domains_clean).
        return [name for name in re.split(r"[\s,;]+", self.cleaned_data["email_domains"])
                if name]


class SurveyCreateForm(SurveySettingsForm):
    period = forms.ChoiceField(
        label=_("Reports name a"), choices=Survey.Period.choices, initial=Survey.Period.MONTH,
        help_text=_("Month or week of the change. Weeks show a drive sooner but need more "
                    "reports before a figure can be shown. Fixed once units are loaded."))
    min_group_size = forms.IntegerField(
        label=_("Minimum group size"), min_value=MIN_GROUP_SIZE_FLOOR,
        max_value=MIN_GROUP_SIZE_MAX, initial=5,
        help_text=_("Any figure smaller than this is hidden on every page and export, so no "
                    "one can be singled out. 5 or more is safer; it can be raised later, "
                    "never lowered once units are loaded."))

    field_order = ["title", "period", "min_group_size", "access", "email_domains", "closes_on"]


class MinGroupSizeForm(forms.Form):
    min_group_size = forms.IntegerField(
        label=_("Minimum group size"), min_value=MIN_GROUP_SIZE_FLOOR,
        max_value=MIN_GROUP_SIZE_MAX,
        help_text=_("Any total smaller than this is hidden. Once units are loaded it can "
                    "be raised but not lowered."))


class UnitsForm(forms.Form):
    units = forms.CharField(
        label=_("Units, one per line: path[,headcount]"),
        widget=forms.Textarea(attrs={"rows": 10}),
        help_text=_("For example: Acme/Retail/Marketing,40"),
    )

    def clean_units(self) -> list[dict]:
        units = []
        for number, line in enumerate(self.cleaned_data["units"].splitlines(), start=1):
            if not line.strip():
                continue
            path, _sep, headcount = line.partition(",")
            headcount = headcount.strip()
            if headcount and not headcount.isdigit():
                raise forms.ValidationError(
                    _("Line %(n)d: the headcount must be a whole number.") % {"n": number})
            units.append({"path": path, "headcount": int(headcount) if headcount else None})
        if not units:
            raise forms.ValidationError(_("Give at least one unit."))
        return units


class UnitsCsvForm(forms.Form):
    file = forms.FileField(label=_("CSV file: path,headcount"))

    def clean_file(self) -> str:
        upload = self.cleaned_data["file"]
        if upload.size > 4 * 1024 * 1024:
            raise forms.ValidationError(_("The file is larger than 4 MB."))
        try:
            return upload.read().decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise forms.ValidationError(
                _("The file must be UTF-8 text (save it as \"CSV UTF-8\").")) from error


class InvitesForm(forms.Form):
    count = forms.IntegerField(label=_("How many codes"), min_value=1, max_value=5000,
                               initial=50)
