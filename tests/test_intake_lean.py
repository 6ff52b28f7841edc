"""The report API parses well-formed bodies without its serializer; whatever
that lean parse accepts, the serializer must accept with the same values."""

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from surveys import catalog, intake
from surveys.api import ReportCreateApi

texts = st.one_of(st.text(max_size=70), st.sampled_from(["", " ", " Acme ", "a\x00b", "\ud800"]),
                  st.text(min_size=1990, max_size=2010, alphabet="x "))
codes = st.one_of(st.sampled_from(catalog.SIGNAL_CODES), st.text(max_size=8), st.integers())
periods = st.one_of(st.dates(min_value=dt.date(1900, 1, 1)).map(dt.date.isoformat),
                    st.sampled_from(["2026-1-5", "20260114", "2026-W03-1", "2026-13-45",
                                     " 2026-01-14", "2026-01-14T00:00"]),
                    st.integers(), st.none())
values = st.one_of(texts, st.none(), st.integers(), st.lists(st.text(max_size=3), max_size=2))
bodies = st.fixed_dictionaries(
    {"unit": st.one_of(texts, st.integers(), st.none()), "period": periods,
     "signals": st.one_of(st.lists(codes, max_size=2 * len(catalog.SIGNAL_CODES) + 2),
                          st.text(max_size=5))},
    optional={"outcome": st.one_of(st.sampled_from(catalog.OUTCOME_CODES), values),
              "comment": values, "token": values, "extra": values})


@settings(max_examples=400, deadline=None)
@given(bodies)
def test_what_the_lean_parse_accepts_the_serializer_accepts_alike(body):
    lean = intake.lean_values(body)
    if lean is None:
        return
    serializer = ReportCreateApi.Input(data=body)
    assert serializer.is_valid(), serializer.errors
    expected = dict(serializer.validated_data)
    for name in ("outcome", "comment", "token"):
        expected[name] = expected[name] or ""
    assert lean == expected


def test_the_usual_body_takes_the_lean_parse():
    body = {"unit": "Acme/Retail", "period": "2026-01-14", "signals": ["abrupt_reversal"],
            "comment": " thanks "}
    assert intake.lean_values(body) == {
        "unit": "Acme/Retail", "period": dt.date(2026, 1, 14), "signals": ["abrupt_reversal"],
        "outcome": "", "comment": "thanks", "token": ""}
