"""The mining service: library (miner, batches) and its FastAPI app."""

from edgemine.service.miner import Miner, QueryError
from edgemine.service.query import Candidate, MineQuery, MineResult
from edgemine.service.uploads import Upload

__all__ = ["Candidate", "MineQuery", "MineResult", "Miner", "QueryError", "Upload"]
