"""The status page: one HTML page, its stylesheet and its script, shipped as package data.

No build step and nothing from elsewhere: the supervisor's HTTP API serves these files at
``/`` and ``/assets/<name>``, and the script reads ``GET /api/v1/status`` once a second. The
page only reads (every GET is public), so it needs no token; untrusted text (reasons, alert
titles) is set with ``textContent`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from fastapi.responses import Response

__all__ = ["CSP", "SECURITY_HEADERS", "Assets"]

#: Only ibfleet's own files: no inline script or style, no other origin, no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: Sent with every answer of the API.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}


@dataclass(frozen=True)
class Assets:
    """The page's files, read once from the installed package."""

    files: dict[str, bytes]

    @classmethod
    def load(cls) -> Assets:
        root = resources.files(__name__).joinpath("static")
        files = {
            item.name: item.read_bytes()
            for item in root.iterdir()
            if item.is_file() and any(item.name.endswith(ext) for ext in _TYPES)
        }
        if "index.html" not in files:
            raise RuntimeError("the status page's index.html is not installed with ibfleet")
        return cls(files)

    def names(self) -> frozenset[str]:
        return frozenset(self.files)

    def response(self, name: str) -> Response:
        media = next(t for ext, t in _TYPES.items() if name.endswith(ext))
        # Revalidated on each load: an upgraded supervisor serves its new page at once.
        return Response(self.files[name], media_type=media, headers={"Cache-Control": "no-cache"})
