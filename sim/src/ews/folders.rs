//! Folder operations of the EWS emulator, for clients that look folders up before using
//! them (exchangelib does): `GetFolder` on the root, the message-folder root and the
//! Contacts, Calendar and Tasks folders, by distinguished id or by the ids it hands out.

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
            &[("Id", &folder_id(&name)), ("ChangeKey", FOLDER_CHANGE_KEY)],
        );
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
        out.text_element("t:DistinguishedFolderId", &[], &name);
        if tag != "t:CalendarFolder" && tag != "t:ContactsFolder" {
            out.text_element("t:UnreadCount", &[], "0");
        }
        out.close(tag);
        out.close("m:Folders");
        out.close("m:GetFolderResponseMessage");
    }
    out.close("m:ResponseMessages");
    out.close("m:GetFolderResponse");
    Ok(())
}
