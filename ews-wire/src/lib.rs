//! The EWS wire format shared by the emulator and Tandem's EWS connector: a small XML tree
//! reader, an escaping writer, and the ONE table of item elements in schema order.
//!
//! Both sides write and read `t:Contact`, `t:CalendarItem` and `t:Task` through
//! [`write_item`] and [`parse_item`], so element order (types.xsd `ItemType` first, then the
//! subtype's sequence) is decided in exactly one place: [`ITEM_ELEMENTS`] and the per-kind
//! tables returned by [`ItemKind::own_elements`].

use std::collections::BTreeMap;

use quick_xml::Reader;
use quick_xml::events::Event;
use serde::{Deserialize, Serialize};

/// SOAP 1.1 envelope namespace.
pub const NS_SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// EWS messages namespace (`m:`).
pub const NS_MESSAGES: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
/// EWS types namespace (`t:`).
pub const NS_TYPES: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
/// EWS SOAP fault detail namespace (`e:`).
pub const NS_ERRORS: &str = "http://schemas.microsoft.com/exchange/services/2006/errors";

// ---------------------------------------------------------------------------------------
// Reading: a namespace-agnostic element tree (local names only).
// ---------------------------------------------------------------------------------------

/// One XML element, by local name, with its attributes (local names) and children.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// The element's own character data (concatenated; whitespace kept).
    pub text: String,
}

impl Element {
    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// An attribute's value by local name.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The text of a child element, trimmed.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

    /// Walks a path of local names from this element.
    pub fn path(&self, names: &[&str]) -> Option<&Element> {
        let mut here = self;
        for name in names {
            here = here.child(name)?;
        }
        Some(here)
    }
}

/// Parses a whole XML document into its root element. Errors are human-readable.
pub fn parse_document(xml: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("malformed XML at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(start) => stack.push(element_from_start(&start)?),
            Event::Empty(start) => {
                let element = element_from_start(&start)?;
                attach(&mut stack, &mut root, element)?;
            }
            Event::End(_) => {
                let element = stack.pop().ok_or("unexpected closing tag")?;
                attach(&mut stack, &mut root, element)?;
            }
            Event::Text(text) => {
                let text = text.xml_content().map_err(|e| format!("bad text: {e}"))?;
                push_text(&mut stack, &text);
            }
            Event::CData(data) => {
                let text = data.decode().map_err(|e| format!("bad CDATA: {e}"))?;
                push_text(&mut stack, &text);
            }
            Event::GeneralRef(reference) => {
                let resolved = if reference.is_char_ref() {
                    reference
                        .resolve_char_ref()
                        .map_err(|e| format!("bad character reference: {e}"))?
                        .map(String::from)
                } else {
                    let name = reference.decode().map_err(|e| format!("bad entity: {e}"))?;
                    predefined_entity(&name).map(String::from)
                };
                let resolved = resolved.ok_or("unknown entity reference")?;
                push_text(&mut stack, &resolved);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("document ends inside an element".into());
    }
    root.ok_or_else(|| "document has no root element".into())
}

fn predefined_entity(name: &str) -> Option<&'static str> {
    match name {
        "lt" => Some("<"),
        "gt" => Some(">"),
        "amp" => Some("&"),
        "apos" => Some("'"),
        "quot" => Some("\""),
        _ => None,
    }
}

fn element_from_start(start: &quick_xml::events::BytesStart<'_>) -> Result<Element, String> {
    let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("bad attribute on <{name}>: {e}"))?;
        let key = attr.key;
        if key.as_ref() == b"xmlns" || key.prefix().is_some_and(|p| p.as_ref() == b"xmlns") {
            continue;
        }
        let value = attr
            .unescape_value()
            .map_err(|e| format!("bad attribute value on <{name}>: {e}"))?;
        attrs.push((
            String::from_utf8_lossy(key.local_name().as_ref()).into_owned(),
            value.into_owned(),
        ));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

fn attach(
    stack: &mut [Element],
    root: &mut Option<Element>,
    element: Element,
) -> Result<(), String> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None if root.is_none() => *root = Some(element),
        None => return Err("more than one root element".into()),
    }
    Ok(())
}

fn push_text(stack: &mut [Element], text: &str) {
    if let Some(top) = stack.last_mut() {
        top.text.push_str(text);
    }
}

// ---------------------------------------------------------------------------------------
// Writing: a string builder that escapes everything it is given.
// ---------------------------------------------------------------------------------------

/// Builds XML text; element names are trusted constants, text and attribute values are escaped.
#[derive(Debug, Default)]
pub struct XmlOut {
    buf: String,
}

