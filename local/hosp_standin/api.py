"""HOSP's API as the stand-in implements it: routing, Basic auth, and the handlers.

Nothing here knows about sockets or faults: `handle` turns an `ApiRequest` into an
`ApiResponse`, so the HTTP layer (server.py) decides separately whether a fault
replaces, delays or follows the answer.

The order of checks follows Rails: routing first (unknown path 404, wrong method 405),
then authentication (401), then the action. Werkzeug's router matches the paths,
after the path has been decoded and its slashes squeezed the way Rails' router does.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import IntegerConverter, Map, Rule

from local.hosp_standin.parsing import BadJson, decimal, is_base64, is_blank, json_value
from local.hosp_standin.store import Hospital, Note, Patient, Staff, Store

# Listed by the screening "model": which finding an image gets is picked by its hash.
FINDINGS: tuple[str, ...] = (
    "no abnormality detected",
    "fracture",
    "pulmonary nodule",
    "cardiomegaly",
    "pleural effusion",
    "foreign body",
)
SCREENING_MODEL = "hosp-xray-screen-1"
REALM = "HOSP"


@dataclass(frozen=True)
class ApiRequest:
    method: str  # HEAD is routed as GET by the HTTP layer
    path: str  # without the query string
    query: Mapping[str, list[str]]
    body: bytes
    authorization: str | None
    base_url: str  # e.g. http://127.0.0.1:9000, for the "url" fields


@dataclass(frozen=True)
class ApiResponse:
    status: int
    payload: Any = None  # JSON-serialisable; None means an empty body
    headers: tuple[tuple[str, str], ...] = ()

    def body(self) -> bytes:
        if self.payload is None:
            return b""
        # Compact, like Rails' to_json.
        return json.dumps(self.payload, separators=(",", ":")).encode()


def _error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> ApiResponse:
    return ApiResponse(status, {"error": message}, headers)


def _invalid(errors: dict[str, list[str]]) -> ApiResponse:
    """422 in Rails' shape: {"errors": {"field": ["message", ...]}}."""
    return ApiResponse(422, {"errors": errors})


class _BadBody(Exception):
    """The request body is missing, not JSON or not a JSON object; answered 400."""


def _json_object(body: bytes) -> dict[str, Any]:
    """The body of an action that takes one: a JSON object, else _BadBody.

    HOSP's answer to a missing body is unknown; the stand-in answers 400, as Rails
    does for a missing required parameter, rather than act on nothing.
    """
    if not body.strip():
        raise _BadBody("request body is required: a JSON object")
    try:
        parsed = json_value(body)
    except BadJson as error:
        raise _BadBody(f"request body is {error}") from None
    if not isinstance(parsed, dict):
        raise _BadBody("request body must be a JSON object")
    return parsed


def _id_field(fields: Mapping[str, Any], name: str) -> int | None:
    """fields[name] if it is a positive integer (JSON true is not 1), else None."""
    value = fields.get(name)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


# --- Basic auth -------------------------------------------------------------------------


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header, or None if absent/malformed."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def basic_user(header: str | None) -> str | None:
    """Only the user name of a Basic auth header, for logs: never the password."""
    credentials = basic_credentials(header)
    return credentials[0] if credentials else None


# --- JSON views of records ----------------------------------------------------------------


def hospital_json(hospital: Hospital, base_url: str) -> dict[str, Any]:
    return {**dataclasses.asdict(hospital), "url": f"{base_url}/hospitals/{hospital.id}.json"}


def patient_json(patient: Patient, base_url: str) -> dict[str, Any]:
    return {**dataclasses.asdict(patient), "url": f"{base_url}/patients/{patient.id}.json"}


def staff_json(staff: Staff, base_url: str) -> dict[str, Any]:
    return {**dataclasses.asdict(staff), "url": f"{base_url}/staffs/{staff.id}.json"}


def note_json(note: Note) -> dict[str, Any]:
    return dataclasses.asdict(note)


# --- actions ------------------------------------------------------------------------------

Action = Callable[[Store, ApiRequest, Staff, int], ApiResponse]


def list_hospitals(store: Store, request: ApiRequest, user: Staff, _: int) -> ApiResponse:
    return ApiResponse(200, [hospital_json(h, request.base_url) for h in store.list_hospitals()])


def show_hospital(store: Store, request: ApiRequest, user: Staff, hospital_id: int) -> ApiResponse:
    hospital = store.get_hospital(hospital_id)
    if hospital is None:
        return _error(404, f"Couldn't find Hospital with 'id'={hospital_id}")
    return ApiResponse(200, hospital_json(hospital, request.base_url))


def _hospital_name(fields: dict[str, Any], required: bool) -> tuple[str | None, dict[str, list[str]]]:
    """The name given, if valid. An update may leave it out, but not set it to null:
    Rails would assign nil and fail the presence validation."""
    if "name" not in fields and not required:
        return None, {}
    name = fields.get("name")
    if not isinstance(name, str) or is_blank(name):
        return None, {"name": ["can't be blank"]}
    return name, {}


