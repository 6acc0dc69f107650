//! Emulator tests: real HTTP over loopback against the EWS emulator, with hand-written SOAP.
#![allow(clippy::unwrap_used)]

use super::wire::{Element, parse_document};
use super::*;

pub(super) const MAILBOX: &str = "alice@example.com";

pub(super) struct Harness {
    pub(super) sim: EwsSim,
    pub(super) server: RunningServer,
    pub(super) http: reqwest::Client,
}

pub(super) async fn start(config: EwsSimConfig) -> Harness {
    let sim = EwsSim::new(config).unwrap();
    let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    Harness {
        sim,
        server,
        http: reqwest::Client::new(),
    }
}

fn envelope(mailbox: Option<&str>, body: &str) -> String {
    let impersonation = mailbox
        .map(|m| {
            format!(
                "<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{m}</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"
            )
        })
        .unwrap_or_default();
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><soap:Header><t:RequestServerVersion Version="Exchange2013_SP1"/>{impersonation}</soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>"#
    )
}

impl Harness {
    async fn post_raw(&self, body: String, auth: bool) -> (u16, String) {
        let mut request = self
            .http
            .post(format!("{}/EWS/Exchange.asmx", self.server.base_url()))
            .header("Content-Type", "text/xml; charset=utf-8")
            .body(body);
        if auth {
            request = request.basic_auth("svc-tandem", Some("ews-sim"));
        }
        let reply = request.send().await.unwrap();
        (reply.status().as_u16(), reply.text().await.unwrap())
    }

    /// Posts an operation for MAILBOX; returns status and the Body's first child.
    pub(super) async fn call(&self, body: &str) -> (u16, Element) {
        self.call_as(Some(MAILBOX), body).await
    }

    async fn call_as(&self, mailbox: Option<&str>, body: &str) -> (u16, Element) {
        let (status, text) = self.post_raw(envelope(mailbox, body), true).await;
        let doc =
            parse_document(&text).unwrap_or_else(|e| panic!("reply is not XML ({e}): {text}"));
        assert!(
            doc.path(&["Header", "ServerVersionInfo"]).is_some(),
            "no ServerVersionInfo: {text}"
        );
        let first = doc
            .child("Body")
            .and_then(|b| b.children.first())
            .cloned()
            .unwrap();
        (status, first)
    }

    async fn sync(&self, state: Option<&str>, max: u32) -> Element {
        let state = state
            .map(|s| format!("<m:SyncState>{s}</m:SyncState>"))
            .unwrap_or_default();
        let (status, reply) = self
            .call(&format!(
                r#"<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:SyncFolderId><t:DistinguishedFolderId Id="contacts"/></m:SyncFolderId>{state}<m:MaxChangesReturned>{max}</m:MaxChangesReturned></m:SyncFolderItems>"#
            ))
            .await;
        assert_eq!(status, 200);
        first_message(&reply).clone()
    }

    async fn create_contact_http(&self, given: &str) -> (String, String) {
        let (status, reply) = self
            .call(&format!(
                r#"<m:CreateItem><m:SavedItemFolderId><t:DistinguishedFolderId Id="contacts"/></m:SavedItemFolderId><m:Items><t:Contact><t:GivenName>{given}</t:GivenName><t:Surname>Test</t:Surname></t:Contact></m:Items></m:CreateItem>"#
            ))
            .await;
        assert_eq!(status, 200);
        let id = first_message(&reply)
            .path(&["Items", "Contact", "ItemId"])
            .unwrap();
        (
            id.attr("Id").unwrap().to_owned(),
            id.attr("ChangeKey").unwrap().to_owned(),
        )
    }