impl XmlOut {
    pub fn new() -> Self {
        Self {
            buf: String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>"),
        }
    }

    /// `<name a="v"...>`
    pub fn open(&mut self, name: &str, attrs: &[(&str, &str)]) -> &mut Self {
        self.start_tag(name, attrs);
        self.buf.push('>');
        self
    }

    /// `</name>`
    pub fn close(&mut self, name: &str) -> &mut Self {
        self.buf.push_str("</");
        self.buf.push_str(name);
        self.buf.push('>');
        self
    }

    /// `<name a="v"/>`
    pub fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) -> &mut Self {
        self.start_tag(name, attrs);
        self.buf.push_str("/>");
        self
    }

    /// `<name a="v">text</name>`
    pub fn text_element(&mut self, name: &str, attrs: &[(&str, &str)], text: &str) -> &mut Self {
        self.open(name, attrs);
        self.buf.push_str(&escape(text, false));
        self.close(name)
    }

    pub fn finish(self) -> String {
        self.buf
    }

    /// Appends markup produced by another [`XmlOut`] (its XML declaration is dropped).
    pub fn raw(&mut self, markup: &str) -> &mut Self {
        let markup = match markup.strip_prefix("<?xml") {
            Some(rest) => rest.split_once("?>").map_or("", |(_, body)| body),
            None => markup,
        };
        self.buf.push_str(markup);
        self
    }

    fn start_tag(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.buf.push('<');
        self.buf.push_str(name);
        for (key, value) in attrs {
            self.buf.push(' ');
            self.buf.push_str(key);
            self.buf.push_str("=\"");
            self.buf.push_str(&escape(value, true));
            self.buf.push('"');
        }
    }
}

/// Escapes markup characters and drops characters XML 1.0 cannot carry. In attributes,
/// whitespace control characters are written as character references so they survive
/// attribute-value normalisation.
pub fn escape(text: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' | '\t' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Schema tables: the supported item elements, in types.xsd order.
// ---------------------------------------------------------------------------------------

/// How an element's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Text,
    DateTime,
    Boolean,
    Double,
    Integer,
    /// `t:ArrayOfStringsType` (`<t:String>` children).
    Strings,
    /// `t:BodyType` (`BodyType="Text"`).
    Body,
    /// `t:Entry Key=…` dictionaries of plain text, keyed by one of the listed keys.
    Dictionary(&'static [&'static str]),
    /// `t:PhysicalAddresses`: entries keyed Business/Home/Other with part children.
    Addresses,
    /// A structured element (attendees, recurrence, time zones) kept as its XML markup, so
    /// clients like exchangelib get back what they sent, or an element the server computes
    /// (`CalendarItemType`, the occurrence lists of a recurring master). Tandem's connector
    /// neither sends these nor maps them, except the calendar ones it reads itself.
    Raw,
}

/// One supported element of an item: its name, its `FieldURI` and how its value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementSpec {
    pub element: &'static str,
    /// Unindexed `FieldURI` (plain elements) or the indexed `FieldURI` base (dictionaries).
    pub uri: &'static str,
    pub kind: ValueKind,
}

const fn spec(element: &'static str, uri: &'static str, kind: ValueKind) -> ElementSpec {
    ElementSpec { element, uri, kind }
}

/// `EmailAddresses/Entry@Key` values (types.xsd `EmailAddressKeyType`).
pub const EMAIL_KEYS: &[&str] = &["EmailAddress1", "EmailAddress2", "EmailAddress3"];
/// `PhoneNumbers/Entry@Key` values (types.xsd `PhoneNumberKeyType`), in schema order.
pub const PHONE_KEYS: &[&str] = &[
    "AssistantPhone",
    "BusinessFax",
    "BusinessPhone",
    "BusinessPhone2",
    "Callback",
    "CarPhone",
    "CompanyMainPhone",
    "HomeFax",
    "HomePhone",
    "HomePhone2",
    "Isdn",
    "MobilePhone",
    "OtherFax",
    "OtherTelephone",
    "Pager",
    "PrimaryPhone",
    "RadioPhone",
    "Telex",
    "TtyTddPhone",
    "BusinessMobile",
    "IPPhone",
    "Mms",
    "Msn",
];
/// `ImAddresses/Entry@Key` values.
pub const IM_KEYS: &[&str] = &["ImAddress1", "ImAddress2", "ImAddress3"];
/// `PhysicalAddresses/Entry@Key` values.
pub const ADDRESS_KEYS: &[&str] = &["Business", "Home", "Other"];
/// Children of a physical address entry, in schema order.
pub const ADDRESS_PARTS: &[&str] = &["Street", "City", "State", "CountryOrRegion", "PostalCode"];

