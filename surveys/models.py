import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from surveys import periods

MIN_GROUP_SIZE_FLOOR = 3
MIN_GROUP_SIZE_MAX = 1000
# A survey's study window starts this many years before the survey was
# created unless the organizer sets it, and never more than the maximum years
# before the day it is set: reports name periods inside it, and detection's
# work grows with its length.
STUDY_WINDOW_DEFAULT_YEARS = 3
STUDY_WINDOW_MAX_YEARS = 10

# What one report may hold, for every way in (API, form, amend): its body, a unit path, a
# comment, and each code (signal, outcome, invite code).
REPORT_BODY_MAX_BYTES = 16 * 1024
UNIT_PATH_MAX_LENGTH = 1000
REPORT_COMMENT_MAX_LENGTH = 2000
REPORT_CODE_MAX_LENGTH = 64  # receipts and submission tokens too
# A Privacy Pass token (surveys.tokens.TOKEN_LENGTH, 354 bytes) in base64url, with room
# for padding.
REPORT_TOKEN_MAX_LENGTH = 480


def years_before(day, years: int):
    """The same day `years` earlier (28 February for a 29 February)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def default_study_start():
    return years_before(timezone.localdate(), STUDY_WINDOW_DEFAULT_YEARS)


class Survey(models.Model):
    class Period(models.TextChoices):
        WEEK = periods.WEEK, _("Week")
        MONTH = periods.MONTH, _("Month")

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        CLOSED = "closed", _("Closed")

    class Access(models.TextChoices):
        LINK = "link", _("Anyone with the link")
        INVITE = "invite", _("Invite code required")
        # A Privacy Pass token bought with a work address at one of `email_domains`.
        VERIFIED = "verified", _("Verified work address required")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="surveys")
    title = models.CharField(max_length=200)
    period = models.CharField(max_length=5, choices=Period.choices, default=Period.MONTH)
    min_group_size = models.PositiveSmallIntegerField(default=5)
    status = models.CharField(max_length=6, choices=Status.choices, default=Status.OPEN)
    access = models.CharField(max_length=8, choices=Access.choices, default=Access.LINK)
    # For access "verified": the domains whose addresses may buy a token, lower case.
    email_domains = models.JSONField(default=list, blank=True)
    # The last day reports are taken; the survey closes itself after it.
    closes_on = models.DateField(null=True, blank=True)
    # The earliest day a report's period may name (see
    # services.report_period_range); the latest is the current period.
    study_starts_on = models.DateField(default=default_study_start)
    # Moves on when units are removed: the filing statement checks it, so a process's
    # kept copy of the survey (and its unit ids) cannot file a report to a removed unit.
    units_version = models.PositiveIntegerField(default=0)
    share_token = models.CharField(max_length=64, unique=True)
    dashboard_token = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(min_group_size__gte=MIN_GROUP_SIZE_FLOOR),
                name="survey_min_group_size_floor",
            ),
            models.CheckConstraint(condition=~Q(share_token=models.F("dashboard_token")),
                                   name="survey_tokens_differ"),
        ]

    def __str__(self) -> str:
        return self.title

    @staticmethod
    def open_on(day) -> tuple[dict, dict]:
        """What makes a survey open on `day`, as (fields equal to, fields null or at least):
        the one definition, read by is_open and by the statement that files a report."""
        return {"status": Survey.Status.OPEN}, {"closes_on": day}

    # Accesses whose reports each spend a Privacy Pass token (surveys.membership): bought
    # with a verified work address, or with an invite code, so that nothing pairs the code
    # or the address with the report.
    TOKEN_ACCESS = (Access.INVITE, Access.VERIFIED)

    @property
    def needs_token(self) -> bool:
        return self.access in self.TOKEN_ACCESS

    @property
    def is_open(self) -> bool:
        equal, null_or_at_least = self.open_on(timezone.localdate())
        return all(getattr(self, name) == value for name, value in equal.items()) and all(
            getattr(self, name) is None or getattr(self, name) >= value
            for name, value in null_or_at_least.items())


class OrgUnit(models.Model):
    """A unit of the org tree, named by its full path ("Acme/Retail/Marketing")."""

    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="units")
    path = models.CharField(max_length=UNIT_PATH_MAX_LENGTH)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE,
                               related_name="children")
    depth = models.PositiveSmallIntegerField()
    headcount = models.PositiveIntegerField(null=True, blank=True)
    # Taken off the form by the organizer (a mistyped unit, a name split at a "/"): no new
    # report names it. It stays in the figures with whatever was filed under it, so its
    # removal depends on, and says, nothing about its reports.
    retired = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["survey", "path"], name="orgunit_unique_path"),
        ]

    def __str__(self) -> str:
        return self.path

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class UnitAncestor(models.Model):
    """Closure of the org tree: one row per (unit, ancestor-or-self), written with the
    tree so that analytics can roll a unit's reports up to every ancestor in one join."""

    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="+")
    unit = models.ForeignKey(OrgUnit, on_delete=models.CASCADE, related_name="ancestor_links")
    ancestor = models.ForeignKey(OrgUnit, on_delete=models.CASCADE, related_name="+")

    class Meta:
        # The table was first made by the reports app; the name stays.
        db_table = "reports_unitancestor"
        constraints = [
            models.UniqueConstraint(fields=["unit", "ancestor"], name="unitancestor_unique"),
        ]
        indexes = [models.Index(fields=["ancestor", "unit"], name="unitancestor_ancestor_idx")]