    async fn update_job_title(&self, id: &str, change_key: Option<&str>, title: &str) -> Element {
        let key = change_key
            .map(|k| format!(r#" ChangeKey="{k}""#))
            .unwrap_or_default();
        let (status, reply) = self
            .call(&format!(
                r#"<m:UpdateItem ConflictResolution="NeverOverwrite"><m:ItemChanges><t:ItemChange><t:ItemId Id="{id}"{key}/><t:Updates><t:SetItemField><t:FieldURI FieldURI="contacts:JobTitle"/><t:Contact><t:JobTitle>{title}</t:JobTitle></t:Contact></t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"#
            ))
            .await;
        assert_eq!(status, 200);
        first_message(&reply).clone()
    }
}

pub(super) fn first_message(reply: &Element) -> &Element {
    reply
        .child("ResponseMessages")
        .and_then(|m| m.children.first())
        .unwrap()
}

pub(super) fn code(message: &Element) -> &str {
    message.child_text("ResponseCode").unwrap()
}

fn fault_code(reply: &Element) -> &str {
    assert_eq!(reply.name, "Fault");
    reply
        .path(&["detail", "ResponseCode"])
        .map(|c| c.text.as_str())
        .unwrap()
}

fn changes(message: &Element) -> Vec<(String, String)> {
    message
        .child("Changes")
        .unwrap()
        .children
        .iter()
        .map(|change| {
            let id = change
                .child("ItemId")
                .or_else(|| change.children.first().and_then(|i| i.child("ItemId")))
                .unwrap();
            (change.name.clone(), id.attr("Id").unwrap().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn ews_sync_pages_over_512_changes_then_reports_updates_and_deletes() {
    let h = start(EwsSimConfig::default()).await;
    let ids: Vec<String> = (0..600)
        .map(|n| {
            h.sim
                .create_contact(MAILBOX, &[("GivenName", &format!("P{n}"))])
                .unwrap()
        })
        .collect();

    let first = h.sync(None, 512).await;
    assert_eq!(code(&first), "NoError");
    assert_eq!(first.child_text("IncludesLastItemInRange"), Some("false"));
    assert_eq!(changes(&first).len(), 512);
    assert!(changes(&first).iter().all(|(kind, _)| kind == "Create"));
    let state1 = first.child_text("SyncState").unwrap().to_owned();

    let second = h.sync(Some(&state1), 512).await;
    assert_eq!(second.child_text("IncludesLastItemInRange"), Some("true"));
    let rest = changes(&second);
    assert_eq!(rest.len(), 88);
    let mut seen: Vec<String> = changes(&first)
        .into_iter()
        .chain(rest)
        .map(|(_, id)| id)
        .collect();
    seen.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected, "every item exactly once across pages");
    let state2 = second.child_text("SyncState").unwrap().to_owned();

    assert!(changes(&h.sync(Some(&state2), 10).await).is_empty());

    h.sim
        .update_item_fields(MAILBOX, &ids[3], &[("JobTitle", "CEO")])
        .unwrap();
    assert!(h.sim.delete_item(MAILBOX, &ids[4]));
    let created_and_deleted = h
        .sim
        .create_contact(MAILBOX, &[("GivenName", "Ghost")])
        .unwrap();
    assert!(h.sim.delete_item(MAILBOX, &created_and_deleted));
    let third = h.sync(Some(&state2), 512).await;
    assert_eq!(
        changes(&third),
        vec![
            ("Update".to_owned(), ids[3].clone()),
            ("Delete".to_owned(), ids[4].clone())
        ]
    );

    // An old state still replays from where it was.
    assert_eq!(changes(&h.sync(Some(&state1), 512).await).len(), 88 + 2);
}

#[tokio::test]
async fn ews_invalid_sync_state_and_bad_max_changes() {
    let h = start(EwsSimConfig::default()).await;
    let bad = h.sync(Some("bm90IGEgc3RhdGU="), 10).await;
    assert_eq!(bad.attr("ResponseClass"), Some("Error"));
    assert_eq!(code(&bad), "ErrorInvalidSyncStateData");
    assert_eq!(bad.child_text("IncludesLastItemInRange"), Some("true"));
    assert_eq!(bad.child_text("SyncState"), Some(""));

    let (status, reply) = h
        .call(r#"<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:SyncFolderId><t:DistinguishedFolderId Id="contacts"/></m:SyncFolderId><m:MaxChangesReturned>513</m:MaxChangesReturned></m:SyncFolderItems>"#)
        .await;
    assert_eq!(status, 500);
    assert_eq!(fault_code(&reply), "ErrorSchemaValidation");

    // A state from another folder is not valid here.
    let tasks_state = {
        let (_, reply) = h
            .call(r#"<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:SyncFolderId><t:DistinguishedFolderId Id="tasks"/></m:SyncFolderId><m:MaxChangesReturned>5</m:MaxChangesReturned></m:SyncFolderItems>"#)
            .await;
        first_message(&reply)
            .child_text("SyncState")
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        code(&h.sync(Some(&tasks_state), 10).await),
        "ErrorInvalidSyncStateData"
    );
}

#[tokio::test]
async fn ews_change_keys_detect_conflicts() {
    let h = start(EwsSimConfig::default()).await;
    let (id, key1) = h.create_contact_http("Ann").await;

    let ok = h.update_job_title(&id, Some(&key1), "CFO").await;
    assert_eq!(code(&ok), "NoError");
    let key2 = ok
        .path(&["Items", "Contact", "ItemId"])
        .unwrap()
        .attr("ChangeKey")
        .unwrap()
        .to_owned();
    assert_ne!(key1, key2, "every write gets a new ChangeKey");
    assert_eq!(
        h.sim.contact_fields(MAILBOX, &id).unwrap()["JobTitle"],
        "CFO"
    );

    let stale = h.update_job_title(&id, Some(&key1), "CEO").await;
    assert_eq!(stale.attr("ResponseClass"), Some("Error"));
    assert_eq!(code(&stale), "ErrorIrresolvableConflict");
    assert!(
        stale.child("Items").is_some(),
        "error messages still carry m:Items"
    );
    assert_eq!(
        h.sim.contact_fields(MAILBOX, &id).unwrap()["JobTitle"],
        "CFO"
    );

    let missing = h.update_job_title(&id, None, "CEO").await;
    assert_eq!(code(&missing), "ErrorChangeKeyRequiredForWriteOperations");

    let gone = h
        .update_job_title("AAMkNoSuchItem=", Some(&key2), "CEO")
        .await;
    assert_eq!(code(&gone), "ErrorItemNotFound");

    let (status, reply) = h
        .call(&format!(
            r#"<m:UpdateItem><m:ItemChanges><t:ItemChange><t:ItemId Id="{id}" ChangeKey="{key2}"/><t:Updates><t:DeleteItemField><t:FieldURI FieldURI="contacts:JobTitle"/></t:DeleteItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"#
        ))
        .await;
    assert_eq!(status, 500, "ConflictResolution is required");
    assert_eq!(fault_code(&reply), "ErrorSchemaValidation");
}

#[tokio::test]
async fn ews_calendar_create_requires_send_meeting_invitations() {
    let h = start(EwsSimConfig::default()).await;
    let item = r#"<m:Items><t:CalendarItem><t:Subject>Review</t:Subject><t:Start>2026-03-02T09:00:00Z</t:Start><t:End>2026-03-02T10:00:00Z</t:End><t:Location>Room 1</t:Location></t:CalendarItem></m:Items>"#;
    let (status, reply) = h
        .call(&format!(r#"<m:CreateItem><m:SavedItemFolderId><t:DistinguishedFolderId Id="calendar"/></m:SavedItemFolderId>{item}</m:CreateItem>"#))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        code(first_message(&reply)),
        "ErrorSendMeetingInvitationsRequired"
    );
    assert_eq!(h.sim.item_count(MAILBOX, "calendar"), 0);

    let (_, reply) = h
        .call(&format!(r#"<m:CreateItem SendMeetingInvitations="SendToNone"><m:SavedItemFolderId><t:DistinguishedFolderId Id="calendar"/></m:SavedItemFolderId>{item}</m:CreateItem>"#))
        .await;
    assert_eq!(code(first_message(&reply)), "NoError");
    assert_eq!(h.sim.item_count(MAILBOX, "calendar"), 1);
    let id = first_message(&reply)
        .path(&["Items", "CalendarItem", "ItemId"])
        .unwrap()
        .attr("Id")
        .unwrap()
        .to_owned();

    let (_, reply) = h
        .call(&format!(r#"<m:DeleteItem DeleteType="HardDelete"><m:ItemIds><t:ItemId Id="{id}"/></m:ItemIds></m:DeleteItem>"#))
        .await;
    assert_eq!(
        code(first_message(&reply)),
        "ErrorSendMeetingCancellationsRequired"
    );
    let (_, reply) = h
        .call(&format!(r#"<m:DeleteItem DeleteType="HardDelete" SendMeetingCancellations="SendToNone"><m:ItemIds><t:ItemId Id="{id}"/></m:ItemIds></m:DeleteItem>"#))
        .await;
    assert_eq!(code(first_message(&reply)), "NoError");
    assert_eq!(h.sim.item_count(MAILBOX, "calendar"), 0);
}

#[tokio::test]
async fn ews_schema_order_is_enforced_on_requests() {
    let h = start(EwsSimConfig::default()).await;
    let (status, reply) = h
        .call(r#"<m:CreateItem><m:SavedItemFolderId><t:DistinguishedFolderId Id="contacts"/></m:SavedItemFolderId><m:Items><t:Contact><t:Surname>B</t:Surname><t:GivenName>A</t:GivenName></t:Contact></m:Items></m:CreateItem>"#)
        .await;
    assert_eq!(status, 500);
    assert_eq!(fault_code(&reply), "ErrorSchemaValidation");
    assert_eq!(h.sim.item_count(MAILBOX, "contacts"), 0);
}

#[tokio::test]
async fn ews_fixed_mailbox_list_rejects_others_case_insensitively() {
    let h = start(EwsSimConfig {
        mailboxes: Some(vec!["Alice@Example.com".into()]),
        ..Default::default()
    })
    .await;
    let (status, _) = h.call_as(Some("ALICE@example.COM"), r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:ParentFolderIds><t:DistinguishedFolderId Id="contacts"/></m:ParentFolderIds></m:FindItem>"#).await;
    assert_eq!(status, 200);
    let (status, reply) = h.call_as(Some("mallory@example.com"), r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:ParentFolderIds><t:DistinguishedFolderId Id="contacts"/></m:ParentFolderIds></m:FindItem>"#).await;
    assert_eq!(status, 500);
    assert_eq!(fault_code(&reply), "ErrorNonExistentMailbox");
}

#[tokio::test]
async fn ews_auth_malformed_xml_and_unknown_operations() {
    let h = start(EwsSimConfig::default()).await;
    let (status, _) = h
        .post_raw(envelope(Some(MAILBOX), "<m:GetFolder/>"), false)
        .await;
    assert_eq!(status, 401);
    let (status, text) = h.post_raw("<soap:Envelope><oops".into(), true).await;
    assert_eq!(status, 500);
    assert!(text.contains("ErrorSchemaValidation"), "{text}");
    let (status, reply) = h.call("<m:GetFolder/>").await;
    assert_eq!(status, 500);
    assert_eq!(fault_code(&reply), "ErrorSchemaValidation");
}

#[tokio::test]
async fn ews_stats_count_by_operation() {
    let h = start(EwsSimConfig::default()).await;
    h.create_contact_http("A").await;
    h.create_contact_http("B").await;
    h.sync(None, 10).await;
    let stats: common::StatsReport = h
        .http
        .get(format!("{}/_sim/stats", h.server.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats.requests.get("CreateItem"), Some(&2));
    assert_eq!(stats.requests.get("SyncFolderItems"), Some(&1));
    assert_eq!(h.sim.stats(), stats);
}

#[tokio::test]
async fn ews_fault_injection_answers_busy_or_503_and_changes_nothing() {
    let h = start(EwsSimConfig::default()).await;
    let faults = |kind: &str| serde_json::json!({"rate": 1.0, "kinds": [kind]});
    let set = h
        .http
        .post(format!("{}/_sim/faults", h.server.base_url()))
        .json(&faults("server-busy"))
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success());
    let create = r#"<m:CreateItem><m:SavedItemFolderId><t:DistinguishedFolderId Id="contacts"/></m:SavedItemFolderId><m:Items><t:Contact><t:GivenName>X</t:GivenName></t:Contact></m:Items></m:CreateItem>"#;
    let (status, reply) = h.call(create).await;
    assert_eq!(status, 500);
    assert_eq!(fault_code(&reply), "ErrorServerBusy");
    let back_off = reply.path(&["detail", "MessageXml", "Value"]).unwrap();
    assert_eq!(back_off.attr("Name"), Some("BackOffMilliseconds"));
    assert_eq!(back_off.text, SERVER_BUSY_BACK_OFF_MS.to_string());
    assert_eq!(h.sim.item_count(MAILBOX, "contacts"), 0);

    h.sim.set_faults(common::FaultSettings {
        rate: 1.0,
        kinds: vec!["http503".into()],
    });
    let (status, _) = h.post_raw(envelope(Some(MAILBOX), create), true).await;
    assert_eq!(status, 503);
    assert_eq!(h.sim.item_count(MAILBOX, "contacts"), 0);

    h.sim.set_faults(common::FaultSettings::default());
    let (status, _) = h.call(create).await;
    assert_eq!(status, 200);
    assert_eq!(h.sim.item_count(MAILBOX, "contacts"), 1);
}

#[tokio::test]
async fn ews_get_item_shapes_extended_properties_and_missing_ids() {
    let h = start(EwsSimConfig::default()).await;
    let (_, reply) = h
        .call(r#"<m:CreateItem><m:SavedItemFolderId><t:DistinguishedFolderId Id="contacts"/></m:SavedItemFolderId><m:Items><t:Contact><t:Body BodyType="Text">a &amp; b</t:Body><t:ExtendedProperty><t:ExtendedFieldURI DistinguishedPropertySetId="PublicStrings" PropertyName="TandemSyncId" PropertyType="String"/><t:Value>sync-1</t:Value></t:ExtendedProperty><t:GivenName>Ann</t:GivenName><t:EmailAddresses><t:Entry Key="EmailAddress1">ann@x.com</t:Entry></t:EmailAddresses><t:PhysicalAddresses><t:Entry Key="Business"><t:City>Oslo</t:City></t:Entry></t:PhysicalAddresses></t:Contact></m:Items></m:CreateItem>"#)
        .await;
    let id = first_message(&reply)
        .path(&["Items", "Contact", "ItemId"])
        .unwrap()
        .attr("Id")
        .unwrap()
        .to_owned();
    assert_eq!(h.sim.sync_id(MAILBOX, &id).as_deref(), Some("sync-1"));

    let get = |shape: &str, extra: &str| {
        format!(
            r#"<m:GetItem><m:ItemShape><t:BaseShape>{shape}</t:BaseShape>{extra}</m:ItemShape><m:ItemIds><t:ItemId Id="{id}"/><t:ItemId Id="AAMkMissing="/></m:ItemIds></m:GetItem>"#
        )
    };
    let (_, reply) = h.call(&get("AllProperties", "")).await;
    let messages = &reply.child("ResponseMessages").unwrap().children;
    assert_eq!(messages.len(), 2);
    let contact = messages[0].path(&["Items", "Contact"]).unwrap();
    assert_eq!(contact.child_text("Body"), Some("a & b"));
    assert!(
        contact.child("ExtendedProperty").is_none(),
        "extended properties only when asked"
    );
    assert_eq!(code(&messages[1]), "ErrorItemNotFound");

    let (_, reply) = h
        .call(&get(
            "IdOnly",
            r#"<t:AdditionalProperties><t:IndexedFieldURI FieldURI="contacts:PhysicalAddress:City" FieldIndex="Business"/><t:ExtendedFieldURI DistinguishedPropertySetId="PublicStrings" PropertyName="TandemSyncId" PropertyType="String"/></t:AdditionalProperties>"#,
        ))
        .await;
    let contact = first_message(&reply).path(&["Items", "Contact"]).unwrap();
    assert!(contact.child("GivenName").is_none());
    assert_eq!(
        contact
            .path(&["PhysicalAddresses", "Entry", "City"])
            .map(|c| c.text.as_str()),
        Some("Oslo")
    );
    assert_eq!(
        contact
            .path(&["ExtendedProperty", "Value"])
            .map(|v| v.text.as_str()),
        Some("sync-1")
    );
}

#[tokio::test]
async fn ews_find_item_pages_with_indexed_view() {
    let h = start(EwsSimConfig::default()).await;
    for n in 0..25 {
        h.sim
            .create_contact(MAILBOX, &[("GivenName", &format!("P{n}"))])
            .unwrap();
    }
    let find = |offset: usize, base: &str| {
        format!(
            r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:IndexedPageItemView MaxEntriesReturned="10" Offset="{offset}" BasePoint="{base}"/><m:ParentFolderIds><t:DistinguishedFolderId Id="contacts"/></m:ParentFolderIds></m:FindItem>"#
        )
    };
    let mut offset = 0;
    let mut total_seen = 0;
    loop {
        let (_, reply) = h.call(&find(offset, "Beginning")).await;
        let root = first_message(&reply).child("RootFolder").unwrap().clone();
        assert_eq!(root.attr("TotalItemsInView"), Some("25"));
        total_seen += root.child("Items").unwrap().children.len();
        offset = root.attr("IndexedPagingOffset").unwrap().parse().unwrap();
        if root.attr("IncludesLastItemInRange") == Some("true") {
            break;
        }
    }
    assert_eq!(total_seen, 25);
    assert_eq!(offset, 25);
    let (_, reply) = h.call(&find(20, "End")).await;
    let root = first_message(&reply).child("RootFolder").unwrap();
    assert_eq!(root.child("Items").unwrap().children.len(), 5);
    assert_eq!(root.attr("IncludesLastItemInRange"), Some("true"));
}

#[tokio::test]
async fn ews_capture_and_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture");
    let data = dir.path().join("ews.json");
    let config = EwsSimConfig {
        capture_dir: Some(capture.clone()),
        data_file: Some(data.clone()),
        ..Default::default()
    };
    let h = start(config.clone()).await;
    let (id, _) = h.create_contact_http("Persisted").await;
    let mut names: Vec<String> = std::fs::read_dir(&capture)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "000001-CreateItem-request.xml",
            "000001-CreateItem-response.xml"
        ]
    );
    drop(h);

    let reloaded = EwsSim::new(config).unwrap();
    assert_eq!(
        reloaded.contact_fields(MAILBOX, &id).unwrap()["GivenName"],
        "Persisted"
    );
}

#[tokio::test]
async fn ews_update_extended_property_append_body_and_task_delete_rules() {
    let h = start(EwsSimConfig::default()).await;
    let (_, reply) = h
        .call(r#"<m:CreateItem><m:SavedItemFolderId><t:DistinguishedFolderId Id="tasks"/></m:SavedItemFolderId><m:Items><t:Task><t:Subject>T</t:Subject><t:Body BodyType="Text">one</t:Body><t:DueDate>2026-03-05T17:00:00Z</t:DueDate><t:Status>NotStarted</t:Status></t:Task></m:Items></m:CreateItem>"#)
        .await;
    let id_el = first_message(&reply)
        .path(&["Items", "Task", "ItemId"])
        .unwrap()
        .clone();
    let (id, key) = (id_el.attr("Id").unwrap(), id_el.attr("ChangeKey").unwrap());
    let ext = r#"<t:ExtendedFieldURI DistinguishedPropertySetId="PublicStrings" PropertyName="TandemSyncId" PropertyType="String"/>"#;
    let (_, reply) = h
        .call(&format!(
            r#"<m:UpdateItem ConflictResolution="AlwaysOverwrite"><m:ItemChanges><t:ItemChange><t:ItemId Id="{id}" ChangeKey="{key}"/><t:Updates><t:SetItemField>{ext}<t:Task><t:ExtendedProperty>{ext}<t:Value>s-9</t:Value></t:ExtendedProperty></t:Task></t:SetItemField><t:AppendToItemField><t:FieldURI FieldURI="item:Body"/><t:Task><t:Body BodyType="Text"> two</t:Body></t:Task></t:AppendToItemField><t:DeleteItemField><t:FieldURI FieldURI="task:DueDate"/></t:DeleteItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"#
        ))
        .await;
    assert_eq!(code(first_message(&reply)), "NoError");
    assert_eq!(h.sim.sync_id(MAILBOX, id).as_deref(), Some("s-9"));
    let (_, reply) = h
        .call(&format!(r#"<m:GetItem><m:ItemShape><t:BaseShape>Default</t:BaseShape></m:ItemShape><m:ItemIds><t:ItemId Id="{id}"/></m:ItemIds></m:GetItem>"#))
        .await;
    let task = first_message(&reply).path(&["Items", "Task"]).unwrap();
    assert_eq!(task.child_text("Body"), Some("one two"));
    assert!(task.child("DueDate").is_none());

    // Unsupported paths fail the item, not the request; tasks need AffectedTaskOccurrences.
    let (_, reply) = h
        .call(&format!(
            r#"<m:UpdateItem ConflictResolution="AlwaysOverwrite"><m:ItemChanges><t:ItemChange><t:ItemId Id="{id}" ChangeKey="x"/><t:Updates><t:DeleteItemField><t:FieldURI FieldURI="contacts:GivenName"/></t:DeleteItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"#
        ))
        .await;
    assert_eq!(code(first_message(&reply)), "ErrorInvalidPropertySet");
    let (_, reply) = h
        .call(&format!(r#"<m:DeleteItem DeleteType="MoveToDeletedItems"><m:ItemIds><t:ItemId Id="{id}"/></m:ItemIds></m:DeleteItem>"#))
        .await;
    assert_eq!(
        code(first_message(&reply)),
        "ErrorAffectedTaskOccurrencesRequired"
    );
    assert_eq!(h.sim.item_count(MAILBOX, "tasks"), 1);
}

#[tokio::test]
async fn ews_missing_impersonation_uses_the_service_account_mailbox() {
    let h = start(EwsSimConfig::default()).await;
    let (status, reply) = h
        .call_as(None, r#"<m:CreateItem><m:SavedItemFolderId><t:DistinguishedFolderId Id="contacts"/></m:SavedItemFolderId><m:Items><t:Contact><t:GivenName>Own</t:GivenName></t:Contact></m:Items></m:CreateItem>"#)
        .await;
    assert_eq!(status, 200);
    assert_eq!(code(first_message(&reply)), "NoError");
    assert_eq!(h.sim.item_count("svc-tandem", "contacts"), 1);
    assert_eq!(h.sim.item_count(MAILBOX, "contacts"), 0);
    // Mailboxes are separate: alice cannot read the service account's item.
    let id = first_message(&reply)
        .path(&["Items", "Contact", "ItemId"])
        .unwrap()
        .attr("Id")
        .unwrap()
        .to_owned();
    let (_, reply) = h
        .call(&format!(r#"<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:ItemIds><t:ItemId Id="{id}"/></m:ItemIds></m:GetItem>"#))
        .await;
    assert_eq!(code(first_message(&reply)), "ErrorItemNotFound");
}

#[tokio::test]
async fn ews_find_item_restriction_on_sync_id() {
    let h = start(EwsSimConfig::default()).await;
    let wanted = h
        .sim
        .create_contact(MAILBOX, &[("GivenName", "A"), ("TandemSyncId", "s-1")])
        .unwrap();
    h.sim
        .create_contact(MAILBOX, &[("GivenName", "B"), ("TandemSyncId", "s-2")])
        .unwrap();
    let find = |expression: &str| {
        format!(
            r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:Restriction>{expression}</m:Restriction><m:ParentFolderIds><t:DistinguishedFolderId Id="contacts"/></m:ParentFolderIds></m:FindItem>"#
        )
    };
    let ext = r#"<t:ExtendedFieldURI DistinguishedPropertySetId="PublicStrings" PropertyName="TandemSyncId" PropertyType="String"/>"#;
    let (_, reply) =
        h.call(&find(&format!(r#"<t:IsEqualTo>{ext}<t:FieldURIOrConstant><t:Constant Value="s-1"/></t:FieldURIOrConstant></t:IsEqualTo>"#))).await;
    let root = first_message(&reply).child("RootFolder").unwrap();
    assert_eq!(root.attr("TotalItemsInView"), Some("1"));
    assert_eq!(
        root.path(&["Items", "Contact", "ItemId"])
            .unwrap()
            .attr("Id"),
        Some(wanted.as_str())
    );
    let (_, reply) = h
        .call(&find(r#"<t:IsEqualTo><t:FieldURI FieldURI="contacts:GivenName"/><t:FieldURIOrConstant><t:Constant Value="B"/></t:FieldURIOrConstant></t:IsEqualTo>"#))
        .await;
    assert_eq!(
        first_message(&reply)
            .child("RootFolder")
            .unwrap()
            .attr("TotalItemsInView"),
        Some("1")
    );
    let (status, reply) = h
        .call(&find(r#"<t:IsGreaterThan><t:FieldURI FieldURI="contacts:GivenName"/><t:FieldURIOrConstant><t:Constant Value="A"/></t:FieldURIOrConstant></t:IsGreaterThan>"#))
        .await;
    assert_eq!(status, 500);
    assert_eq!(fault_code(&reply), "ErrorUnsupportedQueryFilter");
}

#[tokio::test]
async fn ews_get_folder_answers_distinguished_folders_and_their_ids() {
    let h = start(EwsSimConfig::default()).await;
    h.sim
        .create_contact(MAILBOX, &[("GivenName", "Ann")])
        .unwrap();
    let (status, reply) = h
        .call(r#"<m:GetFolder><m:FolderShape><t:BaseShape>AllProperties</t:BaseShape></m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="contacts"/><t:DistinguishedFolderId Id="root"/><t:DistinguishedFolderId Id="inbox"/></m:FolderIds></m:GetFolder>"#)
        .await;
    assert_eq!(status, 200);
    let messages: Vec<&Element> = reply
        .child("ResponseMessages")
        .unwrap()
        .children
        .iter()
        .collect();
    assert_eq!(messages.len(), 3);
    let contacts = messages[0].path(&["Folders", "ContactsFolder"]).unwrap();
    assert_eq!(contacts.child_text("FolderClass"), Some("IPF.Contact"));
    assert_eq!(contacts.child_text("TotalCount"), Some("1"));
    let folder_id = contacts
        .child("FolderId")
        .unwrap()
        .attr("Id")
        .unwrap()
        .to_owned();
    assert!(messages[1].path(&["Folders", "Folder"]).is_some());
    assert_eq!(code(messages[2]), "ErrorFolderNotFound");

    // The folder id works wherever a folder is named.
    let (status, reply) = h
        .call(&format!(r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:ParentFolderIds><t:FolderId Id="{folder_id}"/></m:ParentFolderIds></m:FindItem>"#))
        .await;
    assert_eq!(status, 200);
    let root = first_message(&reply).child("RootFolder").unwrap();
    assert_eq!(root.attr("TotalItemsInView"), Some("1"));
}

#[tokio::test]
async fn ews_calendar_attendees_and_recurrence_round_trip_as_sent() {
    let h = start(EwsSimConfig::default()).await;
    let attendees = "<t:RequiredAttendees><t:Attendee><t:Mailbox><t:EmailAddress>bob@example.com</t:EmailAddress></t:Mailbox></t:Attendee></t:RequiredAttendees>";
    let recurrence = "<t:Recurrence><t:WeeklyRecurrence><t:Interval>1</t:Interval><t:DaysOfWeek>Monday</t:DaysOfWeek></t:WeeklyRecurrence><t:NoEndRecurrence><t:StartDate>2026-03-02</t:StartDate></t:NoEndRecurrence></t:Recurrence>";
    let (status, reply) = h
        .call(&format!(r#"<m:CreateItem SendMeetingInvitations="SendToNone"><m:SavedItemFolderId><t:DistinguishedFolderId Id="calendar"/></m:SavedItemFolderId><m:Items><t:CalendarItem><t:Subject>Weekly</t:Subject><t:Start>2026-03-02T09:00:00Z</t:Start><t:End>2026-03-02T10:00:00Z</t:End>{attendees}{recurrence}</t:CalendarItem></m:Items></m:CreateItem>"#))
        .await;
    assert_eq!(status, 200, "{reply:?}");
    let id = first_message(&reply)
        .path(&["Items", "CalendarItem", "ItemId"])
        .unwrap()
        .attr("Id")
        .unwrap()
        .to_owned();
    let (_, reply) = h
        .call(&format!(r#"<m:GetItem><m:ItemShape><t:BaseShape>AllProperties</t:BaseShape></m:ItemShape><m:ItemIds><t:ItemId Id="{id}"/></m:ItemIds></m:GetItem>"#))
        .await;
    let item = first_message(&reply)
        .path(&["Items", "CalendarItem"])
        .unwrap();
    let names: Vec<&str> = item.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ItemId",
            "Subject",
            "Start",
            "End",
            "CalendarItemType",
            "Organizer",
            "RequiredAttendees",
            "Recurrence",
            "FirstOccurrence"
        ]
    );
    assert_eq!(
        item.path(&["Organizer", "Mailbox", "EmailAddress"])
            .map(|e| e.text.as_str()),
        Some(MAILBOX),
        "Exchange makes the mailbox owner the organizer"
    );
    assert_eq!(
        item.path(&["RequiredAttendees", "Attendee", "Mailbox", "EmailAddress"])
            .map(|e| e.text.as_str()),
        Some("bob@example.com")
    );
    assert_eq!(
        item.path(&["Recurrence", "WeeklyRecurrence", "DaysOfWeek"])
            .map(|e| e.text.as_str()),
        Some("Monday")
    );
}

#[tokio::test]
async fn ews_streaming_subscription_reports_events_then_closes() {
    let h = start(EwsSimConfig {
        streaming_connection_limit: Some(std::time::Duration::from_millis(400)),
        ..Default::default()
    })
    .await;
    let (status, reply) = h
        .call(r#"<m:Subscribe><m:StreamingSubscriptionRequest><t:FolderIds><t:DistinguishedFolderId Id="contacts"/></t:FolderIds><t:EventTypes><t:EventType>CreatedEvent</t:EventType></t:EventTypes></m:StreamingSubscriptionRequest></m:Subscribe>"#)
        .await;
    assert_eq!(status, 200);
    let subscription = first_message(&reply)
        .child_text("SubscriptionId")
        .unwrap()
        .to_owned();
    assert_eq!(h.sim.subscription_count(), 1);
    let sim = h.sim.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        sim.create_contact(MAILBOX, &[("GivenName", "Ann")])
            .unwrap();
    });
    let started = std::time::Instant::now();
    let (status, text) = h
        .post_raw(
            envelope(
                Some(MAILBOX),
                &format!(r#"<m:GetStreamingEvents><m:SubscriptionIds><t:SubscriptionId>{subscription}</t:SubscriptionId></m:SubscriptionIds><m:ConnectionTimeout>1</m:ConnectionTimeout></m:GetStreamingEvents>"#),
            ),
            true,
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(350),
        "closed too early"
    );
    let envelopes = text.matches("</s:Envelope>").count();
    assert_eq!(envelopes, 3, "open, events, closed: {text}");
    assert!(text.contains("<t:CreatedEvent>"), "{text}");
    assert!(text.ends_with("<m:ConnectionStatus>Closed</m:ConnectionStatus></m:GetStreamingEventsResponseMessage></m:ResponseMessages></m:GetStreamingEventsResponse></s:Body></s:Envelope>"), "{text}");

    let (_, reply) = h
        .call(&format!(
            "<m:Unsubscribe><m:SubscriptionId>{subscription}</m:SubscriptionId></m:Unsubscribe>"
        ))
        .await;
    assert_eq!(code(first_message(&reply)), "NoError");
    assert_eq!(h.sim.subscription_count(), 0);
    let (status, text) = h
        .post_raw(
            envelope(
                Some(MAILBOX),
                &format!(r#"<m:GetStreamingEvents><m:SubscriptionIds><t:SubscriptionId>{subscription}</t:SubscriptionId></m:SubscriptionIds><m:ConnectionTimeout>1</m:ConnectionTimeout></m:GetStreamingEvents>"#),
            ),
            true,
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        text.contains("ErrorInvalidSubscription") && text.contains("<m:ErrorSubscriptionIds>"),
        "{text}"
    );
}

/// One GetStreamingEvents request reads subscriptions of several mailboxes (the anchor
/// mailbox is impersonated); each notification names the subscription whose mailbox
/// changed, and a lost subscription is named alone in `ErrorSubscriptionIds`.
#[tokio::test]
async fn ews_streaming_reads_subscriptions_of_several_mailboxes() {
    let h = start(EwsSimConfig {
        streaming_connection_limit: Some(std::time::Duration::from_millis(400)),
        ..Default::default()
    })
    .await;
    let other = "bob@example.com";
    let subscribe = r#"<m:Subscribe><m:StreamingSubscriptionRequest><t:FolderIds><t:DistinguishedFolderId Id="contacts"/></t:FolderIds><t:EventTypes><t:EventType>CreatedEvent</t:EventType></t:EventTypes></m:StreamingSubscriptionRequest></m:Subscribe>"#;
    let mut ids = Vec::new();
    for mailbox in [MAILBOX, other] {
        let (status, reply) = h.call_as(Some(mailbox), subscribe).await;
        assert_eq!(status, 200);
        ids.push(
            first_message(&reply)
                .child_text("SubscriptionId")
                .unwrap()
                .to_owned(),
        );
    }
    let request = |ids: &[String]| {
        let ids: String = ids
            .iter()
            .map(|id| format!("<t:SubscriptionId>{id}</t:SubscriptionId>"))
            .collect();
        envelope(
            Some(MAILBOX),
            &format!(
                r#"<m:GetStreamingEvents><m:SubscriptionIds>{ids}</m:SubscriptionIds><m:ConnectionTimeout>1</m:ConnectionTimeout></m:GetStreamingEvents>"#
            ),
        )
    };
    let sim = h.sim.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        sim.create_contact(other, &[("GivenName", "Bo")]).unwrap();
    });
    let (status, text) = h.post_raw(request(&ids), true).await;
    assert_eq!(status, 200);
    assert!(text.contains("<t:CreatedEvent>"), "{text}");
    let named: Vec<&str> = text
        .split("<t:Notification>")
        .skip(1)
        .filter_map(|n| n.split("<t:SubscriptionId>").nth(1))
        .filter_map(|n| n.split("</t:SubscriptionId>").next())
        .collect();
    assert_eq!(
        named,
        [ids[1].as_str()],
        "only bob's subscription had events: {text}"
    );

    h.sim.expire_subscriptions_of(other);
    assert_eq!(h.sim.subscription_count(), 1);
    let (status, text) = h.post_raw(request(&ids), true).await;
    assert_eq!(status, 200);
    let lost = text
        .split("<m:ErrorSubscriptionIds>")
        .nth(1)
        .and_then(|rest| rest.split("</m:ErrorSubscriptionIds>").next())
        .unwrap_or_else(|| panic!("no ErrorSubscriptionIds: {text}"));
    assert!(lost.contains(&ids[1]) && !lost.contains(&ids[0]), "{text}");
}

#[tokio::test]
async fn ews_meeting_requests_put_a_copy_organized_by_the_sender_in_each_invitee_calendar() {
    let h = start(EwsSimConfig::default()).await;
    let attendees = "<t:RequiredAttendees><t:Attendee><t:Mailbox><t:EmailAddress>Bob@example.com</t:EmailAddress></t:Mailbox></t:Attendee><t:Attendee><t:Mailbox><t:EmailAddress>alice@example.com</t:EmailAddress></t:Mailbox></t:Attendee></t:RequiredAttendees><t:OptionalAttendees><t:Attendee><t:Mailbox><t:EmailAddress>carol@example.com</t:EmailAddress></t:Mailbox></t:Attendee></t:OptionalAttendees>";
    let create = |send: &str, subject: &str| {
        format!(r#"<m:CreateItem SendMeetingInvitations="{send}"><m:SavedItemFolderId><t:DistinguishedFolderId Id="calendar"/></m:SavedItemFolderId><m:Items><t:CalendarItem><t:Subject>{subject}</t:Subject><t:Start>2026-03-02T09:00:00Z</t:Start><t:End>2026-03-02T10:00:00Z</t:End>{attendees}</t:CalendarItem></m:Items></m:CreateItem>"#)
    };
    let (status, reply) = h.call(&create("SendToNone", "Not sent")).await;
    assert_eq!(status, 200, "{reply:?}");
    assert_eq!(h.sim.item_count("bob@example.com", "calendar"), 0, "SendToNone sends nothing");

    let (status, reply) = h.call(&create("SendToAllAndSaveCopy", "Sent")).await;
    assert_eq!(status, 200, "{reply:?}");
    assert_eq!(h.sim.item_count(MAILBOX, "calendar"), 2, "the organizer keeps one item per meeting");
    assert_eq!(h.sim.item_count("bob@example.com", "calendar"), 1);
    assert_eq!(h.sim.item_count("carol@example.com", "calendar"), 1, "optional attendees are invited too");

    let (_, found) = h
        .call_as(Some("bob@example.com"), r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:ParentFolderIds><t:DistinguishedFolderId Id="calendar"/></m:ParentFolderIds></m:FindItem>"#)
        .await;
    let id = first_message(&found)
        .path(&["RootFolder", "Items", "CalendarItem", "ItemId"])
        .and_then(|e| e.attr("Id"))
        .unwrap()
        .to_owned();
    let (_, reply) = h
        .call_as(Some("bob@example.com"), &format!(r#"<m:GetItem><m:ItemShape><t:BaseShape>AllProperties</t:BaseShape></m:ItemShape><m:ItemIds><t:ItemId Id="{id}"/></m:ItemIds></m:GetItem>"#))
        .await;
    let item = first_message(&reply).path(&["Items", "CalendarItem"]).unwrap();
    assert_eq!(item.child("Subject").map(|e| e.text.as_str()), Some("Sent"));
    assert_eq!(
        item.path(&["Organizer", "Mailbox", "EmailAddress"]).map(|e| e.text.as_str()),
        Some(MAILBOX),
        "the invitee's copy is organized by the sender"
    );
}