def create_hospital(store: Store, request: ApiRequest, user: Staff, _: int) -> ApiResponse:
    name, errors = _hospital_name(_json_object(request.body), required=True)
    if errors or name is None:
        return _invalid(errors)
    body = hospital_json(store.create_hospital(name), request.base_url)
    return ApiResponse(201, body, (("Location", body["url"]),))


def update_hospital(store: Store, request: ApiRequest, user: Staff, hospital_id: int) -> ApiResponse:
    # PUT behaves like PATCH, as in Rails: only the given fields change.
    name, errors = _hospital_name(_json_object(request.body), required=False)
    if errors:
        return _invalid(errors)
    hospital = store.update_hospital(hospital_id, name)
    if hospital is None:
        return _error(404, f"Couldn't find Hospital with 'id'={hospital_id}")
    return ApiResponse(200, hospital_json(hospital, request.base_url))


def delete_hospital(store: Store, request: ApiRequest, user: Staff, hospital_id: int) -> ApiResponse:
    if not store.delete_hospital(hospital_id):
        return _error(404, f"Couldn't find Hospital with 'id'={hospital_id}")
    return ApiResponse(204)


def show_patient(store: Store, request: ApiRequest, user: Staff, patient_id: int) -> ApiResponse:
    patient = store.get_patient(patient_id)
    if patient is None:
        return _error(404, f"Couldn't find Patient with 'id'={patient_id}")
    return ApiResponse(200, patient_json(patient, request.base_url))


def show_staff(store: Store, request: ApiRequest, user: Staff, staff_id: int) -> ApiResponse:
    staff = store.get_staff(staff_id)
    if staff is None:
        return _error(404, f"Couldn't find Staff with 'id'={staff_id}")
    return ApiResponse(200, staff_json(staff, request.base_url))


def create_note(store: Store, request: ApiRequest, user: Staff, _: int) -> ApiResponse:
    fields = _json_object(request.body)
    errors: dict[str, list[str]] = {}
    for text_field in ("title", "body"):
        value = fields.get(text_field)
        if not isinstance(value, str) or is_blank(value):
            errors[text_field] = ["can't be blank"]
    patient_id, staff_id = _id_field(fields, "patient_id"), _id_field(fields, "staff_id")
    # Rails reports a missing belongs_to record as "<association> must exist".
    if patient_id is None or store.get_patient(patient_id) is None:
        errors["patient"] = ["must exist"]
    if staff_id is None or store.get_staff(staff_id) is None:
        errors["staff"] = ["must exist"]
    if errors or patient_id is None or staff_id is None:
        return _invalid(errors)
    note = store.create_note(fields["title"], fields["body"], patient_id, staff_id)
    return ApiResponse(201, note_json(note), (("Location", f"{request.base_url}/notes/{note.id}.json"),))


def list_notes(store: Store, request: ApiRequest, user: Staff, _: int) -> ApiResponse:
    wanted = request.query.get("patient_id")
    patient_id: int | None = None
    if wanted:
        patient_id = decimal(wanted[0])
        if not patient_id:  # None (not ASCII digits) or 0
            return _error(400, "patient_id must be a positive integer")
    return ApiResponse(200, [note_json(n) for n in store.list_notes(patient_id)])


def show_note(store: Store, request: ApiRequest, user: Staff, note_id: int) -> ApiResponse:
    note = store.get_note(note_id)
    if note is None:
        return _error(404, f"Couldn't find Note with 'id'={note_id}")
    return ApiResponse(200, note_json(note))


def screen_images(patient_id: int, images: list[bytes]) -> dict[str, Any]:
    """The screening result: a pure function of the patient id and the image bytes.

    No timestamps and no randomness, so the same call gives a byte-identical answer;
    the stand-in's screening is a deterministic imitation, not a model.
    """
    digests = [hashlib.sha256(image).hexdigest() for image in images]
    results = []
    for index, digest in enumerate(digests):
        finding = FINDINGS[int(digest[:8], 16) % len(FINDINGS)]
        # Confidence in [0.50, 0.99], from other bits of the same hash.
        confidence = round(0.5 + (int(digest[8:16], 16) / 0xFFFFFFFF) * 0.49, 3)
        results.append(
            {
                "image_index": index,
                "image_sha256": digest,
                "finding": finding,
                "abnormal": finding != FINDINGS[0],
                "confidence": confidence,
            }
        )
    screening_id = hashlib.sha256(f"{patient_id}:{','.join(digests)}".encode()).hexdigest()[:24]
    return {
        "screening_id": f"scr_{screening_id}",
        "patient_id": patient_id,
        "model": SCREENING_MODEL,
        "results": results,
        "summary": {"images": len(results), "abnormal": sum(1 for r in results if r["abnormal"])},
    }


