"""Nobody holding what the server kept can tell which verified coworker filed which
report, better than by guessing.

Twenty respondents at the survey's domain, each from an address of its own, buy one token
each and then file their reports in a shuffled order. The attacker reads every row of
every table at every step (binary values included, and the held reports both sealed and
opened with SECRET_KEY, as the operator could), every log record at DEBUG, every cache
write and every mail sent, and pairs issuance-side records with report-side records two
ways: by any byte string of 8 or more that both carry (hex and base64 decoded, so a value
stored in another encoding still meets itself), and by the rank of each row in
primary-key order and in the database's own order (SQLite's rowid; PostgreSQL's ctid and
xmin). Two controls show that the same attacker does link reports once something ties
them: reports filed in the order the tokens were bought, and a log line that names the
address digest when a token is spent. The cache (rate-limit buckets, whose names hash
their scope too) has its own test.
"""
import base64
import binascii
import contextlib
import datetime as dt
import json
import logging
import math
import random
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import pytest
from django.apps import apps
from django.core import mail
from django.core.cache import caches
from django.db import connection
from rest_framework.test import APIClient
from scipy.optimize import linear_sum_assignment

from surveys import tokens
from surveys.holding import held_content
from surveys.models import HeldReport, SpentToken, TokenIssuance
from tests import privacypass_client as client
from tests.conftest import VERIFIED_DOMAIN
from tests.recording_cache import RECORDING
from tests.test_membership import ask_code, base, code_from_mail, file, token_key

pytestmark = pytest.mark.django_db

RESPONDENTS = 20
SEED = 7
# 64 bits: two independent random values share no 8-byte string by chance, even across
# the ~250,000 windows of twenty sealed blobs.
WINDOW = 8
# How often the order attacker may beat its bound by luck alone, over all its strategies.
FALSE_ALARM = 1e-3
# Some respondents answer differently, so that held rows do not all seal one content.
ANSWERS = {
    3: {"signals": ["abrupt_reversal"], "outcome": "resigned"},
    8: {"period": "2026-02-10", "comment": "Told in a one-to-one, no reason given."},
    15: {"signals": ["prior_positive_standing"], "outcome": "transferred"},
}

ISSUANCE, REPORT, CONTEXT = "issuance", "report", "context"
# Where the value attacker looks in the main test: every table, the mail and the logs. The
# cache has a test of its own below.
STORED = frozenset({*(model._meta.db_table for model in apps.get_models(
    include_auto_created=True)), "django_migrations", "held content", "mail", "log"})


def address(n: int) -> str:
    return f"coworker{n}@{VERIFIED_DOMAIN}"


# What the server stored: every row of every table.

def stored_models() -> list:
    return [model for model in apps.get_models(include_auto_created=True)
            if model._meta.managed and not model._meta.proxy]


def plain(value):
    return bytes(value) if isinstance(value, memoryview) else value


def database() -> dict[tuple[str, str], tuple]:
    """Every row, by (table, primary key): through the models, and raw for any table that
    has none (django_migrations), so that no table is left out."""
    rows = {}
    for model in stored_models():
        names = [f.attname for f in model._meta.concrete_fields]
        at = names.index(model._meta.pk.attname)
        for values in model._base_manager.values_list(*names):
            rows[(model._meta.db_table, str(values[at]))] = tuple(map(plain, values))
    modelled = {model._meta.db_table for model in stored_models()}
    with connection.cursor() as cursor:
        for table in sorted(set(connection.introspection.table_names()) - modelled):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for values in cursor.fetchall():
                rows[(table, repr(values))] = tuple(map(plain, values))
    return rows


def physical_orders(model) -> dict[str, dict[str, tuple]]:
    """Each row's place in the database's own bookkeeping, which no primary key hides:
    SQLite's rowid (insertion order); PostgreSQL's ctid (place in the heap, insertion
    order in a fresh table) and xmin (the inserting transaction, ordered across tables)."""
    table = connection.ops.quote_name(model._meta.db_table)
    pk = model._meta.pk
    column = connection.ops.quote_name(pk.column)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"SELECT rowid, {column} FROM {table}")  # noqa: S608
            return {"rowid": {str(pk.to_python(key)): (rowid,)
                              for rowid, key in cursor.fetchall()}}
        assert connection.vendor == "postgresql", connection.vendor
        cursor.execute(f"SELECT ctid::text, xmin::text, {column} FROM {table}")  # noqa: S608
        found = cursor.fetchall()
    return {
        "ctid": {str(pk.to_python(key)): tuple(int(part) for part in ctid.strip("()").split(","))
                 for ctid, _xmin, key in found},
        "xmin": {str(pk.to_python(key)): (int(xmin),) for _ctid, xmin, key in found},
    }


