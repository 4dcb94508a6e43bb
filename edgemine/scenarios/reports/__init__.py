"""Reports of a gate run or an evaluation: JUnit XML, Markdown, a self-contained HTML page, JSON.

They render `edgemine.scenarios.results` objects and compute no figure of their own. Files are
written atomically (a CI step never reads half a report). Thumbnails for the HTML page come from
a callable `thumbnail(image_id) -> JPEG bytes | None`; `bundle_thumbnails` makes one from a bundle.
"""

from edgemine.scenarios.reports.html import MAX_FLIPS_SHOWN, render_html
from edgemine.scenarios.reports.json import write_json
from edgemine.scenarios.reports.junit import render_junit, write_junit
from edgemine.scenarios.reports.markdown import render_evaluation_markdown, render_markdown
from edgemine.scenarios.reports.text import write_text
from edgemine.scenarios.reports.thumbnails import THUMBNAIL_EDGE, Thumbnails, bundle_thumbnails

__all__ = [
    "MAX_FLIPS_SHOWN",
    "THUMBNAIL_EDGE",
    "Thumbnails",
    "bundle_thumbnails",
    "render_evaluation_markdown",
    "render_html",
    "render_junit",
    "render_markdown",
    "write_json",
    "write_junit",
    "write_text",
]
