"""The stand-in's data: deterministic seed records, the demo accounts, and thread-safe writes.

The server handles each connection in its own thread, so every read and write of the
store goes through one lock. Seed records carry fixed timestamps so that a fresh start
(or POST /_sim/reset) always yields byte-identical GET answers; records created later
carry the current time, as HOSP's would.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# Seed records are stamped from this instant onwards (one minute apart).
SEED_EPOCH = datetime(2023, 10, 2, 8, 0, tzinfo=UTC)


def timestamp(moment: datetime | None = None) -> str:
    """Format like HOSP (Rails): UTC with milliseconds, e.g. 2023-10-17T08:51:00.113Z."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _seed_time(minutes: int) -> str:
    return timestamp(SEED_EPOCH + timedelta(minutes=minutes))


@dataclass
class Hospital:
    id: int
    name: str
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class Patient:
    id: int
    hospital_id: int
    name: str
    species: str
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class Staff:
    id: int
    name: str
    role: str  # one of STAFF_ROLES
    username: str
    hospital_id: int
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class Note:
    id: int
    title: str
    body: str
    patient_id: int
    staff_id: int
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class DemoAccount:
    username: str
    password: str
    staff_id: int

    @property
    def authorization(self) -> str:
        """The `Authorization` header value a client of this account sends."""
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


# The roles a staff record can have (the Staff schema of docs/hosp-api.yaml lists the
# same). "service" is an account that a program, not a person, signs in with.
STAFF_ROLES: tuple[str, ...] = ("vet", "nurse", "admin", "service")

# The account of the note worker, which writes X-ray notes into HOSP on behalf of
# nurses. A staff record of its own (role "service") keeps the notes it writes
# apart from those a person wrote, and lets it be revoked without touching anyone's
# login. The local stack reads its credentials and staff id from here.
NOTES_SERVICE_ACCOUNT = DemoAccount("notes-service", "notes-service-local-only", staff_id=5)

# The demo accounts, documented in docs/hosp-api.yaml. They are fixtures of a local
# test server, not secrets: the stand-in never runs anywhere but on a developer's
# machine or in CI.
DEMO_ACCOUNTS: tuple[DemoAccount, ...] = (
    DemoAccount("test-account", "supersecret", staff_id=1),
    DemoAccount("dr-vega", "vetpass", staff_id=2),
    DemoAccount("nurse-kim", "nursepass", staff_id=3),
    DemoAccount("admin-ola", "adminpass", staff_id=4),
    NOTES_SERVICE_ACCOUNT,
)

_SEED_HOSPITALS = (
    "Northside Veterinary Hospital",
    "Harbour Animal Clinic",
    "Valley Equine & Farm Practice",
)

_SEED_STAFF = (
    # (name, role, username, hospital_id); ids follow the order, from 1.
    ("Test Account", "nurse", "test-account", 1),
    ("Dr. Elena Vega", "vet", "dr-vega", 1),
    ("Kim Park", "nurse", "nurse-kim", 2),
    ("Ola Nordmann", "admin", "admin-ola", 1),
    ("X-ray Notes Service", "service", "notes-service", 1),
)

_SEED_PATIENTS = (
    # (name, species); hospital ids cycle 1, 2, 3 so every hospital has patients.
    ("Bella", "dog"),
    ("Milo", "cat"),
    ("Daisy", "horse"),
    ("Max", "dog"),
    ("Luna", "cat"),
    ("Charlie", "dog"),
    ("Coco", "rabbit"),
    ("Rocky", "dog"),
    ("Nala", "cat"),
    ("Buttercup", "cow"),
    ("Oscar", "dog"),
    ("Pepper", "ferret"),
    ("Toby", "dog"),
    ("Willow", "horse"),
    ("Ziggy", "parrot"),
    ("Rosie", "cat"),
    ("Bruno", "dog"),
    ("Hazel", "guinea pig"),
    ("Jasper", "cat"),
    ("Mabel", "goat"),
)


