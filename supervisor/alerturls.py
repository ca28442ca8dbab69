"""Whether apprise accepts an alert URL, for ``ibfleet check`` (lint itself stays pure)."""

from __future__ import annotations

import apprise

from supervisor.notify import CONSOLE_URL


def alert_url_problem(url: str) -> str | None:
    """Why apprise would refuse ``url`` (never showing it), or None when it accepts it."""
    if url.strip().lower() == CONSOLE_URL:
        return None
    scheme = url.partition("://")[0] if "://" in url else ""
    if not apprise.Apprise().add(url):
        shown = f"scheme {scheme}://" if scheme and scheme.isalnum() else "no scheme"
        return f"is not a URL apprise understands ({shown})"
    return None
