"""Signals intake sends, for the apps downstream of it to act on."""

from django.dispatch import Signal

# Sent in the transaction that held a new report; arguments: survey_id.
report_held = Signal()