class Report(models.Model):
    """One anonymous report.

    Deliberately absent: any account, address, user agent, or creation time.
    `received_week` is the Monday of the week it arrived, the finest arrival
    time kept. The primary key is random so that no order of rows, ids or
    exports follows arrival.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="reports")
    unit = models.ForeignKey(OrgUnit, on_delete=models.PROTECT, related_name="reports")
    period_start = models.DateField()
    signals = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=32, blank=True)
    comment = models.TextField(blank=True, max_length=REPORT_COMMENT_MAX_LENGTH)
    received_week = models.DateField()
    receipt_hash = models.CharField(max_length=64, unique=True)

    class Meta:
        indexes = [
            models.Index(fields=["survey", "period_start", "unit"], name="report_cell_idx"),
        ]


class InviteCode(models.Model):
    """An unused invite code of an invite-only survey, stored as a hash.

    A code buys the survey's membership token (surveys.membership), not a report:
    buying deletes its row in the signing transaction, and the report later spends the
    blind-signed token, which shares no value with that transaction. Nothing is left to
    pair a code with a report: no foreign key, no time, and a random primary key so that
    row order says nothing either.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="invite_codes")
    code_hash = models.CharField(max_length=64, unique=True)


class HeldReport(models.Model):
    """A report, or a change to a published one, waiting for the next publication.

    Intake writes here, never to Report: a publication moves every held new
    report into Report in a shuffled order and applies the held changes, in
    one transaction, so that neither the reports table nor the database's own
    row bookkeeping (xmin, row order, WAL) orders reports more finely than
    their publication batch. The answers are sealed (surveys.sealing); what
    stays readable is only what publication needs without opening them:

    - `kind`: a new report (counts towards the survey's k), a change to a
      published report (an amend or a withdrawal, which never counts), or a
      void (a held report withdrawn before publication, kept empty until the
      next publication so that the holding table's size, like every figure
      derived from arrivals, changes only at publications);
    - `lookup`: surveys.sealing.receipt_lookup of the receipt, to find the row
      again on an amend or withdrawal (null once void);
    - `slot`: the publication slot the report arrived in (surveys.slots), so a
      publication counts only what was held at its boundary.
    """

    class Kind(models.TextChoices):
        NEW = "new", _("New report")
        CHANGE = "change", _("Change to a published report")
        VOID = "void", _("Withdrawn before publication")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="held_reports")
    kind = models.CharField(max_length=6, choices=Kind.choices, default=Kind.NEW)
    # Null, not "", once void: unique must hold for every row with a lookup.
    lookup = models.CharField(max_length=64, unique=True, null=True)  # noqa: DJ001
    slot = models.DateTimeField(null=True)
    sealed = models.BinaryField()

    class Meta:
        indexes = [models.Index(fields=["survey", "kind"], name="heldreport_survey_kind_idx")]


class TokenIssuer(models.Model):
    """A verified survey's Privacy Pass issuer (surveys.membership).

    `token_key` is the public key as RFC 9578 encodes it, published to every browser; the
    private key is sealed (AES-GCM under a key derived from CHORUS_TOKEN_KEY_SECRET, else
    SECRET_KEY). `address_salt` keys the HMAC of each address that bought a token; it is
    destroyed with those rows when the survey closes, after which nothing tells which
    addresses took part.
    """

    survey = models.OneToOneField(Survey, on_delete=models.CASCADE, primary_key=True,
                                  related_name="token_issuer")
    token_key = models.BinaryField()
    sealed_private_key = models.BinaryField()
    address_salt = models.BinaryField(null=True)


class TokenIssuance(models.Model):
    """An address that bought its survey's one token, as an HMAC under the issuer's
    `address_salt`: no time, no token, nothing of the blinded message. Random ids, so
    row order says nothing."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="+")
    address_digest = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["survey", "address_digest"],
                                               name="tokenissuance_one_per_address")]


class VerificationCode(models.Model):
    """The one-time code last mailed to an address, as HMACs: valid until `expires`
    (to the minute), refused after `VERIFICATION_ATTEMPTS` wrong tries. Deleted once it
    buys a token."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="+")
    address_digest = models.CharField(max_length=64)
    code_digest = models.CharField(max_length=64)
    expires = models.DateTimeField()
    wrong_attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["survey", "address_digest"],
                                               name="verificationcode_one_per_address")]


class SpentToken(models.Model):
    """A token spent on a report: surveys.tokens.token_spent_id, hex. Written in the
    report's own transaction; blinding leaves nothing in it that matches an issuance."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="+")
    spent_id = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["survey", "spent_id"],
                                               name="spenttoken_once")]