# What it logged, cached and mailed.

@pytest.fixture
def every_log(caplog):
    """caplog at DEBUG for every logger, including those that do not propagate to the
    root (django.request, django.server) or that settings hold at WARNING."""
    kept = []
    for name in list(logging.root.manager.loggerDict):
        logger = logging.getLogger(name)
        kept.append((logger, logger.level, logger.disabled))
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
        if not logger.propagate:
            logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    yield caplog
    for logger, level, disabled in kept:
        logger.setLevel(level)
        logger.disabled = disabled
        if caplog.handler in logger.handlers:
            logger.removeHandler(caplog.handler)


@pytest.fixture
def server(settings, every_log):
    # A local-memory cache that lists the keys written, so its contents can be read too.
    settings.CACHES = RECORDING
    return every_log


def log_values(record: logging.LogRecord) -> tuple:
    shown = logging.Formatter()
    return (record.name, record.levelname, record.getMessage(),
            shown.formatException(record.exc_info) if record.exc_info else "",
            record.stack_info or "")


def mail_values(message) -> tuple:
    return (message.subject, message.body, message.from_email, *message.to, *message.cc,
            *message.bcc, message.message().as_string())


# Compared by identity: two records with the same values are still two records.
@dataclass(frozen=True, eq=False)
class Record:
    side: str  # ISSUANCE, REPORT or CONTEXT: the step that wrote it
    respondent: int | None
    source: str  # a table, "mail", "log" or "cache"
    key: str
    values: tuple
    sequence: int = 0  # the place of a mail, log record or cache write in its stream


@dataclass
class Observation:
    """Everything written, each piece attributed to the step (one respondent's issuance or
    report) that wrote it, and the database as it stands at the end."""

    caplog: pytest.LogCaptureFixture
    records: list[Record] = field(default_factory=list)
    rows: dict = field(default_factory=dict)
    made: dict = field(default_factory=dict)
    mail_at: int = 0
    log_at: int = 0
    cache_at: int = 0

    def start(self):
        self.rows = database()
        self.made = {key: (CONTEXT, None) for key in self.rows}
        self.records += [Record(CONTEXT, None, table, pk, values)
                         for (table, pk), values in self.rows.items()]
        self.streams(CONTEXT, None)

    def step(self, side: str, respondent: int):
        rows = database()
        for key, values in rows.items():
            # A row made or written again in this step: its values as this step left them
            # (dead row versions and the WAL keep them, whatever later steps write).
            if self.rows.get(key) != values:
                self.made.setdefault(key, (side, respondent))
                self.records.append(Record(side, respondent, key[0], key[1], values))
        self.rows = rows
        self.streams(side, respondent)

    def streams(self, side: str, respondent: int | None):
        sent = mail.outbox[self.mail_at:]
        self.records += [Record(side, respondent, "mail", f"mail {self.mail_at + n}",
                                mail_values(message), self.mail_at + n)
                         for n, message in enumerate(sent)]
        self.mail_at += len(sent)
        logged = self.caplog.records[self.log_at:]
        self.records += [Record(side, respondent, "log", f"log {self.log_at + n}",
                                log_values(record), self.log_at + n)
                         for n, record in enumerate(logged)]
        self.log_at += len(logged)
        cache = caches["default"]
        written = cache.written[self.cache_at:]
        self.records += [Record(side, respondent, "cache", key, (key, repr(cache.get(key))),
                                self.cache_at + n)
                         for n, key in enumerate(written)]
        self.cache_at += len(written)

    def finish(self):
        # The operator opens held reports with SECRET_KEY: their answers are report-side
        # values too.
        for held in HeldReport.objects.all():
            side, respondent = self.made[(HeldReport._meta.db_table, str(held.pk))]
            self.records.append(Record(side, respondent, "held content", str(held.pk),
                                       (json.dumps(held_content(held), sort_keys=True),)))


