"""HTTP routes and event handlers of hosp-reliability: wiring only, logic in chalicelib."""

from __future__ import annotations

from chalice import Chalice, Response
from chalice.app import SQSEvent

from chalicelib import config, constants, deploy_guard, health, note_intake, note_worker

# A stage is deployed by `make deploy`, never by `chalice deploy` (chalicelib/deploy_guard.py).
deploy_guard.refuse_chalice_deploy()

app = Chalice(app_name=constants.APP_NAME)
# Every body is binary to API Gateway: the answers' bodies are bytes
# (chalicelib/errors.py), which a Lambda proxy answer carries only as base64.
# So API Gateway and chalice send an answer only to a request that has an
# Accept header: the proxy sends one to the app on every request, the note
# intake's hand-off included.
app.api.binary_types = ["*/*"]


@app.route("/health", methods=["GET"])
def get_health() -> Response:
    status, body = health.report()
    return Response(body=body, status_code=status, headers={"Content-Type": "application/json"})


# The proxy's hand-off of HOSP's answer to a screen, for its note (chalicelib/note_intake.py).
# Only the proxy fleet reaches it; the proxy routes no client's request here.
@app.route("/note-intake", methods=["POST"], content_types=["application/json"])
def post_note_intake() -> Response:
    request = app.current_request
    assert request is not None  # always set while a route runs
    return note_intake.receive(request.raw_body, request.headers)


# Admins only: the token is checked in chalicelib/audit/auth.py, not by an
# authorizer, because `chalice local` does not check Cognito tokens' signatures.
# The audit route is imported on its first call: its token check (PyJWT,
# cryptography) would add about 40 ms to every cold start of the note intake.
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
