"""Serves Chorus embedded, as `scripts/run` does: migrates, refreshes the demo
data, then replaces itself with gunicorn (threaded workers, tasks in-process).

One instance per CHORUS_VAR_DIR: a second one stops before it migrates or
re-seeds, which would replace the demo password the first one printed.
"""

import fcntl
import os
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

# One process: the embedded default's cache (rate-limit counters, used form
# tokens) is in the process's memory, so a second process would keep its own.
# Threads share it; SQLite queues their writes (see DATABASES in settings).
WORKERS = 1
THREADS = 8


class Command(BaseCommand):
    help = "Migrate, refresh the demo data and serve through gunicorn (what scripts/run does)."

    def add_arguments(self, parser):
        parser.add_argument("--address", default=os.environ.get("CHORUS_ADDRESS",
                                                                "127.0.0.1:8000"),
                            help="host:port to listen on (default: $CHORUS_ADDRESS or "
                                 "127.0.0.1:8000)")
        parser.add_argument("--threads", type=int, default=THREADS)

    def handle(self, *args, address: str, threads: int, **options):
        lock = self._lock()
        call_command("migrate", verbosity=0)
        call_command("seed_demo", base_url=f"http://{address}", stdout=self.stdout)
        connections.close_all()
        sys.stdout.flush()
        # gunicorn inherits the locked file and holds the lock while it serves.
        os.set_inheritable(lock, True)
        os.execv(sys.executable, [  # noqa: S606 - our own interpreter, fixed arguments
            sys.executable, "-m", "gunicorn", "server.wsgi", "--bind", address,
            "--worker-class", "gthread", "--workers", str(WORKERS), "--threads", str(threads),
            # No access log: addresses and user agents are never written.
            "--error-logfile", "-", "--graceful-timeout", "5",
            # Its default path is one per user, shared by every gunicorn they run.
            "--no-control-socket",
        ])

    def _lock(self) -> int:
        lock = os.open(settings.VAR_DIR / "serve.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise CommandError(
                f"Chorus is already being served from {settings.VAR_DIR}; nothing was changed "
                "and the demo password it printed still holds. Stop it first, or run another "
                "instance with its own CHORUS_VAR_DIR and CHORUS_ADDRESS.") from None
        return lock
