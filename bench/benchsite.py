"""Settings for benchmarks: the product's settings, plus a trivial JSON view
served next to the product's URLs by the same stack (bench/benchurls.py), so
a benchmark can measure the framework's own ceiling on the same processes.
The trivial view never ships: only DJANGO_SETTINGS_MODULE=bench.benchsite
routes to it."""

from server.settings import *  # noqa: F403

ROOT_URLCONF = "bench.benchurls"
