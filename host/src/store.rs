//! The state store: the user map, sync lists, links, cursors and run history, in SQLite.
//!
//! Every other module reaches the database through this one. Writes that belong together
//! (a link and the cursor it depends on, an intent and its resolution) go in one
//! transaction.

use std::path::Path;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::record::Fields;

/// What went wrong in the state store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("cannot open the state database at {path}: {source}; check that the folder exists and is writable")]
    Open { path: String, source: sqlx::Error },
    #[error("cannot bring the state database up to date: {0}; was it written by a newer Tandem?")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("state database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the state database holds a value that cannot be read ({what}): {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("no user with login {0}; add it with POST /api/v1/users")]
    UnknownUser(String),
    #[error("a user with login {0} exists already")]
    DuplicateUser(String),
}

/// How a domain syncs for a user: both ways, Siebel to Exchange only, or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncLevel {
    Full,
    Export,
    None,
}

/// The sync level of each domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domains {
    #[serde(default = "full")]
    pub contacts: SyncLevel,
    #[serde(default = "export")]
    pub employees: SyncLevel,
    #[serde(default = "full")]
    pub personal_contacts: SyncLevel,
    #[serde(default = "full")]
    pub calendar: SyncLevel,
    #[serde(default = "full")]
    pub tasks: SyncLevel,
}

fn full() -> SyncLevel {
    SyncLevel::Full
}

fn export() -> SyncLevel {
    SyncLevel::Export
}

impl Default for Domains {
    fn default() -> Self {
        Self {
            contacts: SyncLevel::Full,
            employees: SyncLevel::Export,
            personal_contacts: SyncLevel::Full,
            calendar: SyncLevel::Full,
            tasks: SyncLevel::Full,
        }
    }
}

/// One row of the user map: a Siebel login and the mailbox it syncs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub login: String,
    pub mailbox: String,
    pub enabled: bool,
    pub domains: Domains,
}

/// A linked pair: what both sides looked like when they last agreed.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub login: String,
    pub domain: String,
    pub siebel_id: String,
    pub exchange_id: String,
    pub change_key: String,
    pub sync_id: String,
    pub siebel_updated: Option<String>,
    pub siebel_hash: String,
    pub exchange_hash: String,
    pub base: Fields,
}

/// A finished run, as kept in the history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub id: i64,
    pub login: String,
    pub started_at: String,
    pub finished_at: String,
    pub status: String,
    pub report: serde_json::Value,
}

/// A write the engine is about to make; see the `intents` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub sync_id: String,
    pub login: String,
    pub domain: String,
    pub operation: String,
    pub siebel_id: Option<String>,
    pub exchange_id: Option<String>,
}

/// Handle to the state database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

fn now() -> String {
    Utc::now().to_rfc3339()
}

