"""The mining service: library (miner, batches) and its FastAPI app."""

from edgemine.service.miner import Miner, QueryError, Upload
from edgemine.service.query import Candidate, MineQuery, MineResult

__all__ = ["Candidate", "MineQuery", "MineResult", "Miner", "QueryError", "Upload"]
