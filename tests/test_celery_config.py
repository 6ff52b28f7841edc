"""Celery settings that keep aggregation durable: no task outlives its
broker lease, lost workers hand aggregation back (and fail detection jobs),
publishing cannot hang a request, and a task that keeps failing gives up."""

import logging

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext

import reports.tasks  # noqa: F401 (registers the tasks)
from reports.tasks import (
    detection_chunk,
    detection_prepare,
    detection_rank,
    publish_survey,
    rebuild_survey,
)
from server.celery import app

CHORUS_TASKS = sorted(name for name in app.tasks if name.startswith(("reports.", "surveys.")))
AGGREGATION_TASKS = [publish_survey, rebuild_survey]
DETECTION_TASKS = [detection_prepare, detection_chunk, detection_rank]


def visibility_timeout() -> float:
    return app.conf.broker_transport_options["visibility_timeout"]


def test_chorus_tasks_are_registered():
    assert {"reports.publish_survey", "reports.rebuild_survey", "reports.sweep"} <= set(
        CHORUS_TASKS)


@pytest.mark.parametrize("name", CHORUS_TASKS)
def test_every_task_ends_before_the_broker_hands_it_out_again(name):
    task = app.tasks[name]
    hard = task.time_limit or app.conf.task_time_limit
    soft = task.soft_time_limit or app.conf.task_soft_time_limit
    assert hard is not None
    assert hard < visibility_timeout()
    assert soft is None or soft < hard


@pytest.mark.parametrize("task", AGGREGATION_TASKS, ids=lambda task: task.name)
def test_aggregation_tasks_are_handed_back_when_their_worker_dies(task):
    assert task.acks_late
    assert task.reject_on_worker_lost


@pytest.mark.parametrize("task", DETECTION_TASKS, ids=lambda task: task.name)
def test_detection_tasks_are_not_handed_back_when_their_worker_dies(task):
    # a run that exhausted one worker would exhaust the next: its job fails instead
    assert task.acks_late
    assert not task.reject_on_worker_lost


def test_publishing_gives_up_within_a_bounded_time():
    assert 0 < app.conf.broker_connection_timeout <= 2
    policy = app.conf.task_publish_retry_policy
    assert app.conf.task_publish_retry
    assert policy["max_retries"] is not None
    assert policy["max_retries"] * policy["interval_max"] <= 1
    options = app.conf.broker_transport_options
    assert 0 < options["socket_connect_timeout"] <= 2
    assert 0 < options["socket_timeout"] <= 5


@pytest.mark.parametrize("task", AGGREGATION_TASKS, ids=lambda task: task.name)
def test_aggregation_retries_database_errors_a_bounded_number_of_times(task):
    assert issubclass(DatabaseError, task.autoretry_for)
    assert 1 <= task.max_retries <= 5
    assert task.retry_backoff


@pytest.mark.django_db
def test_a_task_that_keeps_failing_stops_and_logs_one_line_without_data(survey, caplog,
                                                                        monkeypatch):
    # A real, persistent database error: the table the task locks is gone
    # (only inside this test's transaction, which is rolled back).
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE reports_aggregationstate")
    caplog.set_level(logging.ERROR, logger="server.celery")
    # Eager retries re-apply with the configured propagation, which would let
    # the first retry escape instead of running the next attempt.
    monkeypatch.setitem(app.conf, "task_eager_propagates", False)
    with CaptureQueriesContext(connection) as queries:
        result = publish_survey.apply(args=[str(survey.id)])
    assert isinstance(result.result, DatabaseError)
    attempts = [query for query in queries.captured_queries
                if "reports_aggregationstate" in query["sql"]]
    assert len(attempts) == publish_survey.max_retries + 1
    lines = [record.getMessage() for record in caplog.records if record.name == "server.celery"]
    # SQLite calls a missing table OperationalError, PostgreSQL ProgrammingError.
    assert lines == [f"reports.publish_survey failed after {len(attempts)} attempt(s): "
                     f"{type(result.result).__name__}"]
    assert str(survey.id) not in lines[0]