def buy(api, survey, n: int, capture, seen: Observation) -> bytes:
    """buy_token of tests.test_membership, seen after the code is mailed as well: the
    code's row exists only until the token is bought."""
    assert ask_code(api, survey, address(n), capture).status_code == 202
    seen.step(ISSUANCE, n)
    code = code_from_mail()
    public_key, challenge = token_key(api, survey)
    request, pending = client.token_request(public_key, challenge)
    response = api.post(f"{base(survey)}/tokens/", {
        "email": address(n), "code": code, "token_request": tokens.b64url_encode(request)},
        format="json")
    assert response.status_code == 200, response.json()
    seen.step(ISSUANCE, n)
    return client.finalize_token(public_key, pending,
                                 tokens.b64url_decode(response.json()["token_response"]))


def browser(n: int) -> APIClient:
    """Respondent n's own client, from an address of its own (TEST-NET-1), as coworkers
    on their own machines: rate-limit buckets are per client address."""
    return APIClient(REMOTE_ADDR=f"192.0.2.{n + 1}")


def run(survey, capture, caplog, *, filing_order, after_report=None) -> Observation:
    seen = Observation(caplog)
    seen.start()
    issued = [buy(browser(n), survey, n, capture, seen) for n in range(RESPONDENTS)]
    for n in filing_order:
        with capture(execute=True):
            response = file(browser(n), survey, issued[n], **ANSWERS.get(n, {}))
        assert response.status_code == 201, response.json()
        if after_report is not None:
            after_report(n, seen)
        seen.step(REPORT, n)
    seen.finish()
    return seen


def shuffled() -> list[int]:
    order = list(range(RESPONDENTS))
    random.Random(SEED).shuffle(order)
    return order


# The value attacker: byte strings that an issuance-side and a report-side record share.

UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
HEX_RUN = re.compile(r"[0-9a-fA-F]{16,}")
BASE64_RUN = re.compile(r"[A-Za-z0-9_+/-]{16,}")


