"""What every backend needs of a URL target: its scheme, and how to show it without a password."""

from __future__ import annotations

import re
import urllib.parse
from typing import Final

__all__ = ["redact", "scheme_of"]

# RFC 3986: a scheme is a letter, then letters, digits, "+", "-" or "."; a URL here has "//".
_URL: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme_of(target: str) -> str | None:
    """The lower-case scheme of a ``scheme://...`` target, None for anything else (a file path)."""
    found = _URL.match(target)
    return None if found is None else found.group(1).lower()


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``: safe to show and to log."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = parts.query
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    if any(key == "password" for key, _ in pairs):
        query = urllib.parse.urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="/:")
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # nothing to hide: exactly as given
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