class Store:
    """All records of the stand-in, guarded by one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hospitals: dict[int, Hospital] = {}
        self._patients: dict[int, Patient] = {}
        self._staff: dict[int, Staff] = {}
        self._notes: dict[int, Note] = {}
        self._next_hospital_id = 1
        self._next_note_id = 1
        self.reset()

    def reset(self) -> None:
        """Back to the seed data: what a fresh start would hold."""
        with self._lock:
            self._hospitals = {
                i: Hospital(i, name, _seed_time(i), _seed_time(i)) for i, name in enumerate(_SEED_HOSPITALS, start=1)
            }
            self._staff = {
                i: Staff(i, name, role, username, hospital_id, _seed_time(10 + i), _seed_time(10 + i))
                for i, (name, role, username, hospital_id) in enumerate(_SEED_STAFF, start=1)
            }
            hospital_count = len(_SEED_HOSPITALS)
            self._patients = {
                i: Patient(i, (i - 1) % hospital_count + 1, name, species, _seed_time(100 + i), _seed_time(100 + i))
                for i, (name, species) in enumerate(_SEED_PATIENTS, start=1)
            }
            self._notes = {}
            self._next_hospital_id = len(self._hospitals) + 1
            self._next_note_id = 1

    # --- accounts -------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> Staff | None:
        """The staff record of a demo account whose password matches, else None."""
        for account in DEMO_ACCOUNTS:
            # compare_digest: the habit of constant-time comparison for credentials.
            if account.username == username and hmac.compare_digest(account.password.encode(), password.encode()):
                return self.get_staff(account.staff_id)
        return None

    # --- hospitals ------------------------------------------------------------------

    def list_hospitals(self) -> list[Hospital]:
        with self._lock:
            # Newest first, as HOSP lists them.
            return [dataclasses.replace(h) for h in sorted(self._hospitals.values(), key=lambda h: -h.id)]

    def get_hospital(self, hospital_id: int) -> Hospital | None:
        with self._lock:
            found = self._hospitals.get(hospital_id)
            # A copy, so that callers never see a record change under them.
            return dataclasses.replace(found) if found else None

    def create_hospital(self, name: str) -> Hospital:
        with self._lock:
            now = timestamp()
            hospital = Hospital(self._next_hospital_id, name, now, now)
            self._hospitals[hospital.id] = hospital
            self._next_hospital_id += 1
            return dataclasses.replace(hospital)

    def update_hospital(self, hospital_id: int, name: str | None) -> Hospital | None:
        with self._lock:
            hospital = self._hospitals.get(hospital_id)
            if hospital is None:
                return None
            # Like Rails, updated_at only moves when something actually changed.
            if name is not None and name != hospital.name:
                hospital.name = name
                hospital.updated_at = timestamp()
            return dataclasses.replace(hospital)

    def delete_hospital(self, hospital_id: int) -> bool:
        with self._lock:
            return self._hospitals.pop(hospital_id, None) is not None

    # --- patients and staff (read-only) ---------------------------------------------

    def get_patient(self, patient_id: int) -> Patient | None:
        with self._lock:
            return self._patients.get(patient_id)

    def get_staff(self, staff_id: int) -> Staff | None:
        with self._lock:
            return self._staff.get(staff_id)

    # --- notes ----------------------------------------------------------------------

    def create_note(self, title: str, body: str, patient_id: int, staff_id: int) -> Note:
        """Store a note; the caller has validated that patient and staff exist."""
        with self._lock:
            now = timestamp()
            note = Note(self._next_note_id, title, body, patient_id, staff_id, now, now)
            self._notes[note.id] = note
            self._next_note_id += 1
            return note

    def get_note(self, note_id: int) -> Note | None:
        with self._lock:
            return self._notes.get(note_id)

    def list_notes(self, patient_id: int | None = None) -> list[Note]:
        """Notes in creation order, optionally only those of one patient."""
        with self._lock:
            return [n for n in self._notes.values() if patient_id is None or n.patient_id == patient_id]

    def notes_by_patient(self) -> dict[int, int]:
        with self._lock:
            return dict(Counter(n.patient_id for n in self._notes.values()))
