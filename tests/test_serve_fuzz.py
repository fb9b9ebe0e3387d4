"""API fuzzing of `imgrec serve` with Schemathesis, against the real server's own OpenAPI schema.

Every operation in /openapi.json gets generated requests, valid and invalid (random bytes as
images, out-of-range and wrongly typed parameters, missing fields and keys); every answer must
be declared in the schema and match it, and none may be a 5xx. `make test` runs the short
Hypothesis profile ("ci"), `make fuzz` the long one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import given
from schemathesis import GenerationMode, checks
from schemathesis.specs.openapi import checks as openapi_checks
from servehelpers import running_server, small_model

pytestmark = [pytest.mark.fuzz, pytest.mark.slow]

KEY = "fuzz-key-0123456789"
CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.negative_data_rejection,
    openapi_checks.ignored_auth,
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    model: Path = small_model(base)
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    args = ("--api-key-env", "IMGREC_FUZZ_KEY", "--max-upload-mb", "1")
    with running_server(model, log, *args, env={"IMGREC_FUZZ_KEY": KEY}) as srv:
        yield srv
    assert "Traceback" not in log.read_text(errors="replace")


@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(
        f"{server.url}/openapi.json", headers={"X-API-Key": KEY}, timeout=30
    )


# One Hypothesis run per operation and mode, driven by hand: schemathesis' own pytest loader
# (`schemathesis.pytest.from_fixture`) fails on pytest 9 ("'Function' object has no attribute
# '_nodeid'"), and the server must run before the schema can be read.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_answers_match_the_schema(api_schema, server, mode):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/predict", "/v1/model", "/healthz", "/metrics"}
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not _has_inputs(operation):
            continue  # nothing to get wrong

        @given(case=operation.as_strategy(generation_mode=mode))
        def answer_matches_schema(case) -> None:
            case.call_and_validate(
                base_url=server.url, headers=_key(case, mode), checks=CHECKS, timeout=60
            )

        answer_matches_schema()


def _key(case, mode: GenerationMode) -> dict[str, str]:
    """The right key, except where a negative case left it out on purpose (that must be a 401)."""
    if mode is GenerationMode.NEGATIVE and "X-API-Key" not in (case.headers or {}):
        return {}
    return {"X-API-Key": KEY}


def _has_inputs(operation) -> bool:
    definition = operation.definition.raw
    return bool(definition.get("parameters") or definition.get("requestBody"))
