"""The FHIR push channel's message: an alert as a FHIR R4 transaction Bundle.

Pure (no database, no clock, no I/O), like :mod:`server.fhir.resources`, whose
resources it packs; ``alerts.fhir_push`` reads the rows inside the transaction
that changes the alert and calls :func:`transaction_bundle` there (docs/alerts.md,
"FHIR push").

The Bundle holds, in this order:

1. the patient: a **conditional create** (``POST Patient`` with ``ifNoneExist``
   on the NHS number, ``fullUrl`` a ``urn:uuid:``), referenced by that
   ``urn:uuid:`` from every other entry.  The receiver (an EPR, a shared care
   record) already knows the patient under its own logical id, which Homeward
   does not know: ``Patient/{our id}`` there names nobody, or somebody else.
   The NHS number is the identity both sides share.  A conditional create
   matches the receiver's patient without writing to it (a ``PUT`` would
   overwrite its demographics, a plain ``POST`` would duplicate the patient),
   creates a minimal one only when the receiver has none (so the first push to
   a new store does not fail on an unknown patient), and the receiver rewrites
   the ``urn:uuid:`` references to the id it resolved (R4 transaction rules).
   A patient without an NHS number cannot be identified there, so there is no
   Bundle for them: :class:`ValueError` (the notification is recorded as failed
   with that reason, never sent to a guessed patient).
2. the Flag: ``PUT Flag/{alert id}``;
3. the evidence: ``PUT Observation/{id}`` for every Observation of each reading
   that fired the alert (its main one and the pulse rate derived from it), each
   referenced from the Flag's ``flag-detail`` extensions.

``PUT`` with Homeward's ids makes a push idempotent at the receiver: the same
alert pushed again (acknowledged, resolved...) updates the same Flag and
Observations.  ``fullUrl`` of a ``PUT`` entry is its URL on the receiver,
``{base_url}/{type}/{id}``, so the relative references between the entries
(``Observation/...`` in the Flag, ``derivedFrom``) resolve inside the Bundle.

Devices are referenced (``device``, the gateway-device extension) as the
Observations of the FHIR API reference them, not included.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable
from typing import Any

from . import codes as c
from .resources import Resource, Row, flag, observations, patient


def patient_full_url(nhs_number: str) -> str:
    """The ``urn:uuid:`` the Bundle's entries use to reference the patient: a UUID 5 of
    the NHS number's identifier token, so the same patient gets the same one every time."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{c.NHS_NUMBER}|{nhs_number}')}"


def _with_subject(resource: Resource, old: str, new: str) -> Resource:
    """``resource`` with every reference to ``old`` (``Patient/{id}``) made ``new``."""
    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("reference") == old:
                return {**node, "reference": new}
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node
    out: Resource = walk(copy.deepcopy(resource))
    return out


def _put(base_url: str, resource: Resource) -> Resource:
    path = f"{resource['resourceType']}/{resource['id']}"
    return {"fullUrl": f"{base_url}/{path}", "resource": resource,
            "request": {"method": "PUT", "url": path}}


def transaction_bundle(alert_row: Row, evidence_rows: Iterable[Row], patient_row: Row, *,
                       base_url: str) -> Resource:
    """The transaction Bundle that records ``alert_row`` at the FHIR server ``base_url``.

    ``alert_row``: an ``alert`` row (the columns :func:`server.fhir.resources.flag`
    reads); ``evidence_rows``: the ``reading`` rows that fired it, oldest first (a
    reading given twice counts once); ``patient_row``: the alert's ``patient`` row.
    ValueError for a system alert, a patient row or reading of another patient, or a
    patient without an NHS number.
    """
    patient_id = alert_row.get("patient_id")
    if alert_row["category"] != "clinical" or patient_id is None:
        raise ValueError(f"alert {alert_row['id']} is not a clinical alert on a patient")
    if patient_row["id"] != patient_id:
        raise ValueError(f"alert {alert_row['id']} is on patient {patient_id}, "
                         f"not patient {patient_row['id']}")
    nhs_number = patient_row.get("nhs_number")
    if not nhs_number:
        raise ValueError(f"patient {patient_id} has no NHS number: the FHIR endpoint "
                         "cannot identify them")
    base = base_url.rstrip("/")
    evidence: list[Resource] = []
    seen: set[str] = set()
    for row in evidence_rows:
        if str(row["id"]) in seen:
            continue
        seen.add(str(row["id"]))
        if row.get("patient_id") is not None and row["patient_id"] != patient_id:
            raise ValueError(f"reading {row['id']} is patient {row['patient_id']}'s, "
                             f"not the alert's (patient {patient_id})")
        evidence += observations(row, patient_id=patient_id)
    the_flag = flag(alert_row, evidence_ids=[o["id"] for o in evidence])

    subject, local = f"Patient/{patient_id}", patient_full_url(nhs_number)
    person = {k: v for k, v in patient(patient_row).items() if k != "id"}
    entries: list[Resource] = [{
        "fullUrl": local,
        "resource": person,
        "request": {"method": "POST", "url": "Patient",
                    "ifNoneExist": f"identifier={c.NHS_NUMBER}|{nhs_number}"},
    }]
    entries += [_put(base, _with_subject(r, subject, local)) for r in (the_flag, *evidence)]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

