#!/usr/bin/env python3
"""exchangelib interoperability check for Tandem's EWS emulator (issue 5).

Usage: exchangelib_roundtrip.py ENDPOINT USER PASSWORD MAILBOX

With Basic credentials and impersonation, creates, lists, syncs (sync_items), updates and
deletes a contact, a calendar item (attendees, weekly recurrence) and a task; expands a
recurring series with calendar.view(), deletes and changes single occurrences. Exits non-zero
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


def check_recurring_view(account, utc):
    """calendar.view() expands a recurring series into occurrences; deleting and changing
    single occurrences shows in the view and on the master; sync_items sees only the master."""
    folder = account.calendar
    sync(folder)
    first = EWSDateTime(2026, 4, 6, 9, 0, tzinfo=utc)  # a Monday
    master = CalendarItem(
        account=account,
        folder=folder,
        subject="Weekly sync",
        start=first,
        end=first + datetime.timedelta(hours=1),
        recurrence=Recurrence(
            pattern=WeeklyPattern(interval=1, weekdays=[1, 3], first_day_of_week=1),
            start=EWSDate(2026, 4, 6),
            number=6,
        ),
    )
    master.save(send_meeting_invitations="SendToNone")
    window_start = EWSDateTime(2026, 4, 1, 0, 0, tzinfo=utc)
    window_end = EWSDateTime(2026, 5, 1, 0, 0, tzinfo=utc)

    def series():
        return [i for i in folder.view(start=window_start, end=window_end) if i.id != master.id
                and (i.subject or "").startswith("Weekly sync")]

    occurrences = series()
    starts = [o.start for o in occurrences]
    expected = [EWSDateTime(2026, 4, d, 9, 0, tzinfo=utc) for d in (6, 8, 13, 15, 20, 22)]
    check(starts == expected, f"recurring: view shows {starts}, expected {expected}")
    check(all(o.type == "Occurrence" for o in occurrences),
          f"recurring: types are {[o.type for o in occurrences]}")
    check(len({o.id for o in occurrences}) == 6, "recurring: occurrence ids are not distinct")
    print(f"recurring: view expanded the series into {len(occurrences)} occurrences")

    occurrences[1].delete(send_meeting_cancellations="SendToNone")
    occurrences = series()
    starts = [o.start for o in occurrences]
    check(expected[1] not in starts and len(starts) == 5,
          f"recurring: the deleted occurrence is still shown: {starts}")

    moved = occurrences[2]
    moved.subject = "Weekly sync (changed)"
    moved.save(update_fields=["subject"], send_meeting_invitations="SendToNone")
    occurrences = series()
    changed = [o for o in occurrences if o.subject == "Weekly sync (changed)"]
    check(len(changed) == 1 and changed[0].type == "Exception" and changed[0].start == expected[3],
          f"recurring: the changed occurrence is {[(o.subject, o.type, o.start) for o in occurrences]}")

    master.refresh()
    check(master.type == "RecurringMaster", f"recurring: master type is {master.type!r}")
    check(master.first_occurrence is not None and master.first_occurrence.start == expected[0],
          f"recurring: first occurrence is {master.first_occurrence!r}")
    check(master.last_occurrence is not None and master.last_occurrence.start == expected[5],
          f"recurring: last occurrence is {master.last_occurrence!r}")
    deleted = [d.start for d in (master.deleted_occurrences or [])]
    check(deleted == [expected[1]], f"recurring: deleted occurrences are {deleted}")
    modified = [m.start for m in (master.modified_occurrences or [])]
    check(modified == [expected[3]], f"recurring: modified occurrences are {modified}")

    fourth = master.occurrence(4)
    fourth.refresh()
    check(fourth.type == "Exception" and fourth.subject == "Weekly sync (changed)",
          f"recurring: occurrence 4 is {fourth.type!r} {fourth.subject!r}")
    fifth = master.occurrence(5)
    fifth.refresh()
    check(fifth.type == "Occurrence" and fifth.start == expected[4], f"recurring: occurrence 5 starts {fifth.start}")
    back = occurrences[0].recurring_master()
    back.refresh()
    check(back.id == master.id, "recurring: recurring_master() did not lead back to the master")

    changes = sync(folder)
    check(changes and all(item_id == master.id for _, item_id in changes),
          f"recurring: sync_items reported more than the master: {changes}")
    master.delete(send_meeting_cancellations="SendToNone")
    check(not series(), "recurring: occurrences remain after deleting the master")
    print("recurring: ok")


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

    check_recurring_view(account, utc)

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
