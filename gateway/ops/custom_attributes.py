"""Custom attributes: WorkOS's standard set, where each identity provider sends them by default, and their values
computed from a user's raw SCIM attributes.

Every provider here sends the standard set in the enterprise extension (RFC 7643 §4.3), Entra ID and Okta included;
``manager_id`` is the manager reference's ``value``. An admin overrides any of them, or maps the organization's own
attributes, per directory (``gateway.ops.attribute_mappings``): e.g. a OneLogin custom field sent under a vendor
extension URN.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.ops.attribute_paths import AttributePath, lowered, resolve
from gateway.store.models import DirectoryType

# WorkOS's standard custom attributes: defined in every organization.
STANDARD = (
    "department",
    "job_title",
    "employee_number",
    "cost_center",
    "division",
    "organization",
    "manager_email",
    "manager_id",
)

_ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
_ENTERPRISE_DEFAULTS = {
    "department": f"{_ENTERPRISE}:department",
    "employee_number": f"{_ENTERPRISE}:employeeNumber",
    "cost_center": f"{_ENTERPRISE}:costCenter",
    "division": f"{_ENTERPRISE}:division",
    "organization": f"{_ENTERPRISE}:organization",
    "manager_id": f"{_ENTERPRISE}:manager.value",
}
# job_title is a user's own field already (SCIM ``title``), and no provider sends the manager's email by default:
# both are left for the admin to map.
_PROVIDER_DEFAULTS: dict[str, dict[str, str]] = {
    DirectoryType.JUMPCLOUD.value: _ENTERPRISE_DEFAULTS,
    DirectoryType.OKTA.value: _ENTERPRISE_DEFAULTS,
    DirectoryType.AZURE.value: _ENTERPRISE_DEFAULTS,
    DirectoryType.ONELOGIN.value: _ENTERPRISE_DEFAULTS,
    DirectoryType.GENERIC.value: _ENTERPRISE_DEFAULTS,
}


def default_paths(directory_type: str) -> dict[str, str]:
    """The attribute paths a directory of this provider reads when its admin changed nothing."""
    return dict(_PROVIDER_DEFAULTS.get(directory_type, _ENTERPRISE_DEFAULTS))


def evaluate_attributes(raw: Mapping[str, Any], paths: Mapping[str, AttributePath]) -> dict[str, Any]:
    """The user's custom attributes: each mapped name whose path holds a value (absent ones are left out)."""
    values: dict[str, Any] = {}
    view = lowered(raw) if paths else None
    for name, path in paths.items():
        value = resolve(raw, path, view=view)
        if value is not None:
            values[name] = value
    return values