/// The supported `t:ItemType` elements, in schema order. `ExtendedProperty` follows them.
pub const ITEM_ELEMENTS: &[ElementSpec] = &[
    spec("Subject", "item:Subject", ValueKind::Text),
    spec("Sensitivity", "item:Sensitivity", ValueKind::Text),
    spec("Body", "item:Body", ValueKind::Body),
    spec("Categories", "item:Categories", ValueKind::Strings),
    spec("Importance", "item:Importance", ValueKind::Text),
    spec("ReminderIsSet", "item:ReminderIsSet", ValueKind::Boolean),
    spec(
        "ReminderMinutesBeforeStart",
        "item:ReminderMinutesBeforeStart",
        ValueKind::Integer,
    ),
];

/// The supported `t:ContactItemType` elements, in schema order.
pub const CONTACT_ELEMENTS: &[ElementSpec] = &[
    spec("FileAs", "contacts:FileAs", ValueKind::Text),
    spec("DisplayName", "contacts:DisplayName", ValueKind::Text),
    spec("GivenName", "contacts:GivenName", ValueKind::Text),
    spec("Initials", "contacts:Initials", ValueKind::Text),
    spec("MiddleName", "contacts:MiddleName", ValueKind::Text),
    spec("Nickname", "contacts:Nickname", ValueKind::Text),
    spec("CompanyName", "contacts:CompanyName", ValueKind::Text),
    spec(
        "EmailAddresses",
        "contacts:EmailAddress",
        ValueKind::Dictionary(EMAIL_KEYS),
    ),
    spec(
        "PhysicalAddresses",
        "contacts:PhysicalAddress",
        ValueKind::Addresses,
    ),
    spec(
        "PhoneNumbers",
        "contacts:PhoneNumber",
        ValueKind::Dictionary(PHONE_KEYS),
    ),
    spec("AssistantName", "contacts:AssistantName", ValueKind::Text),
    spec("Birthday", "contacts:Birthday", ValueKind::DateTime),
    spec(
        "BusinessHomePage",
        "contacts:BusinessHomePage",
        ValueKind::Text,
    ),
    spec("Department", "contacts:Department", ValueKind::Text),
    spec("Generation", "contacts:Generation", ValueKind::Text),
    spec(
        "ImAddresses",
        "contacts:ImAddress",
        ValueKind::Dictionary(IM_KEYS),
    ),
    spec("JobTitle", "contacts:JobTitle", ValueKind::Text),
    spec("Manager", "contacts:Manager", ValueKind::Text),
    spec("OfficeLocation", "contacts:OfficeLocation", ValueKind::Text),
    spec(
        "PostalAddressIndex",
        "contacts:PostalAddressIndex",
        ValueKind::Text,
    ),
    spec("Profession", "contacts:Profession", ValueKind::Text),
    spec("SpouseName", "contacts:SpouseName", ValueKind::Text),
    spec("Surname", "contacts:Surname", ValueKind::Text),
];

/// The supported `t:CalendarItemType` elements, in schema order.
pub const CALENDAR_ELEMENTS: &[ElementSpec] = &[
    spec("UID", "calendar:UID", ValueKind::Text),
    spec("Start", "calendar:Start", ValueKind::DateTime),
    spec("End", "calendar:End", ValueKind::DateTime),
    // Read-only: what an occurrence was originally scheduled for.
    spec(
        "OriginalStart",
        "calendar:OriginalStart",
        ValueKind::DateTime,
    ),
    spec(
        "IsAllDayEvent",
        "calendar:IsAllDayEvent",
        ValueKind::Boolean,
    ),
    spec(
        "LegacyFreeBusyStatus",
        "calendar:LegacyFreeBusyStatus",
        ValueKind::Text,
    ),
    spec("Location", "calendar:Location", ValueKind::Text),
    // Read-only: Single, Occurrence, Exception or RecurringMaster. Kept as markup like the
    // other computed elements, so the connector's field mapping passes over it.
    spec(
        "CalendarItemType",
        "calendar:CalendarItemType",
        ValueKind::Raw,
    ),
    spec("Organizer", "calendar:Organizer", ValueKind::Raw),
    spec(
        "RequiredAttendees",
        "calendar:RequiredAttendees",
        ValueKind::Raw,
    ),
    spec(
        "OptionalAttendees",
        "calendar:OptionalAttendees",
        ValueKind::Raw,
    ),
    spec("Resources", "calendar:Resources", ValueKind::Raw),
    spec("Recurrence", "calendar:Recurrence", ValueKind::Raw),
    // Read-only, on recurring masters: their first, last, modified and deleted occurrences.
    spec(
        "FirstOccurrence",
        "calendar:FirstOccurrence",
        ValueKind::Raw,
    ),
    spec("LastOccurrence", "calendar:LastOccurrence", ValueKind::Raw),
    spec(
        "ModifiedOccurrences",
        "calendar:ModifiedOccurrences",
        ValueKind::Raw,
    ),
    spec(
        "DeletedOccurrences",
        "calendar:DeletedOccurrences",
        ValueKind::Raw,
    ),
    spec("StartTimeZone", "calendar:StartTimeZone", ValueKind::Raw),
    spec("EndTimeZone", "calendar:EndTimeZone", ValueKind::Raw),
];

