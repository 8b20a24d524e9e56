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


SOAP_TYPES = {
    "id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "datetime": "xsd:dateTime", "date": "xsd:date",
}  # fmt: skip
STAMP_FIELDS = ("CreatedDate", "LastModifiedDate", "SystemModstamp")  # set by the org's clock, never by the API
USER_ID = "005Rx0000000001AAA"  # the org's one user: owner, creator and last modifier of every record
MASTER_RECORD_TYPE = "012000000000000AAA"


@dataclass(frozen=True)
class FieldDef:
    name: str
    label: str
    type: str  # id | string | email | boolean | picklist | reference | datetime | date
    updateable: bool = True
    custom: bool = False
    hidden: bool = False  # field-level security hides it from the integration user
    length: int = 0
    default: Any = None
    reference_to: tuple[str, ...] = ()
    relationship: str | None = None
    name_field: bool = False  # the record's name (Contact/Lead Name: FirstName + LastName, read-only)
    nillable: bool = True

    @property
    def visible(self) -> bool:
        return not self.hidden

    def describe(self) -> dict[str, Any]:
        """Every key a real field describe carries (the values a standard field of this type has)."""
        boolean = self.type == "boolean"
        textual = self.type in ("string", "email", "picklist")
        return {
            "aggregatable": not boolean,
            "aiPredictionField": False,
            "autoNumber": False,
            "byteLength": self.length * 3 if textual or self.type in ("id", "reference") else 0,
            "calculated": False,
            "calculatedFormula": None,
            "cascadeDelete": False,
            "caseSensitive": False,
            "compoundFieldName": "Name" if self.name in ("FirstName", "LastName") else None,
            "controllerName": None,
            "createable": self.updateable,
            "custom": self.custom,
            "defaultValue": False if boolean else None,
            "defaultValueFormula": None,
            "defaultedOnCreate": boolean or self.name in ("OwnerId", *STAMP_FIELDS, "CreatedById", "LastModifiedById"),
            "dependentPicklist": False,
            "deprecatedAndHidden": False,
            "digits": 0,
            "displayLocationInDecimal": False,
            "encrypted": False,
            "externalId": False,
            "extraTypeInfo": "personname" if self.name_field else None,
            "filterable": True,
            "filteredLookupInfo": None,
            "formulaTreatNullNumberAsZero": False,
            "groupable": self.type not in ("datetime",),
            "highScaleNumber": False,
            "htmlFormatted": False,
            "idLookup": self.name in ("Id", "Email"),
            "inlineHelpText": None,
            "label": self.label,
            "length": self.length,
            "mask": None,
            "maskType": None,
            "name": self.name,
            "nameField": self.name_field,
            "namePointing": False,
            "nillable": self.nillable and not boolean,
            "permissionable": (self.updateable and self.custom) or self.name in ("Email", "HasOptedOutOfEmail"),
            "picklistValues": [],
            "polymorphicForeignKey": self.name == "OwnerId",
            "precision": 0,
            "queryByDistance": False,
            "referenceTargetField": None,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship,
            "relationshipOrder": None,
            "restrictedDelete": False,
            "restrictedPicklist": False,
            "scale": 0,
            "searchPrefilterable": self.type == "reference",
            "soapType": SOAP_TYPES.get(self.type, "xsd:string"),
            "sortable": True,
            "type": self.type,
            "unique": False,
            "updateable": self.updateable,
            "writeRequiresMasterRead": False,
        }


