"""Fixtures: hand-built reports (tests/support/gate_reports.py)."""

from __future__ import annotations

import pytest

from edgemine.scenarios.results import Evaluation, GateReport
from tests.support import gate_reports


@pytest.fixture
def mixed_report() -> GateReport:
    """One scenario of each verdict; the FAIL has regressed and fixed flips."""
    return gate_reports.mixed_report()


@pytest.fixture
def evaluation() -> Evaluation:
    """An evaluation of v8: aggregate, one scenario, two metadata slices."""
    return gate_reports.evaluation()
