"""Schemathesis against /api/v1/openapi.json: no 5xx, and every answer matches the document.

Each operation of the document is fuzzed with valid (positive) and invalid (negative) requests
carrying a valid bearer token; ``call_and_validate`` runs Schemathesis' checks: no server
error, status code, content type, headers and body as documented, valid data accepted, the
token really required. One check is left out: ``negative_data_rejection``. pydantic's lax mode
accepts a few harmless spellings the document does not list ("5" or true for an integer, a
Unix time for a date-time, a UUID without hyphens) and stores the converted value; listing them
would make the document worse, not the API safer. (The pytest plugin's lazy fixtures do not
run under pytest 9, so the operations are driven with their Hypothesis strategies here.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection


@pytest.fixture
def token(runner) -> str:
    result = runner.invoke(["token", "create", "--source", "schemathesis"])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def _operations(app) -> list:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = []
    for result in schema.get_all_operations():
        operations.append(result.ok())  # an Err here is an invalid document: raise it
    return operations


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
def test_api_conforms_to_its_openapi_document(app, token, mode):
    operations = _operations(app)
    names = {f"{op.method.upper()} {op.path}" for op in operations}
    assert {"POST /api/v1/events", "POST /api/v1/agents/heartbeat"} <= names, names
    auth = {"Authorization": f"Bearer {token}"}
    for operation in operations:
        @given(case=operation.as_strategy(mode, headers=auth))
        @settings(max_examples=30, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                         HealthCheck.data_too_large])
        def exercise(case) -> None:
            case.call_and_validate(headers=auth, excluded_checks=[negative_data_rejection])

        exercise()
