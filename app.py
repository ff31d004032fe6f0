"""HTTP routes and event handlers of hosp-reliability: wiring only, logic in chalicelib."""

from __future__ import annotations

from chalice import Chalice, Response
from chalice.app import SQSEvent

from chalicelib import config, constants, deploy_guard, health, note_worker, screen

# A stage is deployed by `make deploy`, never by `chalice deploy` (chalicelib/deploy_guard.py).
deploy_guard.refuse_chalice_deploy()

app = Chalice(app_name=constants.APP_NAME)
# Every body is binary to API Gateway, so that HOSP's answers reach the nurse
# byte for byte, whatever their type (docs/screen.md).
app.api.binary_types = ["*/*"]


@app.route("/health", methods=["GET"])
def get_health() -> Response:
    status, body = health.report()
    return Response(body=body, status_code=status, headers={"Content-Type": "application/json"})


# Any content type: HOSP, not this app, decides what a screen body may be.
@app.route("/patients/{patient_id}/screen", methods=["POST"], content_types=["*/*"])
def post_screen(patient_id: str) -> Response:
    request = app.current_request
    assert request is not None  # always set while a route runs
    raw = request.raw_body
    answer = screen.intercept(patient_id, raw if isinstance(raw, bytes) else raw.encode(), request.headers)
    return Response(body=answer.body, status_code=answer.status, headers=answer.header_map())


# Admins only: the token is checked in chalicelib/audit/auth.py, not by an
# authorizer, because `chalice local` does not check Cognito tokens' signatures.
# The audit route is imported on its first call: its token check (PyJWT,
# cryptography) would add about 40 ms to every cold start of the screen route.
@app.route("/audit", methods=["GET"])
def get_audit() -> Response:
    from chalicelib.audit import route as audit  # noqa: PLC0415 - see above

    request = app.current_request
    assert request is not None
    params = request.query_params
    return audit.start({name: params.getlist(name) for name in params} if params else {}, request.headers)


@app.route("/audit/{job_id}", methods=["GET"])
def get_audit_job(job_id: str) -> Response:
    from chalicelib.audit import route as audit  # noqa: PLC0415 - see above

    request = app.current_request
    assert request is not None
    return audit.status(job_id, request.headers)


@app.on_sqs_message(queue=config.note_queue_name(), batch_size=1)
def write_note(event: SQSEvent) -> None:
    for record in event:
        note_worker.handle(note_worker.Message.from_record(record.to_dict()))
