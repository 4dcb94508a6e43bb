"""The reports are library code: importing them pulls in neither the service, FastAPI nor torch."""

from __future__ import annotations

import json
import subprocess
import sys


def test_reports_import_no_service_fastapi_or_torch() -> None:
    code = ("import sys, json, edgemine.scenarios.reports; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'fastapi', 'open_clip') "
            "or m.startswith(('edgemine.service', 'edgemine.indexer', 'edgemine.cli')))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []
