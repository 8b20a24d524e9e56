"""The sObjects the sandbox serves (Contact, Lead), their fields, and describe results.

Custom boolean fields are configurable per object: present or absent, updateable or not, hidden by field-level
security (then the field is invisible to the API, exactly like a missing one).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

MARKETO_FIELD = "ToutApp__Marketo_Sales_Opt_Out__c"
MARKETO_LABEL = "Marketo Sales Opt Out"
KEY_PREFIXES = {"Contact": "003", "Lead": "00Q"}
OBJECT_BY_PREFIX = {prefix: name for name, prefix in KEY_PREFIXES.items()}
LABELS = {"Contact": ("Contact", "Contacts"), "Lead": ("Lead", "Leads")}


@dataclass(frozen=True)
class FieldDef:
    name: str
    label: str
    type: str  # id | string | email | boolean | picklist
    updateable: bool = True
    custom: bool = False
    hidden: bool = False  # field-level security hides it from the integration user
    length: int = 0
    default: Any = None

    @property
    def visible(self) -> bool:
        return not self.hidden

    def describe(self) -> dict[str, Any]:
        boolean = self.type == "boolean"
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "soapType": {"id": "tns:ID", "boolean": "xsd:boolean"}.get(self.type, "xsd:string"),
            "length": self.length,
            "updateable": self.updateable,
            "createable": self.updateable,
            "custom": self.custom,
            "nillable": not boolean and self.name not in ("Id", "LastName"),
            "filterable": True,
            "sortable": True,
            "defaultValue": False if boolean else None,
            "defaultedOnCreate": boolean,
            "calculated": False,
            "idLookup": self.name in ("Id", "Email"),
            "unique": False,
            "externalId": False,
            "picklistValues": [],
            "referenceTo": [],
            "relationshipName": None,
        }


def _standard_fields(sobject: str) -> list[FieldDef]:
    fields = [
        FieldDef("Id", f"{LABELS[sobject][0]} ID", "id", updateable=False, length=18),
        FieldDef("IsDeleted", "Deleted", "boolean", updateable=False, default=False),
        FieldDef("FirstName", "First Name", "string", length=40, default=None),
        FieldDef("LastName", "Last Name", "string", length=80, default=""),
        FieldDef("Email", "Email", "email", length=80, default=None),
        FieldDef("HasOptedOutOfEmail", "Email Opt Out", "boolean", default=False),
        FieldDef("HasOptedOutOfFax", "Fax Opt Out", "boolean", default=False),
        FieldDef("DoNotCall", "Do Not Call", "boolean", default=False),
    ]
    if sobject == "Lead":
        fields += [
            FieldDef("Company", "Company", "string", length=255, default="Sandbox Inc."),
            FieldDef("Status", "Lead Status", "picklist", length=255, default="Open - Not Contacted"),
            FieldDef("IsConverted", "Converted", "boolean", updateable=False, default=False),
        ]
    return fields


def default_custom_fields() -> list[FieldDef]:
    return [FieldDef(MARKETO_FIELD, MARKETO_LABEL, "boolean", custom=True, default=False)]


@dataclass
class ObjectSchema:
    """The fields of one sObject; `custom` can change at runtime (install, remove, hide a field)."""

    name: str
    standard: list[FieldDef]
    custom: dict[str, FieldDef] = field(default_factory=dict)

    @property
    def key_prefix(self) -> str:
        return KEY_PREFIXES[self.name]

    def all_fields(self) -> list[FieldDef]:
        return [*self.standard, *self.custom.values()]

    def visible_fields(self) -> list[FieldDef]:
        return [f for f in self.all_fields() if f.visible]

    def lookup(self, name: str) -> FieldDef | None:
        """The visible field with this API name (case-insensitive), else None: hidden looks like missing."""
        lowered = name.lower()
        for f in self.all_fields():
            if f.name.lower() == lowered:
                return f if f.visible else None
        return None

    def set_custom(self, definition: FieldDef) -> None:
        self.custom[definition.name] = definition

    def remove_custom(self, name: str) -> None:
        self.custom.pop(name, None)

    def describe(self, version: str) -> dict[str, Any]:
        label, plural = LABELS[self.name]
        return {
            "name": self.name,
            "label": label,
            "labelPlural": plural,
            "keyPrefix": self.key_prefix,
            "custom": False,
            "createable": True,
            "updateable": True,
            "deletable": True,
            "queryable": True,
            "searchable": True,
            "fields": [f.describe() for f in self.visible_fields()],
            "urls": {
                "sobject": f"/services/data/v{version}/sobjects/{self.name}",
                "describe": f"/services/data/v{version}/sobjects/{self.name}/describe",
                "rowTemplate": f"/services/data/v{version}/sobjects/{self.name}/{{ID}}",
            },
        }


def default_schemas() -> dict[str, ObjectSchema]:
    schemas = {}
    for sobject in KEY_PREFIXES:
        schema = ObjectSchema(sobject, _standard_fields(sobject))
        for definition in default_custom_fields():
            schema.set_custom(replace(definition))
        schemas[sobject] = schema
    return schemas
