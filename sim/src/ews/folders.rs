//! Folder operations of the EWS emulator, for clients that look folders up before using
//! them (exchangelib does): `GetFolder` on the root, the message-folder root and the
//! Contacts, Calendar and Tasks folders, by distinguished id or by the ids it hands out; and
//! `SyncFolderHierarchy`, which reports those three folders once (the emulated tree never
//! changes afterwards).

use base64::Engine as _;

use super::ops::Fault;
use super::store::Store;
use super::wire::{Element, ItemKind, XmlOut};

/// Prefix of the folder ids the emulator hands out (`AAMkFolder-contacts`, …).
const FOLDER_ID_PREFIX: &str = "AAMkFolder-";
/// Folders are never changed, so their ChangeKey is constant.
const FOLDER_CHANGE_KEY: &str = "AQAAABYAAAA=";

/// The folder id the emulator reports for a folder name (`contacts`, `root`, …).
pub(crate) fn folder_id(name: &str) -> String {
    format!("{FOLDER_ID_PREFIX}{name}")
}

/// The folder a `DistinguishedFolderId` or `FolderId` element names (its distinguished name).
pub(crate) fn folder_name(element: &Element) -> Result<String, Fault> {
    let id = element
        .attr("Id")
        .ok_or_else(|| Fault::schema(format!("{} needs an Id attribute", element.name)))?;
    Ok(match element.name.as_str() {
        "FolderId" => id.strip_prefix(FOLDER_ID_PREFIX).unwrap_or(id).to_owned(),
        _ => id.to_ascii_lowercase(),
    })
}

/// The item folder a `DistinguishedFolderId` or `FolderId` child of `parent` names.
pub(crate) fn item_folder(parent: &Element) -> Result<ItemKind, Fault> {
    let folder = parent
        .children
        .iter()
        .find(|c| c.name == "DistinguishedFolderId" || c.name == "FolderId")
        .ok_or_else(|| {
            Fault::schema(format!(
                "{} needs a DistinguishedFolderId or FolderId (contacts, calendar or tasks)",
                parent.name
            ))
        })?;
    let name = folder_name(folder)?;
    ItemKind::from_folder_id(&name).ok_or_else(|| Fault {
        code: "ErrorFolderNotFound",
        message: format!("The folder '{name}' is not emulated; use contacts, calendar or tasks."),
    })
}

/// `GetFolder`: one response message per requested folder.
pub(crate) fn get_folder(
    store: &mut Store,
    mailbox: &str,
    op: &Element,
    out: &mut XmlOut,
) -> Result<(), Fault> {
    let ids = op
        .child("FolderIds")
        .ok_or_else(|| Fault::schema("GetFolder needs FolderIds"))?;
    if ids.children.is_empty() {
        return Err(Fault::schema("FolderIds must hold at least one folder id"));
    }
    out.open("m:GetFolderResponse", &[]);
    out.open("m:ResponseMessages", &[]);
    for id in &ids.children {
        let name = folder_name(id)?;
        let kind = ItemKind::from_folder_id(&name);
        if kind.is_none() && !matches!(name.as_str(), "root" | "msgfolderroot") {
            out.open("m:GetFolderResponseMessage", &[("ResponseClass", "Error")]);
            out.text_element(
                "m:MessageText",
                &[],
                &format!("The folder '{name}' is not emulated."),
            );
            out.text_element("m:ResponseCode", &[], "ErrorFolderNotFound");
            out.text_element("m:DescriptiveLinkKey", &[], "0");
            out.close("m:GetFolderResponseMessage");
            continue;
        }
        out.open(
            "m:GetFolderResponseMessage",
            &[("ResponseClass", "Success")],
        );
        out.text_element("m:ResponseCode", &[], "NoError");
        out.open("m:Folders", &[]);
        write_folder(store, mailbox, &name, kind, false, out);
        out.close("m:Folders");
        out.close("m:GetFolderResponseMessage");
    }
    out.close("m:ResponseMessages");
    out.close("m:GetFolderResponse");
    Ok(())
}

