"""docs/api.md: generated from the OpenAPI document, never stale, and its examples are real."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gen_api_doc.py"
API_DOC = ROOT / "docs" / "api.md"


@pytest.fixture(scope="module")
def gen():
    """Import scripts/gen_api_doc.py (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gen_api_doc", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_api_doc_is_not_stale(app, gen):
    expected = gen.render(gen.build_spec(app))
    on_disk = API_DOC.read_text(encoding="utf-8")
    assert on_disk == expected, (
        "docs/api.md is stale: run `python scripts/gen_api_doc.py` and commit the result"
    )


def test_check_mode_tells_stale_from_fresh(app, gen, tmp_path, capsys):
    target = tmp_path / "api.md"
    assert gen.main(["--output", str(target)], app=app) == 0
    assert gen.main(["--check", "--output", str(target)], app=app) == 0
    target.write_text(target.read_text(encoding="utf-8").replace("batch_too_large", "too_big"),
                      encoding="utf-8")
    assert gen.main(["--check", "--output", str(target)], app=app) == 1
    assert "is stale" in capsys.readouterr().err
    target.unlink()
    assert gen.main(["--check", "--output", str(target)], app=app) == 1
    assert not target.exists()  # --check never writes


def test_a_change_in_the_openapi_document_changes_the_text(app, gen):
    spec = gen.build_spec(app)
    changed = copy.deepcopy(spec)
    event = changed["components"]["schemas"]["Event"]
    event["properties"]["host"]["maxLength"] = 254
    changed["paths"]["/api/v1/events"]["post"]["responses"]["429"] = {"description": "Slow down"}
    before, after = gen.render(spec), gen.render(changed)
    assert "1–255" in before and "1–254" in after
    assert "| 429 | Slow down |" in after and "| 429 |" not in before


def test_every_endpoint_and_schema_field_is_documented(app, gen):
    spec = gen.build_spec(app)
    text = gen.render(spec)
    for path, methods in spec["paths"].items():
        for method in methods:
            assert f"### `{method.upper()} {path}`" in text
    for name, schema in spec["components"]["schemas"].items():
        assert f"### {name}\n" in text
        for field in schema.get("properties", {}):
            assert f"| `{field}` |" in text, f"{name}.{field} is missing"
        for value in schema.get("enum", ()):
            assert f"| `{value}` |" in text


def test_documented_examples_are_what_the_api_answers(app, client, runner, gen):
    """Replay every example of docs/api.md, in order, against the real app."""
    from service.core.db import new_session
    from service.incidents.models import Incident

    created = runner.invoke(["token", "create", "--source", "PM-HOTICH"])
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    for example in gen.EXAMPLES:
        headers = {"Content-Type": "application/json"}
        if example.has_token:
            headers["Authorization"] = f"Bearer {token}"
        response = client.open(example.path, method=example.method, data=example.payload(),
                               headers=headers)
        assert response.status_code == example.status, (example.key, response.data[:300])
        assert response.get_json() == example.answer, example.key
        if example.key == "single":
            # The text says the first example opens an incident under the default policy.
            with app.app_context():
                s = new_session()
                try:
                    assert s.scalar(select(func.count()).select_from(Incident)) == 1
                finally:
                    s.close()


def test_the_error_table_names_every_error_the_examples_show(gen):
    documented = {(e.status, e.code) for e in gen.ERRORS}
    shown = {(x.status, x.answer["error"]) for x in gen.EXAMPLES if "error" in x.answer}
    assert shown == documented