/// Calendar elements the server computes; requests may not write them.
pub const CALENDAR_READ_ONLY: &[&str] = &[
    "OriginalStart",
    "CalendarItemType",
    "FirstOccurrence",
    "LastOccurrence",
    "ModifiedOccurrences",
    "DeletedOccurrences",
];

/// The supported `t:TaskType` elements, in schema order.
pub const TASK_ELEMENTS: &[ElementSpec] = &[
    spec(
        "BillingInformation",
        "task:BillingInformation",
        ValueKind::Text,
    ),
    spec("CompleteDate", "task:CompleteDate", ValueKind::DateTime),
    spec("DueDate", "task:DueDate", ValueKind::DateTime),
    spec("Mileage", "task:Mileage", ValueKind::Text),
    spec("PercentComplete", "task:PercentComplete", ValueKind::Double),
    spec("Recurrence", "task:Recurrence", ValueKind::Raw),
    spec("StartDate", "task:StartDate", ValueKind::DateTime),
    spec("Status", "task:Status", ValueKind::Text),
];

/// The item types Tandem handles, one per distinguished folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ItemKind {
    Contact,
    CalendarItem,
    Task,
}

impl ItemKind {
    pub const ALL: [ItemKind; 3] = [ItemKind::Contact, ItemKind::CalendarItem, ItemKind::Task];

    /// The `t:` element name of the item.
    pub fn element(self) -> &'static str {
        match self {
            ItemKind::Contact => "Contact",
            ItemKind::CalendarItem => "CalendarItem",
            ItemKind::Task => "Task",
        }
    }

    /// The `DistinguishedFolderId Id` of the folder holding this kind.
    pub fn folder_id(self) -> &'static str {
        match self {
            ItemKind::Contact => "contacts",
            ItemKind::CalendarItem => "calendar",
            ItemKind::Task => "tasks",
        }
    }

    pub fn from_element(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.element() == name)
    }

    pub fn from_folder_id(id: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.folder_id().eq_ignore_ascii_case(id))
    }

    /// The subtype's own supported elements (after the `ItemType` ones).
    pub fn own_elements(self) -> &'static [ElementSpec] {
        match self {
            ItemKind::Contact => CONTACT_ELEMENTS,
            ItemKind::CalendarItem => CALENDAR_ELEMENTS,
            ItemKind::Task => TASK_ELEMENTS,
        }
    }

    /// Every supported element of this kind, in wire order (without `ExtendedProperty`).
    pub fn all_elements(self) -> impl Iterator<Item = &'static ElementSpec> {
        ITEM_ELEMENTS.iter().chain(self.own_elements())
    }
}

/// Where a flat field name (`GivenName`, `EmailAddress1`, `BusinessCity`) lives in an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldSlot {
    /// A plain element named like the field.
    Plain(&'static ElementSpec),
    /// A dictionary entry: the field name is the entry key.
    Entry {
        dict: &'static ElementSpec,
        key: &'static str,
    },
    /// One part of a physical address (`Business` + `City`).
    AddressPart {
        dict: &'static ElementSpec,
        key: &'static str,
        part: &'static str,
    },
}

impl FieldSlot {
    /// The update path for this field.
    pub fn path(self) -> FieldPath {
        match self {
            FieldSlot::Plain(spec) => FieldPath::Field(spec.uri.to_owned()),
            FieldSlot::Entry { dict, key } => FieldPath::Indexed {
                uri: dict.uri.to_owned(),
                index: key.to_owned(),
            },
            FieldSlot::AddressPart { dict, key, part } => FieldPath::Indexed {
                uri: format!("{}:{part}", dict.uri),
                index: key.to_owned(),
            },
        }
    }