def forms(value) -> list[bytes]:
    """The byte strings a value is compared by: bytes as they are; text as UTF-8, with
    each hex run (digests, UUIDs) decoded instead (8 hex characters are only 32 bits, so
    random hex would share them by chance) and each base64 run decoded as well, at every
    alignment."""
    if value is None or isinstance(value, bool | int | float):
        return []
    if isinstance(value, bytes | bytearray):
        return [bytes(value)]
    if isinstance(value, uuid.UUID):
        return [value.bytes]
    if isinstance(value, dt.date | dt.time):
        text = value.isoformat()
    elif isinstance(value, dict | list | tuple):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = str(value)
    text = UUID_TEXT.sub(lambda found: found[0].replace("-", ""), text)
    out = []
    for run in HEX_RUN.findall(text):
        out += [bytes.fromhex(run[skip:][:(len(run) - skip) // 2 * 2]) for skip in (0, 1)]
    text = HEX_RUN.sub("\x00", text)
    out.append(text.encode())
    for run in BASE64_RUN.findall(text):
        for skip in range(4):
            piece = run[skip:].replace("+", "-").replace("/", "_")
            with contextlib.suppress(binascii.Error, ValueError):
                out.append(base64.urlsafe_b64decode(piece[:len(piece) // 4 * 4]))
    return out


def windows(record: Record) -> set[bytes]:
    return {form[at:at + WINDOW] for value in record.values for form in forms(value)
            for at in range(len(form) - WINDOW + 1)}


@dataclass
class Shared:
    # Windows of each side, by respondent; the union of the context's.
    sides: dict[str, dict[int, set[bytes]]]
    context: set[bytes]
    by_record: dict[Record, set[bytes]]

    def linking(self) -> set[bytes]:
        """Windows both sides carry, except those of the context (the survey, its units,
        its issuer: the same for everyone) and those that every respondent's records carry
        on one side (today's date in a cache key, a message's fixed text): a value on all
        twenty reports, or on all twenty issuances, points at none of them in particular."""
        issuance, report = self.sides[ISSUANCE].values(), self.sides[REPORT].values()
        everyone = set.intersection(*issuance) | set.intersection(*report)
        return (set().union(*issuance) & set().union(*report)) - self.context - everyone

    def holders(self, window: bytes) -> list[str]:
        return sorted(f"{record.side} {record.respondent} {record.source} {record.key}"
                      for record, found in self.by_record.items() if window in found)


def shared(seen: Observation, *, sources=None) -> Shared:
    by_record = {record: windows(record) for record in seen.records
                 if sources is None or record.source in sources}
    sides = {ISSUANCE: defaultdict(set), REPORT: defaultdict(set)}
    context = set()
    for record, found in by_record.items():
        if record.side == CONTEXT:
            context |= found
        else:
            sides[record.side][record.respondent] |= found
    assert set(sides[ISSUANCE]) == set(sides[REPORT]) == set(range(RESPONDENTS))
    return Shared(sides, context, by_record)


# The order attacker: rank of a row (or mail, or log line) on one side against the other.

def entities(seen: Observation, side: str) -> dict[str, dict[str, dict[int, tuple]]]:
    """By source, by order, each respondent's place, for the sources where every
    respondent has exactly one entry on this side: rows still stored at the end (by
    primary key and by the database's own order) and mails, log records and cache writes
    (by their place in the stream)."""
    found = {}
    for model in stored_models():
        table = model._meta.db_table
        rows = {pk: respondent for (name, pk), (made, respondent) in seen.made.items()
                if name == table and made == side and (name, pk) in seen.rows}
        if sorted(rows.values()) != list(range(RESPONDENTS)):
            continue
        orders = {"primary key": {respondent: (pk,) for pk, respondent in rows.items()}}
        for name, places in physical_orders(model).items():
            orders[name] = {respondent: places[pk] for pk, respondent in rows.items()}
        found[table] = orders
    for source in ("mail", "log", "cache"):
        records = [record for record in seen.records
                   if record.source == source and record.side == side]
        if sorted(record.respondent for record in records) == list(range(RESPONDENTS)):
            found[source] = {"stream": {record.respondent: (record.sequence,)
                                        for record in records}}
    return found


@dataclass(frozen=True)
class Guess:
    strategy: str
    correct: int
    new: bool = True  # a pairing no earlier strategy made


def order_guesses(seen: Observation) -> list[Guess]:
    """Pairs the k-th issuance-side entry with the k-th (or k-th from last) report-side
    entry, for every order of every source on each side; counts the right pairs."""
    guesses, tried = [], set()
    issuance, report = entities(seen, ISSUANCE), entities(seen, REPORT)
    assert issuance
    assert report
    for source, orders in issuance.items():
        for order, places in orders.items():
            ranked = sorted(places, key=places.get)
            for other, other_orders in report.items():
                for other_order, other_places in other_orders.items():
                    other_ranked = sorted(other_places, key=other_places.get)
                    for direction, guessed in (("", other_ranked),
                                               (" reversed", other_ranked[::-1])):
                        pairs = frozenset(zip(ranked, guessed, strict=True))
                        correct = sum(a == b for a, b in pairs)
                        strategy = (f"{source} by {order} against {other} by "
                                    f"{other_order}{direction}")
                        # Orders that agree (a table's rowid, its mails' and its log
                        # records' stream) give one pairing: it is one try, not several.
                        guesses.append(Guess(strategy, correct, pairs not in tried))
                        tried.add(pairs)
    return guesses


def value_guesses(seen: Observation, found: Shared) -> list[Guess]:
    """The best one-to-one matching (Hungarian) of each issuance-side source's entries to
    each report-side source's by how many linking windows a pair shares; entries are
    taken in primary-key or stream order, never by respondent."""
    linking = found.linking()
    by_source = defaultdict(dict)
    for record, windows_of in found.by_record.items():
        if record.side != CONTEXT:
            by_source[(record.side, record.source)].setdefault(record.key, [
                record.respondent, set()])[1].update(windows_of & linking)
    one_each = {}
    for key, entries in by_source.items():
        if sorted(entry[0] for entry in entries.values()) == list(range(RESPONDENTS)):
            # Presented in an order of their own, so that ties say nothing either.
            one_each[key] = [entries[name] for name in sorted(entries)]
            random.Random(SEED + 1).shuffle(one_each[key])
    guesses = []
    for (side, source), rows in one_each.items():
        for (other_side, other), columns in one_each.items():
            if side != ISSUANCE or other_side != REPORT:
                continue
            score = [[len(row[1] & column[1]) for column in columns] for row in rows]
            if not any(map(any, score)):
                continue
            picked, matched = linear_sum_assignment(score, maximize=True)
            correct = sum(rows[a][0] == columns[b][0] for a, b in zip(picked, matched,
                                                                      strict=True))
            guesses.append(Guess(f"{source} against {other} by shared values", correct))
    return guesses


def fixed_points_at_least(k: int, n: int = RESPONDENTS) -> float:
    """P(a uniformly random permutation of n has at least k fixed points)."""
    def derangements(m: int) -> int:
        return round(math.factorial(m) * sum((-1) ** i / math.factorial(i)
                                             for i in range(m + 1)))
    return sum(math.comb(n, j) * derangements(n - j)
               for j in range(k, n + 1)) / math.factorial(n)


def chance_bound(strategies: int) -> int:
    """The most right pairs that the best of `strategies` random pairings exceeds with
    probability at most FALSE_ALARM (union bound)."""
    bound = 0
    while strategies * fixed_points_at_least(bound + 1) > FALSE_ALARM:
        bound += 1
    return bound


def test_twenty_reports_filed_in_a_shuffled_order_match_their_issuance_only_by_chance(
        verified, django_capture_on_commit_callbacks, server):
    seen = run(verified, django_capture_on_commit_callbacks, server,
               filing_order=shuffled())
    assert TokenIssuance.objects.count() == SpentToken.objects.count() == RESPONDENTS
    assert HeldReport.objects.count() == RESPONDENTS
    assert len(mail.outbox) == RESPONDENTS
    found = shared(seen, sources=STORED)
    # (1) No byte string of 8 or more on any issuance-side record (its rows, the code's row
    # while it lived, the mail, its log records) is on any report-side record (the spent
    # token, the held row sealed and opened, log records), but those that every
    # respondent has on one side or the other.
    linking = found.linking()
    assert not linking, {window.hex(): found.holders(window) for window in list(linking)[:5]}
    assert not value_guesses(seen, found)
    # (2) Orders. Issuance rows and report rows are each in insertion order in the
    # database's own bookkeeping, whatever their random primary keys: rowid (or ctid and
    # xmin) ranks the tokens' purchases and the reports' arrivals. Matched rank to rank,
    # they pair a respondent correctly only where the reports happen to arrive in the
    # order of purchase, so here it is the shuffled filing that keeps them apart: the
    # count is the shuffle's fixed points. The primary-key orders are random.
    guesses = order_guesses(seen)
    bound = chance_bound(sum(guess.new for guess in guesses))
    best = max(guesses, key=lambda guess: guess.correct)
    assert best.correct <= bound, (best, bound, fixed_points_at_least(best.correct))
    # Random pairings are right once on average; so are these, over all the strategies.
    assert sum(guess.correct for guess in guesses) / len(guesses) < 2, guesses


def test_the_same_attacker_links_reports_filed_in_the_order_their_tokens_were_bought(
        verified, django_capture_on_commit_callbacks, server):
    seen = run(verified, django_capture_on_commit_callbacks, server,
               filing_order=list(range(RESPONDENTS)))
    # Nothing shared by value: blinding still holds, and only the order gives them away.
    assert not shared(seen, sources=STORED).linking()
    guesses = {guess.strategy: guess.correct for guess in order_guesses(seen)}
    physical = "rowid" if connection.vendor == "sqlite" else "ctid"
    assert guesses[f"{TokenIssuance._meta.db_table} by {physical} against "
                   f"{SpentToken._meta.db_table} by {physical}"] >= 15
    assert guesses[f"{TokenIssuance._meta.db_table} by {physical} against "
                   f"{HeldReport._meta.db_table} by {physical}"] >= 15


def test_the_same_attacker_links_reports_to_a_log_line_that_names_the_address_digest(
        verified, django_capture_on_commit_callbacks, server):
    issuance = TokenIssuance._meta.db_table

    def leak(n, seen):
        # A server that logged which address digest a token was spent for.
        [digest] = [values[2] for (table, _pk), values in seen.rows.items()
                    if table == issuance and seen.made[(table, _pk)] == (ISSUANCE, n)]
        logging.getLogger("surveys.membership").info("token spent for %s", digest)

    seen = run(verified, django_capture_on_commit_callbacks, server,
               filing_order=shuffled(), after_report=leak)
    found = shared(seen)
    assert found.linking()
    guesses = {guess.strategy: guess.correct for guess in value_guesses(seen, found)}
    assert guesses[f"{issuance} against log by shared values"] >= 15


def test_the_cache_ties_no_code_request_to_a_report(
        verified, django_capture_on_commit_callbacks, server):
    seen = run(verified, django_capture_on_commit_callbacks, server, filing_order=shuffled())
    found = shared(seen, sources=STORED | {"cache"})
    linking = found.linking()
    assert not linking, {window.hex(): found.holders(window)[:4] for window in list(linking)[:3]}
