"""Log records without request metadata."""

import logging


class WithoutRequest(logging.Filter):
    """For django.request: keeps only records of unhandled exceptions, and of
    each only the exception's type and traceback. Django's record carries the
    request (client address, user agent, query string) and its message the
    path, which holds share and dashboard tokens; 4xx warnings are dropped
    for the same reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[0] is None:
            return False
        record.msg, record.args = "Unhandled %s", (record.exc_info[0].__name__,)
        for name in ("request", "status_code"):
            record.__dict__.pop(name, None)
        return True
