from functools import wraps


def no_referrer(view):
    """Sends `Referrer-Policy: no-referrer` from a page whose URL carries a
    token, so the token cannot leave in a Referer header even on same-origin
    navigation. Elsewhere the site's policy is `same-origin`: under
    `no-referrer` browsers send `Origin: null` on form POSTs, which fails the
    CSRF origin check that organizer forms rely on."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response["Referrer-Policy"] = "no-referrer"
        return response

    return wrapped