    /// The value kind of the field itself (entries and address parts are text).
    pub fn value_kind(self) -> ValueKind {
        match self {
            FieldSlot::Plain(spec) => spec.kind,
            _ => ValueKind::Text,
        }
    }
}

/// Finds where a flat field name lives in an item of `kind`; `None` for unknown names.
pub fn field_slot(kind: ItemKind, name: &str) -> Option<FieldSlot> {
    for spec in kind.all_elements() {
        match spec.kind {
            ValueKind::Dictionary(keys) => {
                if let Some(key) = keys.iter().find(|k| **k == name) {
                    return Some(FieldSlot::Entry { dict: spec, key });
                }
            }
            ValueKind::Addresses => {
                for key in ADDRESS_KEYS {
                    if let Some(rest) = name.strip_prefix(key)
                        && let Some(part) = ADDRESS_PARTS.iter().find(|p| **p == rest)
                    {
                        return Some(FieldSlot::AddressPart {
                            dict: spec,
                            key,
                            part,
                        });
                    }
                }
            }
            _ if spec.element == name => return Some(FieldSlot::Plain(spec)),
            _ => {}
        }
    }
    None
}

/// Finds the flat field name an update path refers to; `None` when the path is not supported.
pub fn field_for_path(kind: ItemKind, path: &FieldPath) -> Option<String> {
    match path {
        FieldPath::Field(uri) => kind
            .all_elements()
            .find(|s| {
                s.uri == uri && !matches!(s.kind, ValueKind::Dictionary(_) | ValueKind::Addresses)
            })
            .map(|s| s.element.to_owned()),
        FieldPath::Indexed { uri, index } => {
            let name = match uri.strip_prefix("contacts:PhysicalAddress:") {
                Some(part) => format!("{index}{part}"),
                None => index.clone(),
            };
            let slot = field_slot(kind, &name)?;
            (slot.path() == *path).then_some(name)
        }
        FieldPath::Extended(_) => None,
    }
}

/// A property path as used by `AdditionalProperties`, `SetItemField` and `DeleteItemField`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldPath {
    Field(String),
    Indexed { uri: String, index: String },
    Extended(ExtendedKey),
}

impl FieldPath {
    /// Reads a `t:FieldURI`, `t:IndexedFieldURI` or `t:ExtendedFieldURI` element.
    pub fn from_element(element: &Element) -> Option<Self> {
        match element.name.as_str() {
            "FieldURI" => Some(FieldPath::Field(element.attr("FieldURI")?.to_owned())),
            "IndexedFieldURI" => Some(FieldPath::Indexed {
                uri: element.attr("FieldURI")?.to_owned(),
                index: element.attr("FieldIndex")?.to_owned(),
            }),
            "ExtendedFieldURI" => ExtendedKey::from_element(element).map(FieldPath::Extended),
            _ => None,
        }
    }

    /// Writes the path element.
    pub fn write(&self, out: &mut XmlOut) {
        match self {
            FieldPath::Field(uri) => {
                out.empty("t:FieldURI", &[("FieldURI", uri)]);
            }
            FieldPath::Indexed { uri, index } => {
                out.empty(
                    "t:IndexedFieldURI",
                    &[("FieldURI", uri), ("FieldIndex", index)],
                );
            }
            FieldPath::Extended(key) => key.write(out),
        }
    }
}

/// The identity of an extended MAPI property (`t:ExtendedFieldURI` attributes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExtendedKey {
    pub distinguished_property_set_id: Option<String>,
    pub property_set_id: Option<String>,
    pub property_tag: Option<String>,
    pub property_name: Option<String>,
    pub property_id: Option<String>,
    pub property_type: String,
}

impl ExtendedKey {
    /// A named string property in the `PublicStrings` set, like Tandem's `TandemSyncId`.
    pub fn public_string(name: &str) -> Self {
        Self {
            distinguished_property_set_id: Some("PublicStrings".into()),
            property_set_id: None,
            property_tag: None,
            property_name: Some(name.into()),
            property_id: None,
            property_type: "String".into(),
        }
    }

    pub fn from_element(element: &Element) -> Option<Self> {
        let get = |name: &str| element.attr(name).map(str::to_owned);
        Some(Self {
            distinguished_property_set_id: get("DistinguishedPropertySetId"),
            property_set_id: get("PropertySetId").map(|g| g.to_ascii_lowercase()),
            property_tag: get("PropertyTag").map(|t| t.to_ascii_lowercase()),
            property_name: get("PropertyName"),
            property_id: get("PropertyId"),
            property_type: get("PropertyType")?,
        })
    }

