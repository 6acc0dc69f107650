#!/usr/bin/env python3
"""exchangelib interoperability check for Tandem's EWS emulator (issue 5).

Usage: exchangelib_roundtrip.py ENDPOINT USER PASSWORD MAILBOX

With Basic credentials and impersonation, creates, lists, syncs (sync_items), updates and
deletes a contact, a calendar item (attendees, weekly recurrence) and a task. Exits non-zero
with a message on the first thing that does not work. sim/tests/exchangelib.rs runs it.
"""
import datetime
import sys
from decimal import Decimal

from exchangelib import (
    BASIC,
    IMPERSONATION,
    Account,
    Attendee,
    Build,
    CalendarItem,
    Configuration,
    Contact,
    Credentials,
    EWSDate,
    EWSDateTime,
    EWSTimeZone,
    Mailbox,
    Task,
    Version,
)
from exchangelib.indexed_properties import EmailAddress, PhoneNumber
from exchangelib.recurrence import Recurrence, WeeklyPattern


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def sync(folder):
    """All changes since the folder's last sync state, as (change_type, id) pairs."""
    changes = []
    for change_type, item in folder.sync_items():
        item_id = item.id if hasattr(item, "id") else item
        changes.append((change_type, item_id))
    return changes


def round_trip(name, folder, make, edit, verify_edit, save_args, delete_args):
    initial = sync(folder)
    print(f"{name}: initial sync saw {len(initial)} changes")
    item = make(folder)
    item.save(**save_args)
    check(item.id and item.changekey, f"{name}: save() gave no id/changekey")
    print(f"{name}: created {item.id}")

    listed = [i.id for i in folder.all()]
    check(item.id in listed, f"{name}: all() does not list the new item: {listed}")
    check(folder.all().count() == len(listed), f"{name}: count() disagrees with all()")

    created = sync(folder)
    check(("create", item.id) in created, f"{name}: sync_items did not report the create: {created}")

    edit(item)
    item.save(update_fields=edit.fields, **save_args)
    fetched = folder.get(id=item.id)
    verify_edit(fetched)
    updated = sync(folder)
    check(any(t == "update" and i == item.id for t, i in updated),
          f"{name}: sync_items did not report the update: {updated}")

    item.delete(**delete_args)
    deleted = sync(folder)
    check(any(t == "delete" for t, _ in deleted), f"{name}: sync_items did not report the delete: {deleted}")
    remaining = [i.id for i in folder.all()]
    check(item.id not in remaining, f"{name}: the deleted item is still listed")
    print(f"{name}: ok")


def main():
    endpoint, user, password, mailbox = sys.argv[1:5]
    utc = EWSTimeZone("UTC")
    config = Configuration(
        service_endpoint=endpoint,
        credentials=Credentials(user, password),
        auth_type=BASIC,
        version=Version(build=Build(15, 1, 2507, 6)),
    )
    account = Account(
        primary_smtp_address=mailbox,
        config=config,
        autodiscover=False,
        access_type=IMPERSONATION,
        default_timezone=utc,
    )

    def make_contact(folder):
        return Contact(
            account=account,
            folder=folder,
            display_name="Tanja Plate",
            given_name="Tanja",
            surname="Plate",
            company_name="Blue Yonder Airlines",
            job_title="Buyer",
            email_addresses=[EmailAddress(email="tplate@example.com", label="EmailAddress1")],
            phone_numbers=[PhoneNumber(label="BusinessPhone", phone_number="+1 425 555 0199")],
        )

    def edit_contact(item):
        item.job_title = "Head of Purchasing"
    edit_contact.fields = ["job_title"]

    def verify_contact(item):
        check(item.job_title == "Head of Purchasing", f"contact: job_title is {item.job_title!r}")
        check(item.given_name == "Tanja", f"contact: given_name is {item.given_name!r}")
        emails = [e.email for e in (item.email_addresses or [])]
        check("tplate@example.com" in emails, f"contact: email addresses are {emails}")

    round_trip("contact", account.contacts, make_contact, edit_contact, verify_contact, {}, {})

    start = EWSDateTime(2026, 3, 2, 9, 0, tzinfo=utc)

    def make_event(folder):
        return CalendarItem(
            account=account,
            folder=folder,
            subject="Quarterly review",
            start=start,
            end=start + datetime.timedelta(hours=1),
            location="Room 4",
            body="Agenda: numbers",
            required_attendees=[Attendee(mailbox=Mailbox(email_address="bob@example.com"), response_type="Unknown")],
            optional_attendees=[Attendee(mailbox=Mailbox(email_address="cy@example.com"), response_type="Unknown")],
            recurrence=Recurrence(
                pattern=WeeklyPattern(interval=1, weekdays=[1, 3], first_day_of_week=1),
                start=EWSDate(2026, 3, 2),
                number=10,
            ),
        )

    def edit_event(item):
        item.location = "Room 7"
    edit_event.fields = ["location"]

    def verify_event(item):
        check(item.location == "Room 7", f"calendar: location is {item.location!r}")
        check(item.subject == "Quarterly review", f"calendar: subject is {item.subject!r}")
        check(item.start == start, f"calendar: start is {item.start!r}")
        attendees = [a.mailbox.email_address for a in (item.required_attendees or [])]
        check(attendees == ["bob@example.com"], f"calendar: required attendees are {attendees}")
        check(item.recurrence is not None and item.recurrence.boundary.number == 10,
              f"calendar: recurrence is {item.recurrence!r}")

    round_trip(
        "calendar", account.calendar, make_event, edit_event, verify_event,
        {"send_meeting_invitations": "SendToNone"}, {"send_meeting_cancellations": "SendToNone"},
    )

    def make_task(folder):
        return Task(
            account=account,
            folder=folder,
            subject="Call Tanja",
            start_date=EWSDate(2026, 3, 1),
            due_date=EWSDate(2026, 3, 5),
            status="InProgress",
            percent_complete=Decimal(50),
            importance="High",
        )

    def edit_task(item):
        item.percent_complete = Decimal(80)
    edit_task.fields = ["percent_complete"]

    def verify_task(item):
        check(item.percent_complete == Decimal(80), f"task: percent_complete is {item.percent_complete!r}")
        check(item.subject == "Call Tanja", f"task: subject is {item.subject!r}")
        check(item.status == "InProgress", f"task: status is {item.status!r}")

    round_trip(
        "task", account.tasks, make_task, edit_task, verify_task,
        {}, {"affected_task_occurrences": "AllOccurrences"},
    )
    print("exchangelib interop: all folders ok")


if __name__ == "__main__":
    main()
