"""Vector index choice, building, tuning and filtered search (the hot path at scale)."""

from edgemine.search.plan import IndexPlan, choose_index, parse_memory
from edgemine.search.searcher import Searcher

__all__ = ["IndexPlan", "Searcher", "choose_index", "parse_memory"]