    pub fn write(&self, out: &mut XmlOut) {
        let mut attrs: Vec<(&str, &str)> = Vec::new();
        let pairs = [
            (
                "DistinguishedPropertySetId",
                &self.distinguished_property_set_id,
            ),
            ("PropertySetId", &self.property_set_id),
            ("PropertyTag", &self.property_tag),
            ("PropertyName", &self.property_name),
            ("PropertyId", &self.property_id),
        ];
        for (name, value) in &pairs {
            if let Some(value) = value {
                attrs.push((name, value));
            }
        }
        attrs.push(("PropertyType", &self.property_type));
        out.empty("t:ExtendedFieldURI", &attrs);
    }
}

// ---------------------------------------------------------------------------------------
// Items on the wire.
// ---------------------------------------------------------------------------------------

/// A field value as text on the wire: one string, or a string list (`Categories`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireValue {
    Text(String),
    List(Vec<String>),
}

/// An item as it travels: id, flat fields (see [`field_slot`]) and extended properties.
#[derive(Debug, Clone, PartialEq)]
pub struct WireItem {
    pub kind: ItemKind,
    /// `(Id, ChangeKey)`.
    pub id: Option<(String, String)>,
    pub fields: BTreeMap<String, WireValue>,
    pub extended: Vec<(ExtendedKey, String)>,
}

impl WireItem {
    pub fn new(kind: ItemKind) -> Self {
        Self {
            kind,
            id: None,
            fields: BTreeMap::new(),
            extended: Vec::new(),
        }
    }
}

/// Writes `<t:{Kind}>` with the id, the fields in schema order and the extended properties.
/// Fields not in the tables are not written (callers check names with [`field_slot`] first).
pub fn write_item(out: &mut XmlOut, item: &WireItem) {
    let tag = format!("t:{}", item.kind.element());
    out.open(&tag, &[]);
    if let Some((id, change_key)) = &item.id {
        out.empty("t:ItemId", &[("Id", id), ("ChangeKey", change_key)]);
    }
    for spec in ITEM_ELEMENTS {
        write_element(out, spec, &item.fields);
    }
    for (key, value) in &item.extended {
        out.open("t:ExtendedProperty", &[]);
        key.write(out);
        out.text_element("t:Value", &[], value);
        out.close("t:ExtendedProperty");
    }
    for spec in item.kind.own_elements() {
        write_element(out, spec, &item.fields);
    }
    out.close(&tag);
}

fn text_of(value: &WireValue) -> String {
    match value {
        WireValue::Text(text) => text.clone(),
        WireValue::List(items) => items.join(", "),
    }
}

fn write_element(out: &mut XmlOut, spec: &ElementSpec, fields: &BTreeMap<String, WireValue>) {
    let tag = format!("t:{}", spec.element);
    match spec.kind {
        ValueKind::Dictionary(keys) => {
            let present: Vec<(&str, String)> = keys
                .iter()
                .filter_map(|k| fields.get(*k).map(|v| (*k, text_of(v))))
                .collect();
            if present.is_empty() {
                return;
            }
            out.open(&tag, &[]);
            for (key, value) in present {
                out.text_element("t:Entry", &[("Key", key)], &value);
            }
            out.close(&tag);
        }
        ValueKind::Addresses => {
            let entries: Vec<(&str, Vec<(&str, String)>)> = ADDRESS_KEYS
                .iter()
                .map(|key| {
                    let parts = ADDRESS_PARTS
                        .iter()
                        .filter_map(|part| {
                            fields
                                .get(&format!("{key}{part}"))
                                .map(|v| (*part, text_of(v)))
                        })
                        .collect::<Vec<_>>();
                    (*key, parts)
                })
                .filter(|(_, parts)| !parts.is_empty())
                .collect();
            if entries.is_empty() {
                return;
            }
            out.open(&tag, &[]);
            for (key, parts) in entries {
                out.open("t:Entry", &[("Key", key)]);
                for (part, value) in parts {
                    out.text_element(&format!("t:{part}"), &[], &value);
                }
                out.close("t:Entry");
            }
            out.close(&tag);
        }
        ValueKind::Strings => {
            let Some(value) = fields.get(spec.element) else {
                return;
            };
            let items = match value {
                WireValue::List(items) => items.clone(),
                WireValue::Text(text) => vec![text.clone()],
            };
            out.open(&tag, &[]);
            for item in items {
                out.text_element("t:String", &[], &item);
            }
            out.close(&tag);
        }
        ValueKind::Body => {
            if let Some(value) = fields.get(spec.element) {
                out.text_element(&tag, &[("BodyType", "Text")], &text_of(value));
            }
        }
        ValueKind::Raw => {
            if let Some(value) = fields.get(spec.element) {
                out.raw(&text_of(value));
            }
        }
        _ => {
            if let Some(value) = fields.get(spec.element) {
                out.text_element(&tag, &[], &text_of(value));
            }
        }
    }
}

