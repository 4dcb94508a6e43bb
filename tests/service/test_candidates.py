"""Candidate.trusted, the miner's validation-free constructor, builds what validation would."""

from __future__ import annotations

import copy
import inspect
import pickle

from edgemine.service.query import Candidate, MineResult

VALUES = {"image_id": "cam 1/0001.jpg", "score": 0.8125, "rank": 3, "nearest_example_id": "ex-1",
          "nearest_example_similarity": 0.75, "metadata": {"camera": "front", "hour": 22},
          "state": "unlabeled", "image_url": "/v1/images/cam%201/0001.jpg"}


def test_trusted_takes_every_field_of_the_model_and_nothing_else() -> None:
    params = list(inspect.signature(Candidate.trusted).parameters)
    assert params == list(Candidate.model_fields)  # a field added to the model must be added here


def test_a_trusted_candidate_equals_a_validated_one_in_value_json_fields_set_and_copies() -> None:
    fast, checked = Candidate.trusted(**VALUES), Candidate(**VALUES)
    assert fast == checked and repr(fast) == repr(checked)
    assert fast.model_dump() == checked.model_dump() == VALUES
    assert fast.model_dump_json() == checked.model_dump_json()
    assert fast.model_fields_set == checked.model_fields_set == set(VALUES)
    moved = fast.model_copy(update={"rank": 4})
    assert moved.rank == 4 and fast.rank == 3 and fast.model_fields_set == set(VALUES)  # not shared
    assert copy.deepcopy(fast) == fast and pickle.loads(pickle.dumps(fast)) == fast
    result = MineResult.model_validate({"query_id": "q", "candidates": [fast.model_dump()], "eligible": 1,
                                        "offset": 0, "next_offset": None, "bundle_version": 1, "model": "m",
                                        "strategy": "max", "timings": {}})
    assert result.candidates == [fast]
