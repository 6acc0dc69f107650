//! Calendar participants end to end (reference §2 "Calendar specifics"): a Siebel meeting's
//! employee and contact participants with an address become its attendees, the meeting is
//! written to every enabled participant's calendar, a participant's copy follows Siebel, and
//! meetings made in Exchange come into Siebel only through an enabled organizer.

use serde_json::json;

use crate::domains::{employee_user, field};
use crate::harness::{Harness, xml_attr, xml_text, xml_texts_in};

const OWNER: (&str, &str) = ("MEETOWNER", "meetowner@example.com");
const GUEST: (&str, &str) = ("MEETGUEST", "meetguest@example.com");

/// The attendees' addresses of a calendar item, lower-cased.
async fn attendees(h: &Harness, mailbox: &str, id: &str) -> anyhow::Result<Vec<String>> {
    let item = h.ews_get_contact(mailbox, id).await?;
    Ok(xml_texts_in(&item, "RequiredAttendees", "EmailAddress").into_iter().map(|a| a.to_ascii_lowercase()).collect())
}

/// The one item of a mailbox's calendar: its id, change key and subject.
async fn only_item(h: &Harness, mailbox: &str) -> anyhow::Result<(String, String, Option<String>)> {
    let items = h.ews_find_in(mailbox, "calendar").await?;
    anyhow::ensure!(items.len() == 1, "{mailbox} holds {} calendar items, not 1", items.len());
    let item = h.ews_get_contact(mailbox, &items[0]).await?;
    let change_key = xml_attr(&item, "ItemId", "ChangeKey").unwrap_or_default();
    Ok((items[0].clone(), change_key, xml_text(&item, "Subject")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siebel_meetings_reach_every_enabled_participant_with_attendees_from_participants_with_email() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let owner = employee_user(&h, OWNER.0, OWNER.1).await?;
    let guest = employee_user(&h, GUEST.0, GUEST.1).await?;
    // A colleague who is not synced, and two contacts, one without an address.
    let colleague = h
        .siebel_insert_into("Employee", json!({"First Name": "Cleo", "Last Name": "Colleague", "EMail Addr": "cleo@example.com"}))
        .await?;
    let customer = h.siebel_insert(json!({"First Name": "Dev", "Last Name": "Customer", "Email Address": "dev@customer.example"})).await?;
    let no_address = h.siebel_insert(json!({"First Name": "Eve", "Last Name": "Offline"})).await?;
    let meeting = h
        .siebel_insert_into(
            "Action",
            json!({"Type": "Meeting", "Display": "Calendar and Activities", "Description": "Kick-off",
                   "Planned": "12/03/2026 09:00:00", "Planned Completion": "12/03/2026 10:00:00",
                   "Primary Owner Id": owner, "Employee Id": format!("{owner},{guest},{colleague}"),
                   "Contact Id": format!("{customer},{no_address}")}),
        )
        .await?;

    let report = h.sync(OWNER.0).await?;
    assert_eq!(report["exchange"]["created"], 1, "{report}");
    let (owner_item, owner_key, _) = only_item(&h, OWNER.1).await?;
    assert_eq!(
        attendees(&h, OWNER.1, &owner_item).await?,
        [GUEST.1, "cleo@example.com", "dev@customer.example"],
        "participants with an address, the owner (the organizer) left out"
    );
    let report = h.sync(GUEST.0).await?;
    assert_eq!(report["exchange"]["created"], 1, "the enabled participant gets the meeting too: {report}");
    let (guest_item, guest_key, subject) = only_item(&h, GUEST.1).await?;
    assert_eq!(subject.as_deref(), Some("Kick-off"));
    h.assert_quiet(OWNER.0).await?;
    h.assert_quiet(GUEST.0).await?;

    // A participant's edit is overwritten: the owner's meeting is Siebel's.
    h.ews_set_field(GUEST.1, &guest_item, &guest_key, "item:Subject", "<t:CalendarItem><t:Subject>Mine now</t:Subject></t:CalendarItem>")
        .await?;
    let report = h.sync(GUEST.0).await?;
    assert_eq!(report["siebel"]["updated"], 0, "{report}");
    assert_eq!(report["exchange"]["updated"], 1, "the copy is restored: {report}");
    assert_eq!(only_item(&h, GUEST.1).await?.2.as_deref(), Some("Kick-off"));
    let record = h.siebel_get_from("Action", &meeting).await?.expect("the meeting");
    assert_eq!(field(&record, "Description"), "Kick-off");

    // The organizer changes the attendees in Outlook: the customer is replaced by a new
    // contact (whose address Siebel holds in other case), and an address Siebel does not
    // know is dropped.
    let newcomer = h.siebel_insert(json!({"First Name": "Fay", "Last Name": "Newcomer", "Email Address": "Fay@Customer.example"})).await?;
    let invitees = [GUEST.1, "cleo@example.com", "fay@customer.example", "stranger@elsewhere.example"]
        .map(|a| format!("<t:Attendee><t:Mailbox><t:EmailAddress>{a}</t:EmailAddress></t:Mailbox></t:Attendee>"))
        .concat();
    h.ews_set_field(
        OWNER.1,
        &owner_item,
        &owner_key,
        "calendar:RequiredAttendees",
        &format!("<t:CalendarItem><t:RequiredAttendees>{invitees}</t:RequiredAttendees></t:CalendarItem>"),
    )
    .await?;
    let report = h.sync(OWNER.0).await?;
    assert_eq!(report["siebel"]["updated"], 1, "{report}");
    let record = h.siebel_get_from("Action", &meeting).await?.expect("the meeting");
    assert_eq!(field(&record, "Employee Id"), format!("{owner},{guest},{colleague}"), "the employees stay");
    assert_eq!(
        field(&record, "Contact Id"),
        format!("{no_address},{newcomer}"),
        "the contact without an address stays, the removed one leaves, the new one joins, the stranger is dropped"
    );
    h.assert_quiet(OWNER.0).await?;

    // The participant deletes the meeting: they leave its participants, and it stays gone.
    h.ews_delete(GUEST.1, &guest_item).await?;
    let report = h.sync(GUEST.0).await?;
    assert_eq!(report["siebel"]["updated"], 1, "{report}");
    assert_eq!(report["siebel"]["deleted"], 0, "a participant's delete never deletes the meeting: {report}");
    let record = h.siebel_get_from("Action", &meeting).await?.expect("the meeting survives");
    assert_eq!(field(&record, "Employee Id"), format!("{owner},{colleague}"));
    h.assert_quiet(GUEST.0).await?;
    assert!(h.ews_find_in(GUEST.1, "calendar").await?.is_empty());
    let report = h.sync(OWNER.0).await?;
    assert_eq!(report["exchange"]["updated"], 1, "the organizer's copy loses the attendee: {report}");
    assert_eq!(attendees(&h, OWNER.1, &owner_item).await?, ["cleo@example.com", "fay@customer.example"]);
    h.validate_ews_traffic()?;
    h.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_meetings_are_imported_only_through_an_enabled_organizer() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let owner = employee_user(&h, OWNER.0, OWNER.1).await?;
    let guest = employee_user(&h, GUEST.0, GUEST.1).await?;
    let invite = |subject: &str, to: &str| {
        format!(
            "<t:CalendarItem><t:Subject>{subject}</t:Subject><t:Start>2026-12-04T14:00:00Z</t:Start>\
             <t:End>2026-12-04T15:00:00Z</t:End><t:RequiredAttendees><t:Attendee><t:Mailbox>\
             <t:EmailAddress>{to}</t:EmailAddress></t:Mailbox></t:Attendee></t:RequiredAttendees></t:CalendarItem>"
        )
    };
    // The owner invites the guest from Outlook; someone outside Tandem invites the owner.
    h.ews_send_meeting(OWNER.1, &invite("Pipeline review", GUEST.1)).await?;
    h.ews_send_meeting("partner@outside.example", &invite("Partner sync", OWNER.1)).await?;
    assert_eq!(h.ews_find_in(GUEST.1, "calendar").await?.len(), 1, "the invitation reached the guest");
    assert_eq!(h.ews_find_in(OWNER.1, "calendar").await?.len(), 2);

    // The guest's run comes first: the invitation is the owner's meeting, so it is left for
    // the owner's run to bring into Siebel.
    let report = h.sync(GUEST.0).await?;
    assert_eq!(report["siebel"]["created"], 0, "an invitee never imports: {report}");
    let report = h.sync(OWNER.0).await?;
    assert_eq!(report["siebel"]["created"], 1, "only the owner's own meeting: {report}");
    let created = h.siebel_query("Action", "[Description] = 'Pipeline review'").await?;
    assert_eq!(created.len(), 1);
    assert_eq!(field(&created[0], "Primary Owner Id"), owner);
    assert_eq!(field(&created[0], "Employee Id"), guest, "the enabled invitee is a participant");
    assert!(
        h.siebel_query("Action", "[Description] = 'Partner sync'").await?.is_empty(),
        "a meeting organized outside Tandem is never imported"
    );

    // The guest's next run finds the invitation it left alone: linked, not copied, and not
    // imported a second time.
    let report = h.sync(GUEST.0).await?;
    assert_eq!(report["siebel"]["created"], 0, "{report}");
    assert_eq!(report["exchange"]["created"], 0, "{report}");
    assert_eq!(report["matched"], 1, "{report}");
    assert_eq!(h.ews_find_in(GUEST.1, "calendar").await?.len(), 1);
    assert_eq!(h.siebel_query("Action", "[Description] = 'Pipeline review'").await?.len(), 1);
    h.assert_quiet(OWNER.0).await?;
    h.assert_quiet(GUEST.0).await?;
    assert_eq!(h.ews_find_in(OWNER.1, "calendar").await?.len(), 2, "the partner's meeting is left alone");
    h.stop().await;
    Ok(())
}