def screen_patient(store: Store, request: ApiRequest, user: Staff, patient_id: int) -> ApiResponse:
    if store.get_patient(patient_id) is None:
        return _error(404, f"Couldn't find Patient with 'id'={patient_id}")
    images = _json_object(request.body).get("images")
    if not isinstance(images, list) or not images:
        return _invalid({"images": ["must be a non-empty list of base64 strings"]})
    decoded: list[bytes] = []
    for index, image in enumerate(images):
        problem = _image_problem(image)
        if problem:
            return _invalid({"images": [f"image {index} {problem}"]})
        decoded.append(base64.b64decode(image))
    return ApiResponse(200, screen_images(patient_id, decoded))


def _image_problem(image: object) -> str | None:
    """What is wrong with one image of a screen, said plainly, or None."""
    if not isinstance(image, str):
        return "must be a base64 string"
    if not image:
        return "is empty"
    return None if is_base64(image) else "is not valid base64 (padded, standard alphabet)"


# --- routing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # e.g. "/hospitals/{id}"; {id} matches a positive integer
    action: Action

    @property
    def name(self) -> str:
        """How /_sim/stats names the route, e.g. "GET /hospitals/{id}"."""
        return f"{self.method} {self.template}"


ROUTES: tuple[Route, ...] = (
    Route("GET", "/hospitals", list_hospitals),
    Route("POST", "/hospitals", create_hospital),
    Route("GET", "/hospitals/{id}", show_hospital),
    Route("PATCH", "/hospitals/{id}", update_hospital),
    Route("PUT", "/hospitals/{id}", update_hospital),
    Route("DELETE", "/hospitals/{id}", delete_hospital),
    Route("GET", "/patients/{id}", show_patient),
    Route("POST", "/patients/{id}/screen", screen_patient),
    Route("GET", "/staffs/{id}", show_staff),
    Route("GET", "/notes", list_notes),
    Route("POST", "/notes", create_note),
    Route("GET", "/notes/{id}", show_note),
)


class RecordIdConverter(IntegerConverter):
    """A record id: a positive integer in ASCII digits, without leading zeros.

    Werkzeug's own int converter matches \\d, which takes any Unicode digit.
    """

    regex = r"[1-9][0-9]{0,17}"


def _rules(route: Route) -> Iterator[Rule]:
    """The route's path, and the same with Rails' .json format suffix (/hospitals/1.json)."""
    path = route.template.replace("{id}", "<record_id:id>")
    for variant in (path, f"{path}.json"):
        yield Rule(variant, methods=[route.method], endpoint=route)


# strict_slashes off: a trailing slash matches, as in Rails (not a redirect).
_ROUTER = Map(
    [rule for route in ROUTES for rule in _rules(route)],
    converters={"record_id": RecordIdConverter},
    strict_slashes=False,
    merge_slashes=False,  # _normalise squeezes them; Werkzeug would answer a redirect
)


@dataclass(frozen=True)
class Match:
    """What the router makes of a method and path."""

    route: Route | None  # None: no route takes this method on this path
    record_id: int = 0  # the {id} of the path, 0 if it has none
    allowed: tuple[str, ...] = ()  # if route is None: the methods the path takes (empty: unknown path)


def _normalise(path: str) -> str:
    """The path as Rails' router sees it: decoded (/patients/%35 is patient 5), with
    runs of slashes squeezed to one (/hospitals//1 is /hospitals/1)."""
    return re.sub("/{2,}", "/", unquote(path))


def match(method: str, path: str) -> Match:
    """Route a request (HEAD routes like GET). The path has no query string."""
    router = _ROUTER.bind("hosp")
    try:
        rule, arguments = router.match(_normalise(path), method, return_rule=True)
    except MethodNotAllowed as wrong_method:
        return Match(None, allowed=tuple(sorted(wrong_method.valid_methods or ())))
    except NotFound:
        return Match(None)
    return Match(rule.endpoint, int(arguments.get("id", 0)))


def route_name(method: str, path: str) -> str:
    """The route template a request falls under, for stats; "unmatched" if no route has its path."""
    found = match(method, path)
    if found.route is None and found.allowed:
        found = match(found.allowed[0], path)  # the path is known; only the method is not
    if found.route is None:
        return "unmatched"
    return f"{method} {found.route.template}"


def handle(store: Store, request: ApiRequest) -> ApiResponse:
    """Answer one API request (not /_sim): route, authenticate, act."""
    found = match(request.method, request.path)
    if found.route is None and not found.allowed:
        return _error(404, f"No route matches [{request.method}] {request.path!r}")
    if found.route is None:
        allowed = (("Allow", ", ".join(found.allowed)),)
        return _error(405, f"{request.method} is not allowed on {request.path}", allowed)
    credentials = basic_credentials(request.authorization)
    user = store.authenticate(*credentials) if credentials else None
    if user is None:
        return _error(401, "HTTP Basic: Access denied.", (("WWW-Authenticate", f'Basic realm="{REALM}"'),))
    try:
        return found.route.action(store, request, user, found.record_id)
    except _BadBody as error:
        return _error(400, str(error))
