"""Which field the opt-out lives in, decided from describe results (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from unsubscribe_sync.api.constants import EMAIL_OPT_OUT_FIELD, MARKETO_LABELS
from unsubscribe_sync.api.spec import OptOutTarget

FLS_NOTE = "a field hidden from the integration user by field-level security looks exactly like a missing one"


@dataclass(frozen=True)
class ObjectFieldStatus:
    """The opt-out field on one object: its API name when usable, else the problem."""

    object: str
    field: str | None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class FieldReport:
    """The opt-out field on every configured object; ``field`` is set only when it is usable everywhere."""

    target: OptOutTarget
    objects: dict[str, ObjectFieldStatus] = field(default_factory=dict)
    problem: str | None = None  # a problem across objects (e.g. different API names)

    @property
    def field(self) -> str | None:
        if not self.ok:
            return None
        names = {s.field for s in self.objects.values()}
        return names.pop() if len(names) == 1 else None

    @property
    def ok(self) -> bool:
        return self.problem is None and bool(self.objects) and all(s.ok for s in self.objects.values())

    def problems(self) -> list[str]:
        out = [f"{s.object}: {s.problem}" for s in self.objects.values() if s.problem]
        if self.problem:
            out.append(self.problem)
        return out


def _usable_problem(object_name: str, f: Mapping[str, Any]) -> str | None:
    name = f.get("name")
    if f.get("type") != "boolean":
        return f"field {name} on {object_name} is of type {f.get('type')!r}, not boolean"
    if not f.get("updateable"):
        return f"field {name} on {object_name} is not updateable by the integration user"
    return None


def _by_name(object_name: str, describe: Mapping[str, Any], api_name: str) -> ObjectFieldStatus:
    for f in describe.get("fields") or []:
        if str(f.get("name", "")).lower() == api_name.lower():
            problem = _usable_problem(object_name, f)
            return ObjectFieldStatus(object_name, str(f["name"]), problem)
    return ObjectFieldStatus(object_name, None, f"field {api_name} not found on {object_name} ({FLS_NOTE})")


def _by_label(object_name: str, describe: Mapping[str, Any]) -> ObjectFieldStatus:
    wanted = {label.casefold() for label in MARKETO_LABELS}
    labelled = [
        f
        for f in describe.get("fields") or []
        if f.get("custom") and str(f.get("label", "")).strip().casefold() in wanted
    ]
    labels = " or ".join(repr(label) for label in MARKETO_LABELS)
    if not labelled:
        return ObjectFieldStatus(
            object_name,
            None,
            f"no custom field labelled {labels} on {object_name}: the package is not installed there, or the field is "
            f"hidden ({FLS_NOTE}); set optOut.marketoSalesOptOutField to its API name if it is labelled otherwise",
        )
    usable = [f for f in labelled if _usable_problem(object_name, f) is None]
    if len(usable) == 1:
        return ObjectFieldStatus(object_name, str(usable[0]["name"]))
    if len(usable) > 1:
        names = ", ".join(sorted(str(f["name"]) for f in usable))
        return ObjectFieldStatus(
            object_name,
            None,
            f"several custom fields labelled {labels} on {object_name} ({names}); "
            "set optOut.marketoSalesOptOutField to the one to use",
        )
    problem = _usable_problem(object_name, labelled[0])
    return ObjectFieldStatus(object_name, str(labelled[0]["name"]), problem)


def evaluate_fields(
    target: OptOutTarget | str,
    marketo_field: str | None,
    describes: Mapping[str, Mapping[str, Any] | None],
    objects: Sequence[str],
) -> FieldReport:
    """Check the opt-out field on each of ``objects`` from their describe results (None = object not found)."""
    target = OptOutTarget(target)
    statuses: dict[str, ObjectFieldStatus] = {}
    for object_name in objects:
        describe = describes.get(object_name)
        if describe is None:
            statuses[object_name] = ObjectFieldStatus(
                object_name, None, f"object {object_name} not found or not visible to the integration user"
            )
        elif target is OptOutTarget.EMAIL_OPT_OUT:
            statuses[object_name] = _by_name(object_name, describe, EMAIL_OPT_OUT_FIELD)
        elif marketo_field:
            statuses[object_name] = _by_name(object_name, describe, marketo_field)
        else:
            statuses[object_name] = _by_label(object_name, describe)
    problem = None
    names = {s.object: s.field for s in statuses.values() if s.ok}
    if len(set(names.values())) > 1:
        listed = ", ".join(f"{o}: {n}" for o, n in names.items())
        problem = (
            f"the Marketo Sales Opt Out field has different API names on different objects ({listed}); "
            "one field name must serve every configured object"
        )
    return FieldReport(target=target, objects=statuses, problem=problem)
