"""schemathesis against the live app: no 5xx, every response matches /openapi.json."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers import make_csv, sample_texts
from tests.integration.helpers import score_everything
from webapp import create_app

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture
def roomy_app(database_url: str):  # type: ignore[no-untyped-def]
    """The app with export slots to spare: schemathesis's WSGI calls never close a response, so an
    export's slot is never given back, and a column's first group count takes one too."""
    application = create_app({"database_url": database_url, "migrate_on_start": False, "max_exports": 1_000})
    application.testing = True
    yield application
    application.extensions["db_pool"].close()


def test_api_matches_its_document(roomy_app, db):
    app, client = roomy_app, roomy_app.test_client()
    # Real data: a finished batch (with a set-aside row) and a processing one.
    body = make_csv(sample_texts(150, seed=1)) + b"x,too,many\n"
    finished = client.post("/batch/upload", data=body, content_type="text/csv").get_json()["batch_id"]
    kept = "id,text,product\n" + "".join(
        f"{n},{text!r},p{n % 3}\n" for n, text in enumerate(["nice", "bad"] * 5)
    )
    grouped = client.post("/batch/upload", data=kept, content_type="text/csv").get_json()["batch_id"]
    score_everything(db)
    processing = client.post("/batch/upload", data=make_csv(["good"]), content_type="text/csv").get_json()
    api = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in api.get_all_operations()]
    # 12, GET .../events, GET .../summary, GET .../webhooks and POST .../webhooks/retry
    assert len(operations) == 16

    # Known-good requests, so the success responses are checked against the document too.
    valid = {
        "POST /batch/upload": [{"body": "id,text\n1,I love it\n", "media_type": "text/csv"}],
        "DELETE /batch/{batch_id}": [{"path_parameters": {"batch_id": processing["batch_id"]}}],
        "POST /batch/{batch_id}/cancel": [{"path_parameters": {"batch_id": processing["batch_id"]}}],
        "GET /batches": [{"query": {"per_page": 1}}, {"query": {"status": "completed"}}],
        "GET /batch/{batch_id}/summary": [
            {"path_parameters": {"batch_id": grouped}, "query": {"by": "product", "limit": 2}}
        ],
        "GET /batch/{batch_id}/results": [
            {"path_parameters": {"batch_id": finished}, "query": {"per_page": 7}},
            {"path_parameters": {"batch_id": finished}, "query": {"sentiment": "negative"}},
        ],
    }
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        default = [{"path_parameters": {"batch_id": finished}}] if "{batch_id}" in operation.path else [{}]
        for arguments in valid.get(label, default):
            response = operation.Case(**arguments).call_and_validate(checks=CHECKS)
            # (A retry needs a webhook that was delivered or given up, which needs runners: its
            # documented 409 is what this batch without a callback_url gets.)
            refusal_ok = label.startswith("DELETE") or label.endswith("/webhooks/retry")
            assert response.status_code < 400 or refusal_ok, (label, response.text)

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def check(case):
            case.call_and_validate(checks=CHECKS)

        check()


def test_document_names_every_route(app):
    from webapp.openapi.document import document

    documented = set(document()["paths"])
    routes = {
        rule.rule.replace("<public_id>", "{batch_id}")
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
    }
    # The document itself, and the pages only browsers use.
    pages = {"/openapi.json", "/login", "/logout", "/", "/batch/{batch_id}/set-aside"}
    assert routes - pages == documented
