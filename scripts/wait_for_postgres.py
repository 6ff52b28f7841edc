"""Exit 0 when the PostgreSQL at argv[1] answers within a few seconds."""

import sys
import time

import psycopg

deadline = time.monotonic() + 10
while True:
    try:
        psycopg.connect(sys.argv[1], connect_timeout=2).close()
    except psycopg.OperationalError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.5)
    else:
        sys.exit(0)
