"""Tandem's business-contact mapping written in Python: a worked example of a plugin in a
language other than Rust, built into a WebAssembly component with componentize-py.

It is built against the frozen WIT 0.1.0 (wit/since_v0.1.0: one typed record per call),
which the host keeps loading. It is the same mapping as plugins/contact-mapping/src/lib.rs (the built-in default), so the
CI test (tests/plugins/python.rs) can check it record by record against the Rust one:

- Siebel -> Exchange: every pair in FIELD_PAIRS is always present in the output, null when
  the source lacks it or has it blank, so clearing a field on one side clears it on the
  other; plus Categories = [the `category` setting, default "Siebel Contact"] and
  FileAs = "Last, First" (or whichever of the two is present; null when neither is).
- Exchange -> Siebel: the inverse over FIELD_PAIRS; Categories, FileAs and any other
  Exchange field are ignored.
- A call for another domain than "contacts" is refused with a plugin error (the host then
  quarantines that record; nothing is deleted).

Build (from this folder):
    componentize-py -d ../../wit/since_v0.1.0 -w mapper componentize app -o mapping.wasm
"""

from typing import Dict, List, Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    Context,
    Field,
    PluginError_Other,
    Scalar_Text,
    Value,
    Value_List,
    Value_Null,
    Value_Text,
)

# The category SSSE puts on contacts it wrote to Exchange; the `category` setting overrides it.
DEFAULT_CATEGORY = "Siebel Contact"

# The only sync domain this mapping serves (the manifest says so too).
DOMAIN = "contacts"

# Siebel field <-> Exchange field (EWS element names, indexed entries flattened by key).
FIELD_PAIRS = [
    ("First Name", "GivenName"),
    ("Last Name", "Surname"),
    ("Middle Name", "MiddleName"),
    ("Email Address", "EmailAddress1"),
    ("Work Phone #", "BusinessPhone"),
    ("Cellular Phone #", "MobilePhone"),
    ("Home Phone #", "HomePhone"),
    ("Fax Phone #", "BusinessFax"),
    ("Job Title", "JobTitle"),
    ("Assistant", "AssistantName"),
    ("Assistant Phone #", "AssistantPhone"),
    ("Primary Account Name", "CompanyName"),
]


def check_domain(ctx: Context) -> None:
    """Refuses a call for another domain: raising Err(...) returns the WIT plugin-error."""
    if ctx.domain != DOMAIN:
        raise Err(PluginError_Other(f"this mapping serves the {DOMAIN} domain, not {ctx.domain}"))


def by_name(fields: List[Field]) -> Dict[str, Value]:
    """The record as a dict; a name that appears twice keeps its last value (as in the Rust SDK)."""
    return {field.name: field.value for field in fields}


def present(values: Dict[str, Value], name: str) -> Value:
    """The value of `name`; null when absent, null or empty text (blank means "clear")."""
    value = values.get(name)
    if value is None or isinstance(value, Value_Null):
        return Value_Null()
    if isinstance(value, Value_Text) and value.value == "":
        return Value_Null()
    return value


def text(values: Dict[str, Value], name: str) -> Optional[str]:
    """The text of `name` when it is non-empty text, else None."""
    value = values.get(name)
    if isinstance(value, Value_Text) and value.value != "":
        return value.value
    return None


def file_as(last: Optional[str], first: Optional[str]) -> Value:
    """Exchange's FileAs: "Last, First", or whichever of the two is present, or null."""
    if last is not None and first is not None:
        return Value_Text(f"{last}, {first}")
    if last is not None:
        return Value_Text(last)
    if first is not None:
        return Value_Text(first)
    return Value_Null()


class Mapping(exports.Mapping):
    """The `mapping` export of the `mapper` world (componentize-py finds it by this name)."""

    def to_exchange(self, ctx: Context, siebel: List[Field]) -> List[Field]:
        check_domain(ctx)
        values = by_name(siebel)
        out = [Field(exchange_name, present(values, siebel_name)) for siebel_name, exchange_name in FIELD_PAIRS]
        category = host.config("category") or DEFAULT_CATEGORY
        out.append(Field("Categories", Value_List([Scalar_Text(category)])))
        out.append(Field("FileAs", file_as(text(values, "Last Name"), text(values, "First Name"))))
        return out

    def to_siebel(self, ctx: Context, exchange: List[Field]) -> List[Field]:
        check_domain(ctx)
        values = by_name(exchange)
        return [Field(siebel_name, present(values, exchange_name)) for siebel_name, exchange_name in FIELD_PAIRS]
