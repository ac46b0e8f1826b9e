"""The files pages are made of, read from the package (``meshctl/web/assets``)."""

from __future__ import annotations

from importlib import resources

UPLOT_JS = "vendor/uPlot.iife.min.js"
UPLOT_CSS = "vendor/uPlot.min.css"
# What the dashboard serves under /assets/, with its content type; nothing else is served.
SERVED = {
    UPLOT_JS: "text/javascript", UPLOT_CSS: "text/css", "timeline.js": "text/javascript",
    "dashboard.js": "text/javascript", "style.css": "text/css",
}


class MissingAsset(Exception):
    """A file of the package is missing (uPlot not fetched: run `make install`)."""


def asset(name: str) -> str:
    """The text of ``assets/<name>``; raises :class:`MissingAsset` naming the fix."""
    try:
        return (resources.files("meshctl.web") / "assets" / name).read_text("utf-8")
    except FileNotFoundError:
        raise MissingAsset(f"meshctl/web/assets/{name} is missing: uPlot is fetched at install "
                           "time (run `make install`, or `bash hack/fetch-uplot.sh`)") from None