/// Writes an element read by [`parse_document`] back as markup in the types namespace (`t:`).
pub fn write_tree(out: &mut XmlOut, element: &Element) {
    let tag = format!("t:{}", element.name);
    let attrs: Vec<(&str, &str)> = element
        .attrs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if element.children.is_empty() {
        out.text_element(&tag, &attrs, &element.text);
    } else {
        out.open(&tag, &attrs);
        for child in &element.children {
            write_tree(out, child);
        }
        out.close(&tag);
    }
}

/// Reads a `t:Contact`, `t:CalendarItem` or `t:Task` element. With `strict`, unsupported
/// elements and elements out of schema order are errors (the emulator checks requests this
/// way); otherwise they are skipped (the connector reads replies this way).
pub fn parse_item(element: &Element, strict: bool) -> Result<WireItem, String> {
    let kind = ItemKind::from_element(&element.name)
        .ok_or_else(|| format!("unsupported item type <{}>", element.name))?;
    let mut item = WireItem::new(kind);
    let extended_position = ITEM_ELEMENTS.len();
    let mut last_position: Option<usize> = None;
    for child in &element.children {
        let position = match child.name.as_str() {
            "ItemId" => {
                let id = child.attr("Id").ok_or("ItemId without Id")?;
                let change_key = child.attr("ChangeKey").unwrap_or_default();
                item.id = Some((id.to_owned(), change_key.to_owned()));
                continue;
            }
            "ExtendedProperty" => {
                read_extended(child, &mut item)?;
                Some(extended_position)
            }
            name => match kind.all_elements().position(|s| s.element == name) {
                Some(index) => {
                    let index = if index >= extended_position {
                        index + 1
                    } else {
                        index
                    };
                    let spec = kind
                        .all_elements()
                        .find(|s| s.element == name)
                        .ok_or("unreachable")?;
                    read_element(child, spec, &mut item.fields, strict)?;
                    Some(index)
                }
                None if strict => {
                    return Err(format!(
                        "element <t:{name}> is not supported in <t:{}>",
                        kind.element()
                    ));
                }
                None => None,
            },
        };
        if let Some(position) = position {
            if strict
                && last_position.is_some_and(|last| {
                    position < last || (position == last && position != extended_position)
                })
            {
                return Err(format!(
                    "element <t:{}> is out of schema order in <t:{}>",
                    child.name,
                    kind.element()
                ));
            }
            last_position = Some(position);
        }
    }
    Ok(item)
}

fn read_extended(child: &Element, item: &mut WireItem) -> Result<(), String> {
    let key = child
        .child("ExtendedFieldURI")
        .and_then(ExtendedKey::from_element)
        .ok_or("ExtendedProperty without a valid ExtendedFieldURI")?;
    let value = match (child.child("Value"), child.child("Values")) {
        (Some(value), _) => value.text.clone(),
        (None, Some(values)) => values
            .children_named("Value")
            .map(|v| v.text.clone())
            .collect::<Vec<_>>()
            .join("\n"),
        (None, None) => return Err("ExtendedProperty without Value".into()),
    };
    item.extended.retain(|(k, _)| *k != key);
    item.extended.push((key, value));
    Ok(())
}