def _standard_fields(sobject: str) -> list[FieldDef]:
    user = ("User",)
    fields = [
        FieldDef("Id", f"{LABELS[sobject][0]} ID", "id", updateable=False, length=18, nillable=False),
        FieldDef("IsDeleted", "Deleted", "boolean", updateable=False, default=False),
        FieldDef("FirstName", "First Name", "string", length=40, default=None),
        FieldDef("LastName", "Last Name", "string", length=80, default="", nillable=False),
        FieldDef("Name", "Full Name", "string", updateable=False, length=121, name_field=True, nillable=False),
        FieldDef("Email", "Email", "email", length=80, default=None),
        FieldDef("HasOptedOutOfEmail", "Email Opt Out", "boolean", default=False),
        FieldDef("HasOptedOutOfFax", "Fax Opt Out", "boolean", default=False),
        FieldDef("DoNotCall", "Do Not Call", "boolean", default=False),
        FieldDef("OwnerId", "Owner ID", "reference", length=18, default=USER_ID, reference_to=("Group", "User"),
                 relationship="Owner", nillable=False),
        FieldDef("CreatedDate", "Created Date", "datetime", updateable=False, nillable=False),
        FieldDef("CreatedById", "Created By ID", "reference", updateable=False, length=18, default=USER_ID,
                 reference_to=user, relationship="CreatedBy", nillable=False),
        FieldDef("LastModifiedDate", "Last Modified Date", "datetime", updateable=False, nillable=False),
        FieldDef("LastModifiedById", "Last Modified By ID", "reference", updateable=False, length=18,
                 default=USER_ID, reference_to=user, relationship="LastModifiedBy", nillable=False),
        FieldDef("SystemModstamp", "System Modstamp", "datetime", updateable=False, nillable=False),
        FieldDef("LastActivityDate", "Last Activity", "date", updateable=False),
    ]  # fmt: skip
    if sobject == "Contact":
        fields.insert(4, FieldDef("AccountId", "Account ID", "reference", length=18, reference_to=("Account",),
                                  relationship="Account"))  # fmt: skip
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
    _by_name: dict[str, FieldDef] | None = field(default=None, init=False, repr=False)  # canonical name -> field
    _by_lower: dict[str, FieldDef] | None = field(default=None, init=False, repr=False)  # lower-case name -> field

    def _index(self) -> tuple[dict[str, FieldDef], dict[str, FieldDef]]:
        """Name indexes, rebuilt after a custom field changes (every write looks fields up)."""
        if self._by_name is None or self._by_lower is None:
            fields = self.all_fields()
            self._by_name = {f.name: f for f in fields}
            self._by_lower = {f.name.lower(): f for f in fields}
        return self._by_name, self._by_lower

    def field_named(self, name: str) -> FieldDef:
        """The field with this canonical API name (hidden ones too); KeyError when there is none."""
        return self._index()[0][name]

    @property
    def key_prefix(self) -> str:
        return KEY_PREFIXES[self.name]

    def all_fields(self) -> list[FieldDef]:
        return [*self.standard, *self.custom.values()]

    def visible_fields(self) -> list[FieldDef]:
        return [f for f in self.all_fields() if f.visible]

    def lookup(self, name: str) -> FieldDef | None:
        """The visible field with this API name (case-insensitive), else None: hidden looks like missing."""
        found = self._index()[1].get(name.lower())
        return found if found is not None and found.visible else None

    def set_custom(self, definition: FieldDef) -> None:
        self.custom[definition.name] = definition
        self._by_name = self._by_lower = None

    def remove_custom(self, name: str) -> None:
        self.custom.pop(name, None)
        self._by_name = self._by_lower = None

    def set_standard_hidden(self, name: str, hidden: bool) -> None:
        """Field-level security on a standard field (e.g. Email): hidden, the API sees it as missing."""
        if name not in {f.name for f in self.standard}:
            raise KeyError(f"no standard field {name!r} on {self.name}")
        self.standard = [replace(f, hidden=hidden) if f.name == name else f for f in self.standard]
        self._by_name = self._by_lower = None

    def describe_global(self, version: str) -> dict[str, Any]:
        """The describe-global entry: every key real `GET sobjects` gives each object."""
        label, plural = LABELS[self.name]
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "activateable": False,
            "associateEntityType": None,
            "associateParentEntity": None,
            "createable": True,
            "custom": False,
            "customSetting": False,
            "deepCloneable": False,
            "deletable": True,
            "deprecatedAndHidden": False,
            "feedEnabled": True,
            "hasSubtypes": False,
            "isInterface": False,
            "isSubtype": False,
            "keyPrefix": self.key_prefix,
            "label": label,
            "labelPlural": plural,
            "layoutable": True,
            "mergeable": True,
            "mruEnabled": True,
            "name": self.name,
            "queryable": True,
            "replicateable": True,
            "retrieveable": True,
            "searchable": True,
            "triggerable": True,
            "undeletable": True,
            "updateable": True,
            "urls": {
                "compactLayouts": f"{base}/describe/compactLayouts",
                "rowTemplate": f"{base}/{{ID}}",
                "approvalLayouts": f"{base}/describe/approvalLayouts",
                "describe": f"{base}/describe",
                "quickActions": f"{base}/quickActions",
                "layouts": f"{base}/describe/layouts",
                "sobject": base,
            },
        }

    def describe(self, version: str) -> dict[str, Any]:
        """The full describe: the global entry plus fields, record types, relationships and layout keys."""
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            **self.describe_global(version),
            "actionOverrides": [],
            "childRelationships": [],
            "compactLayoutable": True,
            "defaultImplementation": None,
            "extendedBy": None,
            "extendsInterfaces": None,
            "fields": [f.describe() for f in self.visible_fields()],
            "implementedBy": None,
            "implementsInterfaces": None,
            "listviewable": None,
            "lookupLayoutable": None,
            "namedLayoutInfos": [],
            "networkScopeFieldName": None,
            "recordTypeInfos": [
                {
                    "active": True,
                    "available": True,
                    "defaultRecordTypeMapping": True,
                    "developerName": "Master",
                    "master": True,
                    "name": "Master",
                    "recordTypeId": MASTER_RECORD_TYPE,
                    "urls": {"layout": f"{base}/describe/layouts/{MASTER_RECORD_TYPE}"},
                }
            ],
            "searchLayoutable": True,
            "sobjectDescribeOption": "FULL",
            "supportedScopes": [
                {"label": "All contacts" if self.name == "Contact" else "All leads", "name": "everything"},
                {"label": "My " + LABELS[self.name][1].lower(), "name": "mine"},
            ],
        }


def default_schemas() -> dict[str, ObjectSchema]:
    schemas = {}
    for sobject in KEY_PREFIXES:
        schema = ObjectSchema(sobject, _standard_fields(sobject))
        for definition in default_custom_fields():
            schema.set_custom(replace(definition))
        schemas[sobject] = schema
    return schemas
