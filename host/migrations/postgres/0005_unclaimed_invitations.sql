-- Meeting invitations a user's run left alone because another Tandem user organizes them
-- (issue 6: meetings come into Siebel only through their organizer). Once the organizer's run
-- has put the meeting into Siebel, the invitee's run links the invitation instead of writing a
-- second copy into the invitee's calendar.
CREATE TABLE unclaimed_items (
    login        TEXT NOT NULL REFERENCES users(login) ON DELETE CASCADE,
    domain       TEXT NOT NULL,
    exchange_id  TEXT NOT NULL,
    PRIMARY KEY (login, domain, exchange_id)
);
