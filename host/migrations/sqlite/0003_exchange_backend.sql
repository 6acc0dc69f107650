-- Per-user Exchange backend (issue 8): `ews` (on-premises, EWS) or `graph` (Exchange Online,
-- Microsoft Graph), so a hybrid organisation runs one Tandem.
ALTER TABLE users ADD COLUMN exchange_backend TEXT NOT NULL DEFAULT 'ews';
