"""What every backend needs of a URL target: its scheme, and how to show it without a password.

``redact`` never raises and errs on the side of hiding: a URL is shown in error messages, which
end up in logs and terminals, so a part that might be a password is hidden even where the
backend's driver would read it otherwise.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Final

__all__ = ["lower_scheme", "redact", "scheme_of", "scrub"]

# RFC 3986: a scheme is a letter, then letters, digits, "+", "-" or "."; a URL here has "//".
# One letter followed by ":" is a Windows drive ("C://x.db"), not a scheme.
_URL: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+)://")

#: Query keys whose value is a secret: libpq's (password, sslpassword), and common others.
_SECRET_KEYS: Final = frozenset({"password", "sslpassword", "pass", "passwd", "pwd", "token", "secret"})
#: Schemes whose user-info is read as libpq reads it (up to the first "@" before any "/").
_LIBPQ: Final = frozenset({"postgresql", "postgres"})
HIDDEN: Final = "***"


def scheme_of(target: str) -> str | None:
    """The lower-case scheme of a ``scheme://...`` target, None for anything else (a file path)."""
    found = _URL.match(target)
    return None if found is None else found.group(1).lower()


def lower_scheme(target: str) -> str:
    """``target`` with its scheme in lower case (drivers compare schemes as given)."""
    found = _URL.match(target)
    return target if found is None else found.group(1).lower() + target[found.end(1) :]


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``: safe to show and to log. Never raises: a URL
    it cannot take apart is shown as its scheme alone (``mysql://***``)."""
    found = _URL.match(url)
    if found is None:
        return url
    scheme = found.group(1)
    try:
        return _redacted(scheme, url[found.end() :])
    except Exception:  # noqa: BLE001 - a message must never fail to show its URL
        return f"{scheme}://{HIDDEN}"


def _redacted(scheme: str, rest: str) -> str:
    head, mark, query = rest.partition("?")
    end = _userinfo_end(scheme.lower(), rest, head)
    if end >= 0:
        userinfo, after = rest[:end], rest[end + 1 :]
        hidden = _hidden_userinfo(scheme.lower(), userinfo)
        head, mark, query = after.partition("?")
        return f"{scheme}://{hidden}@{head}{mark}{_redacted_query(query)}"
    return f"{scheme}://{head}{mark}{_redacted_query(query)}"


def _userinfo_end(scheme: str, rest: str, head: str) -> int:
    """Where the user-info of ``rest`` ends (its ``@``), -1 if it has none."""
    if scheme in _LIBPQ:
        # libpq: the user-info runs up to the first "@" met before any "/" ("?" and "#" included).
        at, slash = rest.find("@"), rest.find("/")
        if at >= 0 and (slash < 0 or at < slash):
            return at
        # An "@" libpq would not take: hidden still, up to the last one before the query.
        return head.rfind("@")
    # Anything else: up to the last "@", whatever it holds (a driver may read "/", "?" or "#"
    # as part of a password).
    return rest.rfind("@")


def _hidden_userinfo(scheme: str, userinfo: str) -> str:
    """``user:***``; a user-info without ":" is a user name to libpq, but may be a token to others."""
    user, colon, _ = userinfo.partition(":")
    if not colon:
        return userinfo if scheme in _LIBPQ and not _odd(user) else HIDDEN
    return HIDDEN if _odd(user) else f"{user}:{HIDDEN}"


def _odd(user: str) -> bool:
    """Whether a user name holds what a password might ("/", "?", "#": a URL read otherwise)."""
    return any(c in user for c in "/?#")


def _redacted_query(query: str) -> str:
    """``query`` with the value of every secret key (by its decoded, lower-case name) hidden."""
    if not query:
        return query
    pairs = query.split("&")
    for i, pair in enumerate(pairs):
        key, equals, _ = pair.partition("=")
        if equals and urllib.parse.unquote(key).strip().lower() in _SECRET_KEYS:
            pairs[i] = f"{key}={HIDDEN}"
    return "&".join(pairs)


def scrub(text: str, target: str) -> str:
    """``text`` (a driver's message about ``target``) with ``target`` and its passwords shown as
    ``redact`` shows them: a driver may repeat the URL it was given, password and all."""
    shown = redact(target)
    if shown == target:
        return text
    text = text.replace(target, shown)
    for secret in _secrets(target):
        text = text.replace(secret, HIDDEN)
    return text


def _secrets(target: str) -> list[str]:
    """Each part of ``target`` that ``redact`` hides, as given and percent-decoded (a driver may
    show either), longest first."""
    found = _URL.match(target)
    if found is None:
        return []
    rest = target[found.end() :]
    head, _, query = rest.partition("?")
    parts: list[str] = []
    end = _userinfo_end(found.group(1).lower(), rest, head)
    if end >= 0:
        userinfo = rest[:end]
        user, colon, password = userinfo.partition(":")
        if colon and not _odd(user):
            parts.append(password)
        elif _hidden_userinfo(found.group(1).lower(), userinfo) == HIDDEN:
            parts.append(userinfo)
        _, _, query = rest[end + 1 :].partition("?")
    for pair in query.split("&"):
        key, equals, value = pair.partition("=")
        if equals and urllib.parse.unquote(key).strip().lower() in _SECRET_KEYS:
            parts.append(value)
    secrets = {p for part in parts for p in (part, urllib.parse.unquote(part)) if p}
    return sorted(secrets, key=len, reverse=True)