impl Store {
    /// Opens (creating when absent) `tandem.db` in `dir` and applies the migrations.
    pub async fn open_dir(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("tandem.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    pub async fn add_user(&self, user: &User) -> Result<(), StoreError> {
        let domains = serde_json::to_string(&user.domains)
            .map_err(|e| StoreError::Corrupt { what: "domains", detail: e.to_string() })?;
        let result = sqlx::query(
            "INSERT INTO users (login, mailbox, enabled, domains, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&user.login)
        .bind(&user.mailbox)
        .bind(user.enabled)
        .bind(domains)
        .bind(now())
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::DuplicateUser(user.login.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query("SELECT login, mailbox, enabled, domains FROM users ORDER BY login")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn user(&self, login: &str) -> Result<User, StoreError> {
        let row = sqlx::query("SELECT login, mailbox, enabled, domains FROM users WHERE login = ?")
            .bind(login)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::UnknownUser(login.to_owned()))?;
        user_from_row(&row)
    }

    /// Puts a record on the user's sync list; false when it was there already.
    pub async fn add_to_sync_list(&self, login: &str, siebel_id: &str) -> Result<bool, StoreError> {
        self.user(login).await?;
        let done = sqlx::query(
            "INSERT INTO sync_list (login, siebel_id, added_at) VALUES (?, ?, ?)
             ON CONFLICT (login, siebel_id) DO NOTHING",
        )
        .bind(login)
        .bind(siebel_id)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Takes a record off the user's sync list; false when it was not on it.
    pub async fn remove_from_sync_list(&self, login: &str, siebel_id: &str) -> Result<bool, StoreError> {
        self.user(login).await?;
        let done = sqlx::query("DELETE FROM sync_list WHERE login = ? AND siebel_id = ?")
            .bind(login)
            .bind(siebel_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The user's sync list: `(siebel_id, added_at)`, oldest first.
    pub async fn sync_list(&self, login: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT siebel_id, added_at FROM sync_list WHERE login = ? ORDER BY added_at, siebel_id",
        )
        .bind(login)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|row| (row.get("siebel_id"), row.get("added_at"))).collect())
    }

    pub async fn links(&self, login: &str, domain: &str) -> Result<Vec<Link>, StoreError> {
        let rows = sqlx::query("SELECT * FROM links WHERE login = ? AND domain = ? ORDER BY siebel_id")
            .bind(login)
            .bind(domain)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(link_from_row).collect()
    }

    /// Inserts or replaces the link of a pair, and clears the intent that led to it.
    pub async fn save_link(&self, link: &Link) -> Result<(), StoreError> {
        let base = serde_json::to_string(&link.base)
            .map_err(|e| StoreError::Corrupt { what: "link base", detail: e.to_string() })?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO links (login, domain, siebel_id, exchange_id, change_key, sync_id,
                                siebel_updated, siebel_hash, exchange_hash, base, synced_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (login, domain, siebel_id) DO UPDATE SET
                exchange_id = excluded.exchange_id, change_key = excluded.change_key,
                sync_id = excluded.sync_id, siebel_updated = excluded.siebel_updated,
                siebel_hash = excluded.siebel_hash, exchange_hash = excluded.exchange_hash,
                base = excluded.base, synced_at = excluded.synced_at",
        )
        .bind(&link.login)
        .bind(&link.domain)
        .bind(&link.siebel_id)
        .bind(&link.exchange_id)
        .bind(&link.change_key)
        .bind(&link.sync_id)
        .bind(&link.siebel_updated)
        .bind(&link.siebel_hash)
        .bind(&link.exchange_hash)
        .bind(base)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM intents WHERE sync_id = ?").bind(&link.sync_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_link(&self, login: &str, domain: &str, siebel_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM links WHERE login = ? AND domain = ? AND siebel_id = ?")
            .bind(login)
            .bind(domain)
            .bind(siebel_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a write about to be made (before the remote call).
    pub async fn record_intent(&self, intent: &Intent) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO intents (sync_id, login, domain, operation, siebel_id, exchange_id, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sync_id) DO NOTHING",
        )
        .bind(&intent.sync_id)
        .bind(&intent.login)
        .bind(&intent.domain)
        .bind(&intent.operation)
        .bind(&intent.siebel_id)
        .bind(&intent.exchange_id)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn intents(&self, login: &str) -> Result<Vec<Intent>, StoreError> {
        let rows = sqlx::query("SELECT * FROM intents WHERE login = ? ORDER BY created_at")
            .bind(login)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| Intent {
                sync_id: row.get("sync_id"),
                login: row.get("login"),
                domain: row.get("domain"),
                operation: row.get("operation"),
                siebel_id: row.get("siebel_id"),
                exchange_id: row.get("exchange_id"),
            })
            .collect())
    }

    pub async fn clear_intent(&self, sync_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM intents WHERE sync_id = ?").bind(sync_id).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn folder_cursor(&self, login: &str, folder: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT sync_state FROM folder_cursors WHERE login = ? AND folder = ?")
            .bind(login)
            .bind(folder)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.get("sync_state")))
    }

    /// Saves a folder's SyncState; call only once the batch it covers is applied.
    pub async fn save_folder_cursor(&self, login: &str, folder: &str, sync_state: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO folder_cursors (login, folder, sync_state) VALUES (?, ?, ?)
             ON CONFLICT (login, folder) DO UPDATE SET sync_state = excluded.sync_state",
        )
        .bind(login)
        .bind(folder)
        .bind(sync_state)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn record_run(
        &self,
        login: &str,
        started_at: &str,
        status: &str,
        report: &serde_json::Value,
    ) -> Result<i64, StoreError> {
        let done = sqlx::query(
            "INSERT INTO runs (login, started_at, finished_at, status, report) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(login)
        .bind(started_at)
        .bind(now())
        .bind(status)
        .bind(report.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.last_insert_rowid())
    }

    pub async fn last_run(&self, login: &str) -> Result<Option<RunRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM runs WHERE login = ? ORDER BY id DESC LIMIT 1")
            .bind(login)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    pub async fn record_conflict(
        &self,
        link: &Link,
        outcome: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO conflicts (login, domain, siebel_id, exchange_id, outcome, detail, at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&link.login)
        .bind(&link.domain)
        .bind(&link.siebel_id)
        .bind(&link.exchange_id)
        .bind(outcome)
        .bind(detail)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn user_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<User, StoreError> {
    let domains: String = row.get("domains");
    Ok(User {
        login: row.get("login"),
        mailbox: row.get("mailbox"),
        enabled: row.get("enabled"),
        domains: serde_json::from_str(&domains)
            .map_err(|e| StoreError::Corrupt { what: "user domains", detail: e.to_string() })?,
    })
}

fn link_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Link, StoreError> {
    let base: String = row.get("base");
    Ok(Link {
        login: row.get("login"),
        domain: row.get("domain"),
        siebel_id: row.get("siebel_id"),
        exchange_id: row.get("exchange_id"),
        change_key: row.get("change_key"),
        sync_id: row.get("sync_id"),
        siebel_updated: row.get("siebel_updated"),
        siebel_hash: row.get("siebel_hash"),
        exchange_hash: row.get("exchange_hash"),
        base: serde_json::from_str(&base)
            .map_err(|e| StoreError::Corrupt { what: "link base", detail: e.to_string() })?,
    })
}

fn run_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<RunRecord, StoreError> {
    let report: String = row.get("report");
    Ok(RunRecord {
        id: row.get("id"),
        login: row.get("login"),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        status: row.get("status"),
        report: serde_json::from_str(&report)
            .map_err(|e| StoreError::Corrupt { what: "run report", detail: e.to_string() })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(login: &str) -> User {
        User {
            login: login.into(),
            mailbox: format!("{}@example.com", login.to_lowercase()),
            enabled: true,
            domains: Domains::default(),
        }
    }

    #[tokio::test]
    async fn users_sync_list_and_links_round_trip() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open_dir(dir.path()).await?;
        store.add_user(&user("JSMITH")).await?;
        assert!(matches!(store.add_user(&user("JSMITH")).await, Err(StoreError::DuplicateUser(_))));
        assert_eq!(store.users().await?, vec![user("JSMITH")]);

        assert!(store.add_to_sync_list("JSMITH", "1-A").await?);
        assert!(!store.add_to_sync_list("JSMITH", "1-A").await?);
        assert!(matches!(store.add_to_sync_list("NOBODY", "1-A").await, Err(StoreError::UnknownUser(_))));
        assert_eq!(store.sync_list("JSMITH").await?.len(), 1);

        let mut base = Fields::new();
        base.insert("GivenName".into(), "Ann".into());
        let link = Link {
            login: "JSMITH".into(),
            domain: "contacts".into(),
            siebel_id: "1-A".into(),
            exchange_id: "AAA=".into(),
            change_key: "CK1".into(),
            sync_id: "s-1".into(),
            siebel_updated: Some("11/25/2026 10:00:00".into()),
            siebel_hash: "h1".into(),
            exchange_hash: "h2".into(),
            base,
        };
        store
            .record_intent(&Intent {
                sync_id: "s-1".into(),
                login: "JSMITH".into(),
                domain: "contacts".into(),
                operation: "create-exchange".into(),
                siebel_id: Some("1-A".into()),
                exchange_id: None,
            })
            .await?;
        assert_eq!(store.intents("JSMITH").await?.len(), 1);
        store.save_link(&link).await?;
        assert!(store.intents("JSMITH").await?.is_empty(), "saving the link clears its intent");
        assert_eq!(store.links("JSMITH", "contacts").await?, vec![link.clone()]);

        // Reopening keeps everything (WAL, migrations idempotent).
        drop(store);
        let store = Store::open_dir(dir.path()).await?;
        assert_eq!(store.links("JSMITH", "contacts").await?, vec![link]);
        assert!(store.remove_from_sync_list("JSMITH", "1-A").await?);
        assert!(store.sync_list("JSMITH").await?.is_empty());
        Ok(())
    }
}
