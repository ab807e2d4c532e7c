"""The CapabilityStatement of ``/fhir/r4``: built from what the search module supports,
so that it lists exactly what the server does (https://hl7.org/fhir/R4/capabilitystatement.html)."""

from __future__ import annotations

from datetime import datetime

from homeward import __version__

from . import codes as c
from .resources import Resource
from .search import SORTS, SUPPORTED

#: Resource types with a read (GET [type]/[id]) besides search, and their profiles.
PROFILES: dict[str, list[str]] = {
    "Observation": [c.VITAL_SIGNS_PROFILE],
}
#: The FHIR Bulk Data Access operations (https://hl7.org/fhir/uv/bulkdata/).
BULK_EXPORT = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"


def capability_statement(*, base_url: str, published: datetime) -> Resource:
    resources = []
    for resource_type, params in SUPPORTED.items():
        entry: Resource = {
            "type": resource_type,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": p.name, "type": p.type, "documentation": p.documentation}
                            for p in params],
        }
        if resource_type in PROFILES:
            entry["supportedProfile"] = PROFILES[resource_type]
        if resource_type == "Patient":
            entry["operation"] = [{"name": "export",
                                   "definition": BULK_EXPORT + "patient-export"}]
        resources.append(entry)
    resources.append({"type": "Group", "operation": [
        {"name": "export", "definition": BULK_EXPORT + "group-export"}]})
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": published.date().isoformat(),
        "publisher": "Homeward",
        "kind": "instance",
        "software": {"name": "Homeward", "version": __version__},
        "implementation": {"description": "Homeward remote monitoring, read-only FHIR R4 API",
                           "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Read-only.  Authenticate with 'Authorization: Bearer <token>' "
                             "(a clinician's token, or a system client's, scoped to its "
                             "organisation).  Search results are paged with 'next' links; "
                             "'Prefer: handling=strict' answers an unsupported parameter "
                             "with 400.  _sort: date or -date (Observation).",
            "security": {"cors": False, "description": "Bearer tokens; every read is "
                                                       "audited"},
            "resource": resources,
            "searchParam": [{"name": "_count", "type": "number",
                             "documentation": "Entries per page (default 50, at most 1000)"},
                            {"name": "_sort", "type": "string",
                             "documentation": "Observation: " + " or ".join(
                                 SORTS["Observation"])}],
        }],
    }
