"""Bounds on the work one request may ask for: every per-request limit of the service, in one place.

Each bound keeps one request from holding a worker for long or growing its memory without limit;
the README's "Limits" table gives the reasoning for each value. A request over a limit is refused
with 422 and a detail naming the field and the limit (the request body size itself is bounded
by the service's body-size middleware, which answers 413).
"""

from __future__ import annotations

# Candidates per page. A page of 1000 is more than anyone reviews by eye, and its diversity
# walk (dedup, max_per_group) and JSON response stay in the tens of milliseconds / ~1 MB.
MAX_K = 1000
# How deep paging may go (offset + k, or a cursor's rank + k). Every page ranks from the top, so
# depth is the real cost: the exact top-(offset+k) and rrf's per-example lists of 4x that depth.
MAX_DEPTH = 10_000
# Example vectors in one query (positive_ids + negative_ids + texts + negative_texts + uploaded
# files). Scoring holds a row block by example block of similarities; more than a few hundred
# failure examples is a data set, not a query.
MAX_EXAMPLES = 256
# Text prompts (texts + negative_texts): each one is a CLIP forward pass on the request thread.
MAX_TEXTS = 64
# Characters per text prompt: CLIP reads 77 tokens (~300 characters); the rest is truncated.
MAX_TEXT_CHARS = 1000
# Characters per image ID anywhere in a request: Linux's PATH_MAX, so any file path fits.
MAX_ID_CHARS = 4096
# IDs in exclude_ids: a set lookup per ID; 100k IDs are ~2 MB of JSON.
MAX_EXCLUDE_IDS = 100_000
# IDs in POST /v1/labels and items in POST /v1/batches: written in chunked SQLite transactions.
MAX_LABEL_IDS = 100_000
MAX_BATCH_ITEMS = 100_000
# Verdicts in one POST /v1/verdicts (one SQLite transaction), and verdicts per GET /v1/verdicts page.
MAX_VERDICTS = 10_000
MAX_VERDICTS_PAGE = 1000
# The offset of a GET /v1/verdicts page (SQLite integers are 64-bit: bounded well below).
MAX_VERDICTS_OFFSET = 1_000_000_000
# Characters of a session id, query id or reviewer name.
MAX_SESSION_CHARS = 200
# Metadata filters: columns per query and values per in / not_in list.
MAX_FILTERS = 64
MAX_FILTER_VALUES = 10_000
# Files in one POST /v1/mine/upload: each is decoded and embedded on the request.
MAX_UPLOAD_FILES = 16
# POST /v1/evaluations: scoring costs (scored images x bootstrap resamples) per row, and one row is
# computed per scenario (twice with a baseline) and per metadata slice value. These bound the rows
# of one request; the images are bounded by the bundle. At most EVALUATION_SLOTS evaluations of
# one worker compute at once (the others wait), so evaluations cannot starve mining of threads.
MAX_EVALUATION_SCENARIOS = 50
MAX_SLICE_COLUMNS = 8
MAX_SLICE_VALUES = 200
EVALUATION_SLOTS = 2
# Members per GET /v1/scenarios/{name} page, and images joined/left listed by its lock diff.
MAX_MEMBERS_PAGE = 1000
MAX_DIFF_IDS = 200
# Characters of a scenario description.
MAX_DESCRIPTION_CHARS = 1000
# Memory budget of one similarity block (float32 cells): rows x examples are scored in blocks of
# at most this many cells (64 MiB), so memory is O(rows x block), never O(rows x examples).
SCORE_BLOCK_CELLS = 16 * 1024 * 1024
# A 404 lists at most this many unknown IDs (as many as a query has examples, so the review page
# can mark each), each cut to ECHO_ID_CHARS (other echoed input is bounded by api/safe_json.py).
MAX_ECHOED_IDS = MAX_EXAMPLES
ECHO_ID_CHARS = 1024
ECHO_CHARS = 100


def shorten(text: str, limit: int = ECHO_CHARS) -> str:
    """Return `text` cut to `limit` characters, saying how long it was (for echoing input in errors)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text)} characters)"