/// Writes one folder element (`t:ContactsFolder`, `t:Folder`, …); with `id_only`, just its id.
fn write_folder(
    store: &mut Store,
    mailbox: &str,
    name: &str,
    kind: Option<ItemKind>,
    id_only: bool,
    out: &mut XmlOut,
) {
    {
        let (tag, class, display, parent) = match kind {
            Some(ItemKind::Contact) => (
                "t:ContactsFolder",
                "IPF.Contact",
                "Contacts",
                "msgfolderroot",
            ),
            Some(ItemKind::CalendarItem) => (
                "t:CalendarFolder",
                "IPF.Appointment",
                "Calendar",
                "msgfolderroot",
            ),
            Some(ItemKind::Task) => ("t:TasksFolder", "IPF.Task", "Tasks", "msgfolderroot"),
            None if name == "root" => ("t:Folder", "", "Root", ""),
            None => ("t:Folder", "IPF.Note", "Top of Information Store", "root"),
        };
        let (total, children) = match kind {
            Some(kind) => {
                let folders = store.mailboxes.entry(mailbox.to_owned()).or_default();
                (folders.folder(kind).items.len(), 0)
            }
            None if name == "root" => (0, 1),
            None => (0, 3),
        };
        out.open(tag, &[]);
        out.empty(
            "t:FolderId",
            &[("Id", &folder_id(name)), ("ChangeKey", FOLDER_CHANGE_KEY)],
        );
        if id_only {
            out.close(tag);
            return;
        }
        if !parent.is_empty() {
            out.empty(
                "t:ParentFolderId",
                &[("Id", &folder_id(parent)), ("ChangeKey", FOLDER_CHANGE_KEY)],
            );
        }
        if !class.is_empty() {
            out.text_element("t:FolderClass", &[], class);
        }
        out.text_element("t:DisplayName", &[], display);
        out.text_element("t:TotalCount", &[], &total.to_string());
        out.text_element("t:ChildFolderCount", &[], &children.to_string());
        out.text_element("t:DistinguishedFolderId", &[], name);
        if tag != "t:CalendarFolder" && tag != "t:ContactsFolder" {
            out.text_element("t:UnreadCount", &[], "0");
        }
        out.close(tag);
    }
}

/// `SyncFolderHierarchy` (optional `SyncFolderId` and `SyncState`). Without a state the
/// Contacts, Calendar and Tasks folders come as `Create` changes (none below an item folder,
/// which has no subfolders); the state returned then yields no further changes. A state from
/// another scope, from SyncFolderItems or garbage gets ErrorInvalidSyncStateData.
pub(crate) fn sync_folder_hierarchy(
    store: &mut Store,
    mailbox: &str,
    op: &Element,
    out: &mut XmlOut,
) -> Result<(), Fault> {
    let base = op
        .path(&["FolderShape", "BaseShape"])
        .map(|b| b.text.trim())
        .ok_or_else(|| Fault::schema("SyncFolderHierarchy needs a FolderShape with a BaseShape"))?;
    let id_only = match base {
        "IdOnly" => true,
        "Default" | "AllProperties" => false,
        other => return Err(Fault::schema(format!("BaseShape '{other}' is not valid"))),
    };
    let scope = match op.child("SyncFolderId") {
        None => "root".to_owned(),
        Some(parent) => {
            let folder = parent
                .children
                .iter()
                .find(|c| c.name == "DistinguishedFolderId" || c.name == "FolderId")
                .ok_or_else(|| Fault::schema("SyncFolderId needs a folder id"))?;
            let name = folder_name(folder)?;
            match name.as_str() {
                "root" | "msgfolderroot" => "root".to_owned(),
                other if ItemKind::from_folder_id(other).is_some() => other.to_owned(),
                other => {
                    return Err(Fault {
                        code: "ErrorFolderNotFound",
                        message: format!("The folder '{other}' is not emulated."),
                    });
                }
            }
        }
    };
    let state = base64::engine::general_purpose::STANDARD
        .encode(format!("tandem-ews-sim/v1/hierarchy/{scope}/1"));
    let sent = op.child_text("SyncState").filter(|s| !s.is_empty());
    out.open("m:SyncFolderHierarchyResponse", &[]);
    out.open("m:ResponseMessages", &[]);
    if sent.is_some_and(|sent| sent != state) {
        out.open(
            "m:SyncFolderHierarchyResponseMessage",
            &[("ResponseClass", "Error")],
        );
        out.text_element(
            "m:MessageText",
            &[],
            "Synchronization state data is corrupt or otherwise invalid.",
        );
        out.text_element("m:ResponseCode", &[], "ErrorInvalidSyncStateData");
        out.text_element("m:DescriptiveLinkKey", &[], "0");
        out.empty("m:SyncState", &[]);
        out.text_element("m:IncludesLastFolderInRange", &[], "true");
    } else {
        out.open(
            "m:SyncFolderHierarchyResponseMessage",
            &[("ResponseClass", "Success")],
        );
        out.text_element("m:ResponseCode", &[], "NoError");
        out.text_element("m:SyncState", &[], &state);
        out.text_element("m:IncludesLastFolderInRange", &[], "true");
        out.open("m:Changes", &[]);
        if sent.is_none() && scope == "root" {
            for kind in ItemKind::ALL {
                out.open("t:Create", &[]);
                write_folder(store, mailbox, kind.folder_id(), Some(kind), id_only, out);
                out.close("t:Create");
            }
        }
        out.close("m:Changes");
    }
    out.close("m:SyncFolderHierarchyResponseMessage");
    out.close("m:ResponseMessages");
    out.close("m:SyncFolderHierarchyResponse");
    Ok(())
}