fn read_element(
    child: &Element,
    spec: &ElementSpec,
    fields: &mut BTreeMap<String, WireValue>,
    strict: bool,
) -> Result<(), String> {
    match spec.kind {
        ValueKind::Dictionary(keys) => {
            for entry in child.children_named("Entry") {
                let key = entry.attr("Key").ok_or("dictionary Entry without Key")?;
                match keys.iter().find(|k| **k == key) {
                    Some(key) => {
                        fields.insert((*key).to_owned(), WireValue::Text(entry.text.clone()));
                    }
                    None if strict => return Err(format!("unknown {} key {key}", spec.element)),
                    None => {}
                }
            }
        }
        ValueKind::Addresses => {
            for entry in child.children_named("Entry") {
                let key = entry.attr("Key").ok_or("address Entry without Key")?;
                if !ADDRESS_KEYS.contains(&key) {
                    if strict {
                        return Err(format!("unknown PhysicalAddresses key {key}"));
                    }
                    continue;
                }
                for part in &entry.children {
                    if ADDRESS_PARTS.contains(&part.name.as_str()) {
                        fields.insert(
                            format!("{key}{}", part.name),
                            WireValue::Text(part.text.clone()),
                        );
                    }
                }
            }
        }
        ValueKind::Raw => {
            let mut out = XmlOut::default();
            write_tree(&mut out, child);
            fields.insert(spec.element.to_owned(), WireValue::Text(out.finish()));
        }
        ValueKind::Strings => {
            let items = child
                .children_named("String")
                .map(|s| s.text.clone())
                .collect();
            fields.insert(spec.element.to_owned(), WireValue::List(items));
        }
        _ => {
            fields.insert(spec.element.to_owned(), WireValue::Text(child.text.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn field_slots_cover_plain_indexed_and_address_names() {
        assert!(matches!(
            field_slot(ItemKind::Contact, "GivenName"),
            Some(FieldSlot::Plain(_))
        ));
        assert!(matches!(
            field_slot(ItemKind::Contact, "MobilePhone"),
            Some(FieldSlot::Entry { .. })
        ));
        let city = field_slot(ItemKind::Contact, "BusinessCity");
        assert!(matches!(
            city,
            Some(FieldSlot::AddressPart {
                key: "Business",
                part: "City",
                ..
            })
        ));
        assert_eq!(
            city.map(FieldSlot::path),
            Some(FieldPath::Indexed {
                uri: "contacts:PhysicalAddress:City".into(),
                index: "Business".into()
            })
        );
        assert_eq!(field_slot(ItemKind::Contact, "Start"), None);
        assert_eq!(field_slot(ItemKind::Contact, "EmailAddresses"), None);
        assert!(field_slot(ItemKind::Task, "Subject").is_some());
        let path = FieldPath::Indexed {
            uri: "contacts:PhysicalAddress:City".into(),
            index: "Home".into(),
        };
        assert_eq!(
            field_for_path(ItemKind::Contact, &path).as_deref(),
            Some("HomeCity")
        );
    }

    #[test]
    fn items_round_trip_in_schema_order_with_escaping() {
        let mut item = WireItem::new(ItemKind::Contact);
        item.fields
            .insert("Surname".into(), WireValue::Text("O'Neil & <Sons>".into()));
        item.fields
            .insert("GivenName".into(), WireValue::Text("Ann".into()));
        item.fields
            .insert("BusinessPhone".into(), WireValue::Text("+1 555".into()));
        item.fields
            .insert("HomeCity".into(), WireValue::Text("Oslo".into()));
        item.fields.insert(
            "Categories".into(),
            WireValue::List(vec!["A".into(), "B".into()]),
        );
        item.extended
            .push((ExtendedKey::public_string("TandemSyncId"), "s-1".into()));
        let mut out = XmlOut::default();
        write_item(&mut out, &item);
        let xml = out.finish();
        let given = xml.find("GivenName").unwrap_or(usize::MAX);
        let surname = xml.find("Surname").unwrap_or(0);
        assert!(given < surname, "{xml}");
        assert!(xml.contains("O'Neil &amp; &lt;Sons&gt;"), "{xml}");
        let parsed = parse_item(&parse_document(&xml).unwrap(), true).unwrap();
        assert_eq!(parsed, item);
    }

    #[test]
    fn strict_parse_rejects_wrong_order_and_unknown_elements() {
        let wrong = "<Contact><Surname>a</Surname><GivenName>b</GivenName></Contact>";
        assert!(parse_item(&parse_document(wrong).unwrap(), true).is_err());
        assert!(parse_item(&parse_document(wrong).unwrap(), false).is_ok());
        let unknown = "<Contact><Bogus>a</Bogus></Contact>";
        assert!(parse_item(&parse_document(unknown).unwrap(), true).is_err());
    }

    #[test]
    fn parser_resolves_entities_and_rejects_garbage() {
        let doc = parse_document("<a x=\"1&amp;2\">x &lt; y &#65;<![CDATA[<z>]]></a>").unwrap();
        assert_eq!(doc.text, "x < y A<z>");
        assert_eq!(doc.attr("x"), Some("1&2"));
        assert!(parse_document("<a><b></a>").is_err());
        assert!(parse_document("not xml").is_err());
    }
}
