"""The OpenAPI document against the server, as a client reads it: schemathesis generates
requests from the served document for every operation, signed in as an operator holding
every role, and runs all its checks on every answer — no server error, no status code or
content type the document does not list, no request valid by the document refused.  The
run is derandomized (the same cases every time); a random run finds more, and each thing
it found was fixed where it belonged (a page offset or cursor past 2^63 was a 500)."""

import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gridlink.gateway.api import create_app
from gridlink.gateway.httpserver import BackgroundServer
from gridlink.gateway.store import open_store
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.support.intake_api import Tokens, add_report

# rules a JSON Schema cannot state (each operation says so; the server answers 400):
# start_date..end_date spans at most 90 days; a window's since comes before its until and
# spans at most 366 (rates) or 31 (coverage) days; a duty period ends after it starts, a
# schedule's last day is on or after its first; a shift's end differs from its start; a
# work grid's cells are in the loaded map (none is loaded here); a date or time names a
# day its month has (the patterns let 30 February through); a configuration change's
# class codes must be in the code book and its target must fit its scope (400 naming the
# field); a rollout's stages rise to 100 and its target names devices the gateway knows
CROSS_FIELD = {path: [positive_data_acceptance] for path in (
    "/open311/v2/requests.json", "/api/evaluation/rates", "/api/evaluation/coverage",
    "/api/duty", "/api/duty/schedule", "/api/shifts/{name}",
    "/api/work-grids/{work_grid_id}", "/api/evaluation/unvisited", "/api/fleet/config",
    "/api/calendar/{day}", "/api/reports", "/api/dead-letters", "/api/audit", "/api/tasks",
    "/api/cases/{case_no}/dispatch", "/api/rollouts")}


def run_operation(op, auth):
    @given(case=op.as_strategy())
    @settings(max_examples=30, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def run(case):
        case.call_and_validate(headers=auth, excluded_checks=CROSS_FIELD.get(op.path, []))

    run()


def test_the_server_answers_as_its_document_says(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/intake.db")
    app = create_app(store, poll_interval=0.2, config_key=Ed25519PrivateKey.generate())
    for n in range(1, 4):
        add_report(store, n)
    tokens = Tokens(store, roles={"all": ("acceptor", "shift_lead", "technician", "admin",
                                          "dispatcher", "department")})
    auth = {"Authorization": f"Bearer {tokens('all')}"}
    problems = {}
    with BackgroundServer(app) as server:
        schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        documented = sum(len(ops) for ops in app.openapi()["paths"].values())
        assert len(operations) == documented >= 31     # every documented operation is run
        for op in operations:
            if op.path == "/api/events":
                continue  # a stream that never ends
            try:
                run_operation(op, auth)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # a failure group: collected, all shown at once
                problems[f"{op.method.upper()} {op.path}"] = str(exc)[:1500]
    store.close()
    assert not problems, "\n\n".join(f"{k}: {v}" for k, v in problems.items())
