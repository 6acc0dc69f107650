//! The state store: the user map, sync lists, links, cursors and run history, in SQLite
//! (embedded, the default) or PostgreSQL (shared by several nodes), through sqlx's `Any`
//! driver and one set of migrations per engine.
//!
//! Every other module reaches the database through this one. Writes that belong together
//! (a link and the cursor it depends on, an intent and its resolution) go in one
//! transaction.

use std::collections::HashSet;
use std::path::Path;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

use sqlx::Row;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::AnyPool;

use crate::domain::{Domain, ExchangeBackend, Intent, IntentKind, Link, User};

/// What went wrong in the state store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("cannot open the state database at {path}: {source}; {}", open_hint(path))]
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

/// What [`Store::inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseState {
    pub backend: Backend,
    /// False: the SQLite file is not there yet (`tandem serve` creates it).
    pub exists: bool,
    /// Migrations of this build already applied, and not yet applied (`tandem serve`
    /// applies them at start).
    pub applied: usize,
    pub pending: usize,
    /// Migrations applied that this build does not know: a newer Tandem used the database.
    pub unknown: usize,
}

/// Which database engine holds the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded, one node (the default): `tandem.db` in the state folder, WAL mode.
    Sqlite,
    /// Shared by several nodes: users are spread over them by leases.
    Postgres,
}

/// Handle to the state database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

fn now() -> String {
    Utc::now().to_rfc3339()
}

/// Unix time in milliseconds, the unit of the scheduling columns.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl Store {
    /// Opens (creating when absent) `tandem.db` in `dir` and applies the migrations.
    pub async fn open_dir(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("tandem.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Self::open_url(&url).await.map_err(|error| match error {
            StoreError::Open { source, .. } => StoreError::Open { path: path.display().to_string(), source },
            other => other,
        })
    }

    /// Opens a database by URL: `sqlite://PATH?mode=rwc` or `postgres://USER:PASS@HOST/DB`,
    /// and applies the migrations of that engine.
    pub async fn open_url(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let shown = redact_url(url);
        let mut options = AnyPoolOptions::new().max_connections(if backend == Backend::Sqlite { 4 } else { 8 });
        if backend == Backend::Sqlite {
            options = options.after_connect(|connection, _| {
                Box::pin(async move {
                    use sqlx::Executor as _;
                    connection
                        .execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await.map_err(|source| StoreError::Open { path: shown, source })?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Self { pool, backend })
    }

    /// Looks at a database without changing it: connects (SQLite read-only; a missing file is
    /// reported, not created) and compares the migrations applied with this build's. For
    /// `tandem doctor`.
    pub async fn inspect(url: Option<&str>, state_dir: &Path) -> Result<DatabaseState, StoreError> {
        sqlx::any::install_default_drivers();
        let (url, backend) = match url {
            Some(url) if url.starts_with("postgres:") || url.starts_with("postgresql:") => (url.to_owned(), Backend::Postgres),
            Some(url) => (url.to_owned(), Backend::Sqlite),
            None => {
                let path = state_dir.join("tandem.db");
                if !path.exists() {
                    return Ok(DatabaseState { backend: Backend::Sqlite, exists: false, applied: 0, pending: 0, unknown: 0 });
                }
                (format!("sqlite://{}?mode=ro", path.display()), Backend::Sqlite)
            }
        };
        let shown = redact_url(&url);
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(&url)
            .await
            .map_err(|source| StoreError::Open { path: shown, source })?;
        let migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        let known: HashSet<i64> = migrator.iter().map(|m| m.version).collect();
        // No migrations table yet: a database `tandem serve` has not set up.
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
        pool.close().await;
        let applied_known = applied.iter().filter(|v| known.contains(v)).count();
        Ok(DatabaseState {
            backend,
            exists: true,
            applied: applied_known,
            pending: known.len() - applied_known,
            unknown: applied.len() - applied_known,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The statement in this engine's dialect: `?` placeholders become `$1, $2, …` for
    /// PostgreSQL (no statement here has a `?` inside a literal).
    fn sql<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.backend == Backend::Sqlite || !text.contains('?') {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len() + 8);
        let mut index = 0;
        for c in text.chars() {
            if c == '?' {
                index += 1;
                out.push('$');
                out.push_str(&index.to_string());
            } else {
                out.push(c);
            }
        }
        Cow::Owned(out)
    }

    pub async fn add_user(&self, user: &User) -> Result<(), StoreError> {
        let domains = serde_json::to_string(&user.domains)
            .map_err(|e| StoreError::Corrupt { what: "domains", detail: e.to_string() })?;
        let result = sqlx::query(&self.sql(
            "INSERT INTO users (login, mailbox, enabled, domains, exchange_backend, extract_start_date, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)"),
        )
        .bind(&user.login)
        .bind(&user.mailbox)
        .bind(i64::from(user.enabled))
        .bind(domains)
        .bind(user.backend.as_str())
        .bind(user.extract_start_date.clone())
        .bind(now())
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => self.ensure_schedule().await,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::DuplicateUser(user.login.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(&self.sql("SELECT login, mailbox, enabled, domains, exchange_backend, extract_start_date FROM users ORDER BY login"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn user(&self, login: &str) -> Result<User, StoreError> {
        let row = sqlx::query(&self.sql("SELECT login, mailbox, enabled, domains, exchange_backend, extract_start_date FROM users WHERE login = ?"))
            .bind(login)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::UnknownUser(login.to_owned()))?;
        user_from_row(&row)
    }

    /// Puts a record on the user's sync list; false when it was there already.
    pub async fn add_to_sync_list(&self, login: &str, siebel_id: &str) -> Result<bool, StoreError> {
        self.user(login).await?;
        let done = sqlx::query(&self.sql(
            "INSERT INTO sync_list (login, siebel_id, added_at) VALUES (?, ?, ?)
             ON CONFLICT (login, siebel_id) DO NOTHING"),
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
        let done = sqlx::query(&self.sql("DELETE FROM sync_list WHERE login = ? AND siebel_id = ?"))
            .bind(login)
            .bind(siebel_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The user's sync list: `(siebel_id, added_at)`, oldest first.
    pub async fn sync_list(&self, login: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(&self.sql(
            "SELECT siebel_id, added_at FROM sync_list WHERE login = ? ORDER BY added_at, siebel_id"),
        )
        .bind(login)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|row| (row.get("siebel_id"), row.get("added_at"))).collect())
    }

    pub async fn links(&self, login: &str, domain: &str) -> Result<Vec<Link>, StoreError> {
        let rows = sqlx::query(&self.sql("SELECT * FROM links WHERE login = ? AND domain = ? ORDER BY siebel_id"))
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
        sqlx::query(&self.sql(
            "INSERT INTO links (login, domain, siebel_id, exchange_id, change_key, sync_id,
                                siebel_updated, siebel_hash, exchange_hash, base, synced_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (login, domain, siebel_id) DO UPDATE SET
                exchange_id = excluded.exchange_id, change_key = excluded.change_key,
                sync_id = excluded.sync_id, siebel_updated = excluded.siebel_updated,
                siebel_hash = excluded.siebel_hash, exchange_hash = excluded.exchange_hash,
                base = excluded.base, synced_at = excluded.synced_at"),
        )
        .bind(&link.login)
        .bind(link.domain.name())
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
        sqlx::query(&self.sql("DELETE FROM intents WHERE sync_id = ?")).bind(&link.sync_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_link(&self, login: &str, domain: &str, siebel_id: &str) -> Result<(), StoreError> {
        sqlx::query(&self.sql("DELETE FROM links WHERE login = ? AND domain = ? AND siebel_id = ?"))
            .bind(login)
            .bind(domain)
            .bind(siebel_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a write about to be made (before the remote call).
    pub async fn record_intent(&self, intent: &Intent) -> Result<(), StoreError> {
        sqlx::query(&self.sql(
            "INSERT INTO intents (sync_id, login, domain, operation, siebel_id, exchange_id, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sync_id) DO NOTHING"),
        )
        .bind(&intent.sync_id)
        .bind(&intent.login)
        .bind(intent.domain.name())
        .bind(intent.operation.as_str())
        .bind(&intent.siebel_id)
        .bind(&intent.exchange_id)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn intents(&self, login: &str) -> Result<Vec<Intent>, StoreError> {
        let rows = sqlx::query(&self.sql("SELECT * FROM intents WHERE login = ? ORDER BY created_at"))
            .bind(login)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let operation: String = row.get("operation");
                Ok(Intent {
                    sync_id: row.get("sync_id"),
                    login: row.get("login"),
                    domain: domain_from_row(row)?,
                    operation: IntentKind::parse(&operation).ok_or_else(|| StoreError::Corrupt {
                        what: "intent operation",
                        detail: format!("`{operation}` is no operation Tandem writes"),
                    })?,
                    siebel_id: row.get("siebel_id"),
                    exchange_id: row.get("exchange_id"),
                })
            })
            .collect()
    }

    pub async fn clear_intent(&self, sync_id: &str) -> Result<(), StoreError> {
        sqlx::query(&self.sql("DELETE FROM intents WHERE sync_id = ?")).bind(sync_id).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn folder_cursor(&self, login: &str, folder: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT sync_state FROM folder_cursors WHERE login = ? AND folder = ?"))
            .bind(login)
            .bind(folder)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.get("sync_state")))
    }

    /// Saves a folder's SyncState; call only once the batch it covers is applied.
    pub async fn save_folder_cursor(&self, login: &str, folder: &str, sync_state: &str) -> Result<(), StoreError> {
        sqlx::query(&self.sql(
            "INSERT INTO folder_cursors (login, folder, sync_state) VALUES (?, ?, ?)
             ON CONFLICT (login, folder) DO UPDATE SET sync_state = excluded.sync_state"),
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
        let row = sqlx::query(&self.sql(
            "INSERT INTO runs (login, started_at, finished_at, status, report) VALUES (?, ?, ?, ?, ?)
             RETURNING id",
        ))
        .bind(login)
        .bind(started_at)
        .bind(now())
        .bind(status)
        .bind(report.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get("id"))
    }

    pub async fn last_run(&self, login: &str) -> Result<Option<RunRecord>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT * FROM runs WHERE login = ? ORDER BY id DESC LIMIT 1"))
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
        sqlx::query(&self.sql(
            "INSERT INTO conflicts (login, domain, siebel_id, exchange_id, outcome, detail, at)
             VALUES (?, ?, ?, ?, ?, ?, ?)"),
        )
        .bind(&link.login)
        .bind(link.domain.name())
        .bind(&link.siebel_id)
        .bind(&link.exchange_id)
        .bind(outcome)
        .bind(detail)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// For each of `siebel_ids` on some enabled user's sync list: `(siebel_id, login)` pairs.
    /// Used by Siebel change detection to wake only the users a changed record concerns.
    pub async fn logins_by_sync_list_ids(&self, siebel_ids: &[String]) -> Result<Vec<(String, String)>, StoreError> {
        let mut pairs = Vec::new();
        // SQLite limits bound parameters per statement; 500 stays well under it.
        for chunk in siebel_ids.chunks(500) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT s.siebel_id, s.login FROM sync_list s JOIN users u ON u.login = s.login
                 WHERE u.enabled = 1 AND s.siebel_id IN ({placeholders}) ORDER BY s.siebel_id, s.login"
            );
            let sql = self.sql(&sql);
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            let rows = query.fetch_all(&self.pool).await?;
            pairs.extend(rows.iter().map(|row| (row.get("siebel_id"), row.get("login"))));
        }
        Ok(pairs)
    }

    /// Every Siebel Id on any enabled user's sync list, once each, sorted.
    pub async fn all_sync_list_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(&self.sql(
            "SELECT DISTINCT s.siebel_id FROM sync_list s JOIN users u ON u.login = s.login
             WHERE u.enabled = 1 ORDER BY s.siebel_id"),
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|row| row.get("siebel_id")).collect())
    }

    /// `(login, siebel_id)` of every link in the given domains, for reconciling Id sets.
    pub async fn linked_siebel_ids(&self, domains: &[&str]) -> Result<Vec<(String, String)>, StoreError> {
        let mut pairs = Vec::new();
        for domain in domains {
            let rows = sqlx::query(&self.sql("SELECT login, siebel_id FROM links WHERE domain = ? ORDER BY login, siebel_id"))
                .bind(domain)
                .fetch_all(&self.pool)
                .await?;
            pairs.extend(rows.iter().map(|row| (row.get("login"), row.get("siebel_id"))));
        }
        Ok(pairs)
    }

    /// `(login, siebel_id)` of the links in `domains` whose Siebel Id is one of `siebel_ids`.
    pub async fn linked_siebel_ids_among(
        &self,
        domains: &[&str],
        siebel_ids: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut pairs = Vec::new();
        for domain in domains {
            for chunk in siebel_ids.chunks(500) {
                let placeholders = vec!["?"; chunk.len()].join(", ");
                let sql = format!(
                    "SELECT login, siebel_id FROM links WHERE domain = ? AND siebel_id IN ({placeholders})
                     ORDER BY login, siebel_id"
                );
                let sql = self.sql(&sql);
                let mut query = sqlx::query(&sql).bind(*domain);
                for id in chunk {
                    query = query.bind(id);
                }
                let rows = query.fetch_all(&self.pool).await?;
                pairs.extend(rows.iter().map(|row| (row.get("login"), row.get("siebel_id"))));
            }
        }
        Ok(pairs)
    }

    /// The saved Siebel change-feed state of a business component (`"BO/BC"`), if any.
    pub async fn siebel_feed_state(&self, component: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT state FROM siebel_feed WHERE component = ?"))
            .bind(component)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.get("state")))
    }

    /// Saves the change-feed state of a component; call only after its changes were handed on.
    pub async fn save_siebel_feed_state(&self, component: &str, state: &str) -> Result<(), StoreError> {
        sqlx::query(&self.sql(
            "INSERT INTO siebel_feed (component, state, saved_at) VALUES (?, ?, ?)
             ON CONFLICT (component) DO UPDATE SET state = excluded.state, saved_at = excluded.saved_at"),
        )
        .bind(component)
        .bind(state)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    let domains: String = row.get("domains");
    Ok(User {
        login: row.get("login"),
        mailbox: row.get("mailbox"),
        enabled: row.get::<i64, _>("enabled") != 0,
        domains: serde_json::from_str(&domains)
            .map_err(|e| StoreError::Corrupt { what: "user domains", detail: e.to_string() })?,
        backend: match row.get::<String, _>("exchange_backend").as_str() {
            "graph" => ExchangeBackend::Graph,
            _ => ExchangeBackend::Ews,
        },
        extract_start_date: row.get("extract_start_date"),
    })
}

/// The `domain` column of a row, by the domain's name.
fn domain_from_row(row: &AnyRow) -> Result<Domain, StoreError> {
    let name: String = row.get("domain");
    Domain::from_name(&name)
        .ok_or_else(|| StoreError::Corrupt { what: "domain", detail: format!("`{name}` is no domain Tandem syncs") })
}

fn link_from_row(row: &AnyRow) -> Result<Link, StoreError> {
    let base: String = row.get("base");
    Ok(Link {
        login: row.get("login"),
        domain: domain_from_row(row)?,
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

fn run_from_row(row: &AnyRow) -> Result<RunRecord, StoreError> {
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
    use crate::domain::Domains;
    use crate::record::Fields;

    fn user(login: &str) -> User {
        User {
            login: login.into(),
            mailbox: format!("{}@example.com", login.to_lowercase()),
            enabled: true,
            domains: Domains::default(),
            backend: ExchangeBackend::Ews,
            extract_start_date: None,
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
            domain: Domain::Contacts,
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
                domain: Domain::Contacts,
                operation: IntentKind::CreateExchange,
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
    /// A fresh PostgreSQL database for one test, from `TANDEM_TEST_POSTGRES_URL` (set by
    /// `scripts/test`). Without it: an error under CI, a notice and None elsewhere.
    pub(crate) async fn fresh_postgres_url() -> anyhow::Result<Option<String>> {
        use sqlx::Connection as _;
        let Ok(base) = std::env::var("TANDEM_TEST_POSTGRES_URL") else {
            if std::env::var_os("CI").is_some() {
                anyhow::bail!("TANDEM_TEST_POSTGRES_URL is not set; scripts/test starts PostgreSQL and sets it");
            }
            eprintln!("notice: TANDEM_TEST_POSTGRES_URL is not set; skipping the PostgreSQL half of this test");
            return Ok(None);
        };
        sqlx::any::install_default_drivers();
        let name = format!("tandem_t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::AnyConnection::connect(&base).await?;
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;
        let cut = base.rfind('/').ok_or_else(|| anyhow::anyhow!("no database in {base}"))?;
        Ok(Some(format!("{}/{name}", &base[..cut])))
    }

    /// PostgreSQL over TLS, asked for in the URL as libpq asks (`sslmode`, `sslrootcert`):
    /// trusting the server's CA the store opens, migrates and talks TLS; trusting only the
    /// system's roots it is refused, so the certificate is checked. `scripts/test` names the
    /// certificate the local server serves in `TANDEM_TEST_POSTGRES_CA`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_over_tls_checks_the_servers_certificate() -> anyhow::Result<()> {
        use anyhow::Context as _;
        let Some(url) = fresh_postgres_url().await? else { return Ok(()) };
        let ca = std::env::var("TANDEM_TEST_POSTGRES_CA").context("TANDEM_TEST_POSTGRES_CA is not set; scripts/test sets it")?;
        let store = Store::open_url(&format!("{url}?sslmode=verify-full&sslrootcert={ca}")).await?;
        let over_tls: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetch_one(&store.pool).await?;
        assert!(over_tls, "the connection is encrypted");
        let refused = Store::open_url(&format!("{url}?sslmode=verify-full")).await.err().context("a server no trusted CA signed is refused")?;
        let text = format!("{refused:#}");
        assert!(text.to_ascii_lowercase().contains("certificate") || text.contains("UnknownIssuer"), "{text}");
        assert!(!text.contains(":tandem@"), "the password is not shown: {text}");
        Ok(())
    }

    /// Two handles on one database stand for two nodes.
    async fn both_backends() -> anyhow::Result<Vec<(Store, Store, Option<tempfile::TempDir>)>> {
        let dir = tempfile::tempdir()?;
        let mut pairs = vec![(Store::open_dir(dir.path()).await?, Store::open_dir(dir.path()).await?, Some(dir))];
        if let Some(url) = fresh_postgres_url().await? {
            let a = Store::open_url(&url).await?;
            assert_eq!(a.backend(), Backend::Postgres);
            pairs.push((a, Store::open_url(&url).await?, None));
        }
        Ok(pairs)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leases_give_each_user_to_one_node_at_a_time() -> anyhow::Result<()> {
        for (a, b, _dir) in both_backends().await? {
            for i in 0..40 {
                a.add_user(&user(&format!("U{i:02}"))).await?;
            }
            let now = 1_000_000;
            // Both nodes claim at once, each for up to all users.
            let (got_a, got_b) = tokio::join!(
                a.claim_due_users("node-a", now, 60_000, 40),
                b.claim_due_users("node-b", now, 60_000, 40)
            );
            let (got_a, got_b) = (got_a?, got_b?);
            let mut all: Vec<String> = got_a.iter().chain(got_b.iter()).cloned().collect();
            all.sort();
            all.dedup();
            assert_eq!(all.len(), got_a.len() + got_b.len(), "no user leased to both nodes ({:?})", a.backend());
            assert_eq!(all.len(), 40, "every due user claimed once");
            // A live lease is not claimable by the other node, even on request.
            let held_by_a = got_a.first().or(got_b.first()).cloned().unwrap_or_default();
            let (holder, other) = if got_a.contains(&held_by_a) { (&a, "node-b") } else { (&b, "node-a") };
            assert!(!holder.claim_user(other, &held_by_a, now + 1, 60_000).await?);
        }
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_nodes_users_are_taken_over_after_the_lease() -> anyhow::Result<()> {
        for (a, b, _dir) in both_backends().await? {
            a.add_user(&user("JSMITH")).await?;
            let now = 5_000_000;
            assert_eq!(a.claim_due_users("node-a", now, 30_000, 10).await?, vec!["JSMITH".to_string()]);
            // node-a dies without finishing: before expiry node-b gets nothing ...
            assert!(b.claim_due_users("node-b", now + 29_000, 30_000, 10).await?.is_empty());
            // ... after it, node-b takes the user over.
            assert_eq!(b.claim_due_users("node-b", now + 31_000, 30_000, 10).await?, vec!["JSMITH".to_string()]);
            // node-a's late renewal fails: it lost the lease.
            assert!(!a.renew_lease("node-a", "JSMITH", now + 90_000).await?);
            assert!(b.renew_lease("node-b", "JSMITH", now + 90_000).await?);
            // Failures count up and reset on success; the next run time is kept.
            assert_eq!(b.finish_run("node-b", "JSMITH", now + 100_000, Some("Siebel: 500")).await?, 1);
            assert!(b.claim_due_users("node-b", now + 99_000, 30_000, 10).await?.is_empty(), "not due yet");
            assert_eq!(b.claim_due_users("node-b", now + 100_000, 30_000, 10).await?.len(), 1);
            assert_eq!(b.finish_run("node-b", "JSMITH", now + 200_000, Some("again")).await?, 2);
            b.claim_user("node-b", "JSMITH", now + 100_001, 30_000).await?;
            assert_eq!(b.finish_run("node-b", "JSMITH", now + 300_000, None).await?, 0);
            // A disabled user is never claimed.
            b.disable_user("JSMITH", Some("Exchange refused the mailbox 5 times")).await?;
            assert!(a.claim_due_users("node-a", now + 400_000, 30_000, 10).await?.is_empty());
            let (_, reason) = a.user_extras("JSMITH").await?;
            assert!(reason.is_some_and(|r| r.contains("refused")));
        }
        Ok(())
    }

    /// While the initial-extract lane is full, only users synced before are claimed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn users_synced_before_can_be_claimed_apart() -> anyhow::Result<()> {
        for (a, _b, _dir) in both_backends().await? {
            for login in ["FIRST", "AGAIN"] {
                a.add_user(&user(login)).await?;
            }
            a.save_folder_cursor("AGAIN", "contacts", "state-1").await?;
            let now = now_ms();
            let claimed = a.claim_due_users_synced_before("node-a", now, 60_000, 10).await?;
            assert_eq!(claimed, vec!["AGAIN".to_string()], "{:?}", a.backend());
            assert_eq!(a.claim_due_users("node-a", now, 60_000, 10).await?, vec!["AGAIN".to_string(), "FIRST".to_string()]);
        }
        Ok(())
    }

    /// What `GET /metrics` reads: users by state, due and running counts, last good runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sync_overview_counts_the_queue_and_last_good_runs() -> anyhow::Result<()> {
        for (a, _b, _dir) in both_backends().await? {
            for login in ["O1", "O2", "O3", "O4"] {
                a.add_user(&user(login)).await?;
            }
            a.disable_user("O4", None).await?;
            a.ensure_schedule().await?;
            let now = now_ms();
            assert_eq!(a.claim_due_users("node-a", now, 60_000, 1).await?, vec!["O1".to_string()]);
            a.set_next_run("O3", now + 3_600_000).await?;
            a.record_run("O2", "2026-01-01T00:00:00Z", "ok", &serde_json::json!({})).await?;
            a.record_run("O2", "2026-01-01T00:00:00Z", "failed", &serde_json::json!({})).await?;
            a.record_run("O3", "2026-01-01T00:00:00Z", "failed", &serde_json::json!({})).await?;
            let overview = a.sync_overview(now + 1).await?;
            assert_eq!((overview.enabled, overview.disabled), (3, 1), "{:?}", a.backend());
            assert_eq!(overview.running, 1, "O1 is leased");
            assert_eq!(overview.due, 1, "O2 is due; O1 runs, O3 waits an hour, O4 is off");
            let mut known: Vec<bool> = overview.last_ok_ms.iter().map(Option::is_some).collect();
            known.sort();
            assert_eq!(known, vec![false, false, true], "only O2 had a good run");
            let last = overview.last_ok_ms.iter().flatten().next().copied().unwrap_or(0);
            assert!((now - last).abs() < 60_000, "the good run ended just now");
        }
        Ok(())
    }

    #[tokio::test]
    async fn quarantine_counts_attempts_and_backs_off() -> anyhow::Result<()> {
        for (a, _b, _dir) in both_backends().await? {
            a.add_user(&user("Q")).await?;
            assert_eq!(a.quarantine("Q", "contacts", "siebel:1-A", "plugin trapped").await?, 1);
            assert_eq!(a.quarantine("Q", "contacts", "siebel:1-A", "plugin trapped again").await?, 2);
            let listed = a.quarantined("Q").await?;
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].reason, "plugin trapped again");
            assert!(listed[0].next_retry_ms > now_ms() + 60_000, "second attempt waits longer than the first");
            a.release_quarantine("Q", "contacts", "siebel:1-A").await?;
            assert!(a.quarantined("Q").await?.is_empty());
        }
        Ok(())
    }

    #[tokio::test]
    async fn unclaimed_invitations_are_kept_once_forgotten_and_cleared_by_a_reset() -> anyhow::Result<()> {
        for (a, _b, _dir) in both_backends().await? {
            a.add_user(&user("U")).await?;
            a.remember_unclaimed("U", "calendar", "AAMk-1").await?;
            a.remember_unclaimed("U", "calendar", "AAMk-1").await?;
            a.remember_unclaimed("U", "calendar", "AAMk-2").await?;
            assert_eq!(a.unclaimed("U", "calendar").await?, ["AAMk-1", "AAMk-2"], "{:?}", a.backend());
            assert!(a.unclaimed("U", "tasks").await?.is_empty());
            a.forget_unclaimed("U", "calendar", "AAMk-1").await?;
            assert_eq!(a.unclaimed("U", "calendar").await?, ["AAMk-2"]);
            a.reset_user("U").await?;
            assert!(a.unclaimed("U", "calendar").await?.is_empty(), "a re-extract reads every item again");
        }
        Ok(())
    }
}

/// The URL with any password replaced, for messages.
/// What to check when the database at `path` (a file, or a redacted URL) does not open.
fn open_hint(path: &str) -> &'static str {
    if path.starts_with("postgres:") || path.starts_with("postgresql:") {
        "check database_url: the server, the role and its password and, over TLS, sslmode and sslrootcert (the CA that signed the server's certificate)"
    } else {
        "check that the folder exists and is writable"
    }
}

fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A user's place in the schedule, as `schedule` keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleEntry {
    pub login: String,
    pub next_run_ms: i64,
    pub lease_node: Option<String>,
    pub lease_expires_ms: i64,
    pub consecutive_failures: i64,
    pub last_error: Option<String>,
}

/// The schedule at a glance (see [`Store::sync_overview`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncOverview {
    pub enabled: u64,
    pub disabled: u64,
    /// Enabled users whose next run is due and whom no node holds.
    pub due: u64,
    /// Enabled users leased to a node (being synced).
    pub running: u64,
    /// Per enabled user: when its last successful run ended (Unix ms), None when never.
    pub last_ok_ms: Vec<Option<i64>>,
}

/// A quarantined record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantinedRecord {
    pub domain: String,
    pub record_key: String,
    pub reason: String,
    pub attempts: i64,
    pub first_seen: String,
    pub next_retry_ms: i64,
}

// Scheduling, leases, quarantine, history: what the scheduler and the admin API need.
impl Store {
    /// Gives every user without one a schedule row (due now).
    pub async fn ensure_schedule(&self) -> Result<(), StoreError> {
        sqlx::query(&self.sql(
            "INSERT INTO schedule (login) SELECT login FROM users
             WHERE login NOT IN (SELECT login FROM schedule)",
        ))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Claims up to `limit` enabled users that are due and whose lease is free, expired or
    /// already `node`'s, leasing them to `node` until `now_ms + lease_ms`. On PostgreSQL
    /// several nodes may claim at once: rows another node is claiming are skipped, never
    /// waited for, and never handed out twice.
    pub async fn claim_due_users(
        &self,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.claim_due(node, now_ms, lease_ms, limit, false).await
    }

    /// Like [`claim_due_users`](Self::claim_due_users), but only users synced before (with a
    /// saved folder cursor): used while the initial-extract lane is full, so first syncs
    /// waiting for it never hold up everyone else.
    pub async fn claim_due_users_synced_before(
        &self,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.claim_due(node, now_ms, lease_ms, limit, true).await
    }

    async fn claim_due(
        &self,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
        synced_before: bool,
    ) -> Result<Vec<String>, StoreError> {
        let lock = if self.backend == Backend::Postgres { "FOR UPDATE OF s SKIP LOCKED" } else { "" };
        let synced = if synced_before { "AND EXISTS (SELECT 1 FROM folder_cursors c WHERE c.login = s.login)" } else { "" };
        let text = format!(
            "UPDATE schedule SET lease_node = ?, lease_expires_ms = ?
             WHERE login IN (
                SELECT s.login FROM schedule s JOIN users u ON u.login = s.login
                WHERE u.enabled = 1 AND s.next_run_ms <= ?
                  AND (s.lease_node IS NULL OR s.lease_expires_ms < ? OR s.lease_node = ?) {synced}
                ORDER BY s.next_run_ms, s.login LIMIT ? {lock})
             RETURNING login"
        );
        let rows = sqlx::query(&self.sql(&text))
            .bind(node)
            .bind(now_ms + lease_ms)
            .bind(now_ms)
            .bind(now_ms)
            .bind(node)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut logins: Vec<String> = rows.iter().map(|row| row.get("login")).collect();
        logins.sort();
        Ok(logins)
    }

    /// Claims one user now (a sync asked for through the admin API), due or not. False when
    /// another node holds a live lease on it.
    pub async fn claim_user(&self, node: &str, login: &str, now_ms: i64, lease_ms: i64) -> Result<bool, StoreError> {
        self.ensure_schedule().await?;
        let done = sqlx::query(&self.sql(
            "UPDATE schedule SET lease_node = ?, lease_expires_ms = ?
             WHERE login = ? AND (lease_node IS NULL OR lease_expires_ms < ? OR lease_node = ?)",
        ))
        .bind(node)
        .bind(now_ms + lease_ms)
        .bind(login)
        .bind(now_ms)
        .bind(node)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Extends `node`'s lease on `login`; false when the lease was lost (expired and taken).
    pub async fn renew_lease(&self, node: &str, login: &str, until_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(&self.sql(
            "UPDATE schedule SET lease_expires_ms = ? WHERE login = ? AND lease_node = ?",
        ))
        .bind(until_ms)
        .bind(login)
        .bind(node)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a run: releases the lease, sets the next run, and counts consecutive failures
    /// (`error` None = success). Returns the failure count after this run.
    pub async fn finish_run(
        &self,
        node: &str,
        login: &str,
        next_run_ms: i64,
        error: Option<&str>,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(&self.sql(
            "UPDATE schedule SET lease_node = NULL, lease_expires_ms = 0, next_run_ms = ?,
                consecutive_failures = CASE WHEN ? = 1 THEN consecutive_failures + 1 ELSE 0 END,
                last_error = ?
             WHERE login = ? AND (lease_node = ? OR lease_node IS NULL)
             RETURNING consecutive_failures",
        ))
        .bind(next_run_ms)
        .bind(i64::from(error.is_some()))
        .bind(error)
        .bind(login)
        .bind(node)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| row.get("consecutive_failures")).unwrap_or(0))
    }

    /// Sets when a user runs next.
    pub async fn set_next_run(&self, login: &str, next_run_ms: i64) -> Result<(), StoreError> {
        sqlx::query(&self.sql("UPDATE schedule SET next_run_ms = ? WHERE login = ?"))
            .bind(next_run_ms)
            .bind(login)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Releases every lease: for a store only one process uses (SQLite in the state folder),
    /// at start, so users a killed process held are synced again at once instead of after
    /// their lease runs out. Returns how many were released.
    pub async fn release_all_leases(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(&self.sql(
            "UPDATE schedule SET lease_node = NULL, lease_expires_ms = 0 WHERE lease_node IS NOT NULL",
        ))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Gives a claimed user back without running it (its schedule stays as it was).
    pub async fn release_lease(&self, node: &str, login: &str) -> Result<(), StoreError> {
        sqlx::query(&self.sql(
            "UPDATE schedule SET lease_node = NULL, lease_expires_ms = 0 WHERE login = ? AND lease_node = ?",
        ))
        .bind(login)
        .bind(node)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes users due now (a change was detected for them); leaves leases alone.
    pub async fn wake_users(&self, logins: &[String], now_ms: i64) -> Result<(), StoreError> {
        for login in logins {
            sqlx::query(&self.sql("UPDATE schedule SET next_run_ms = ? WHERE login = ? AND next_run_ms > ?"))
                .bind(now_ms)
                .bind(login)
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// The schedule at a glance for `GET /metrics`: users by state, due and running counts,
    /// and per enabled user the end of its last successful run (Unix ms; None: never).
    pub async fn sync_overview(&self, now_ms: i64) -> Result<SyncOverview, StoreError> {
        let counts = sqlx::query(&self.sql(
            "SELECT
                COALESCE(SUM(CASE WHEN u.enabled = 1 THEN 1 ELSE 0 END), 0) AS enabled,
                COALESCE(SUM(CASE WHEN u.enabled = 1 THEN 0 ELSE 1 END), 0) AS disabled,
                COALESCE(SUM(CASE WHEN u.enabled = 1 AND s.next_run_ms <= ?
                    AND (s.lease_node IS NULL OR s.lease_expires_ms < ?) THEN 1 ELSE 0 END), 0) AS due,
                COALESCE(SUM(CASE WHEN u.enabled = 1 AND s.lease_node IS NOT NULL
                    AND s.lease_expires_ms >= ? THEN 1 ELSE 0 END), 0) AS running
             FROM users u LEFT JOIN schedule s ON s.login = u.login",
        ))
        .bind(now_ms)
        .bind(now_ms)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        let last_ok = sqlx::query(&self.sql(
            "SELECT (SELECT r.finished_at FROM runs r WHERE r.login = u.login AND r.status = 'ok'
                     ORDER BY r.id DESC LIMIT 1) AS last_ok
             FROM users u WHERE u.enabled = 1",
        ))
        .fetch_all(&self.pool)
        .await?;
        let count = |name: &str| u64::try_from(counts.get::<i64, _>(name)).unwrap_or(0);
        Ok(SyncOverview {
            enabled: count("enabled"),
            disabled: count("disabled"),
            due: count("due"),
            running: count("running"),
            last_ok_ms: last_ok
                .iter()
                .map(|row| {
                    row.get::<Option<String>, _>("last_ok")
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                        .map(|t| t.timestamp_millis())
                })
                .collect(),
        })
    }

    pub async fn schedule_entries(&self) -> Result<Vec<ScheduleEntry>, StoreError> {
        let rows = sqlx::query(&self.sql("SELECT * FROM schedule ORDER BY login")).fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|row| ScheduleEntry {
                login: row.get("login"),
                next_run_ms: row.get("next_run_ms"),
                lease_node: row.get("lease_node"),
                lease_expires_ms: row.get("lease_expires_ms"),
                consecutive_failures: row.get("consecutive_failures"),
                last_error: row.get("last_error"),
            })
            .collect())
    }

    /// Turns a user off, with the reason shown in the admin API (`enabled = false` alone
    /// means an administrator did it).
    pub async fn disable_user(&self, login: &str, reason: Option<&str>) -> Result<(), StoreError> {
        let done = sqlx::query(&self.sql("UPDATE users SET enabled = 0, disabled_reason = ? WHERE login = ?"))
            .bind(reason)
            .bind(login)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::UnknownUser(login.to_owned()));
        }
        Ok(())
    }

    /// Changes a user's map entry; links and sync list stay, so re-enabling resumes.
    pub async fn update_user(&self, user: &User, group: &str) -> Result<(), StoreError> {
        let domains = serde_json::to_string(&user.domains)
            .map_err(|e| StoreError::Corrupt { what: "domains", detail: e.to_string() })?;
        let done = sqlx::query(&self.sql(
            "UPDATE users SET mailbox = ?, enabled = ?, domains = ?, exchange_backend = ?, extract_start_date = ?, sync_group = ?,
                disabled_reason = CASE WHEN ? = 1 THEN NULL ELSE disabled_reason END
             WHERE login = ?",
        ))
        .bind(&user.mailbox)
        .bind(i64::from(user.enabled))
        .bind(domains)
        .bind(user.backend.as_str())
        .bind(user.extract_start_date.clone())
        .bind(group)
        .bind(i64::from(user.enabled))
        .bind(&user.login)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::UnknownUser(user.login.clone()));
        }
        Ok(())
    }

    /// The user's group and, when Tandem disabled the user, why.
    pub async fn user_extras(&self, login: &str) -> Result<(String, Option<String>), StoreError> {
        let row = sqlx::query(&self.sql("SELECT sync_group, disabled_reason FROM users WHERE login = ?"))
            .bind(login)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::UnknownUser(login.to_owned()))?;
        Ok((row.get("sync_group"), row.get("disabled_reason")))
    }

    /// Forgets what Tandem knows of a user's records (links, cursors, intents), so the next
    /// run is a new initial extract. The sync list stays.
    pub async fn reset_user(&self, login: &str) -> Result<(), StoreError> {
        self.user(login).await?;
        let mut tx = self.pool.begin().await?;
        for table in ["links", "folder_cursors", "intents", "quarantine", "unclaimed_items"] {
            let text = format!("DELETE FROM {table} WHERE login = ?");
            sqlx::query(&self.sql(&text)).bind(login).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Remembers an Exchange item the user's run left alone because another Tandem user
    /// organizes it, so a later run can match it to the meeting that organizer's run makes.
    pub async fn remember_unclaimed(&self, login: &str, domain: &str, exchange_id: &str) -> Result<(), StoreError> {
        sqlx::query(&self.sql(
            "INSERT INTO unclaimed_items (login, domain, exchange_id) VALUES (?, ?, ?)
             ON CONFLICT (login, domain, exchange_id) DO NOTHING",
        ))
        .bind(login)
        .bind(domain)
        .bind(exchange_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The items `remember_unclaimed` kept for the user and domain.
    pub async fn unclaimed(&self, login: &str, domain: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(&self.sql("SELECT exchange_id FROM unclaimed_items WHERE login = ? AND domain = ? ORDER BY exchange_id"))
            .bind(login)
            .bind(domain)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|row| row.get("exchange_id")).collect())
    }

    /// Forgets an unclaimed item (linked at last, or gone from Exchange).
    pub async fn forget_unclaimed(&self, login: &str, domain: &str, exchange_id: &str) -> Result<(), StoreError> {
        sqlx::query(&self.sql("DELETE FROM unclaimed_items WHERE login = ? AND domain = ? AND exchange_id = ?"))
            .bind(login)
            .bind(domain)
            .bind(exchange_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Puts a record aside (or again, one more attempt), retried after a backoff that
    /// doubles with each attempt from 1 minute up to 1 day.
    pub async fn quarantine(&self, login: &str, domain: &str, record_key: &str, reason: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(&self.sql(
            "INSERT INTO quarantine (login, domain, record_key, reason, attempts, first_seen, next_retry_ms)
             VALUES (?, ?, ?, ?, 1, ?, 0)
             ON CONFLICT (login, domain, record_key) DO UPDATE SET
                reason = excluded.reason, attempts = quarantine.attempts + 1
             RETURNING attempts",
        ))
        .bind(login)
        .bind(domain)
        .bind(record_key)
        .bind(reason)
        .bind(now())
        .fetch_one(&self.pool)
        .await?;
        let attempts: i64 = row.get("attempts");
        let backoff_ms = (60_000_i64 << (attempts - 1).clamp(0, 10)).min(86_400_000);
        sqlx::query(&self.sql(
            "UPDATE quarantine SET next_retry_ms = ? WHERE login = ? AND domain = ? AND record_key = ?",
        ))
        .bind(now_ms() + backoff_ms)
        .bind(login)
        .bind(domain)
        .bind(record_key)
        .execute(&self.pool)
        .await?;
        Ok(attempts)
    }

    /// Takes a record out of quarantine (it went through).
    pub async fn release_quarantine(&self, login: &str, domain: &str, record_key: &str) -> Result<(), StoreError> {
        sqlx::query(&self.sql("DELETE FROM quarantine WHERE login = ? AND domain = ? AND record_key = ?"))
            .bind(login)
            .bind(domain)
            .bind(record_key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn quarantined(&self, login: &str) -> Result<Vec<QuarantinedRecord>, StoreError> {
        let rows = sqlx::query(&self.sql("SELECT * FROM quarantine WHERE login = ? ORDER BY domain, record_key"))
            .bind(login)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| QuarantinedRecord {
                domain: row.get("domain"),
                record_key: row.get("record_key"),
                reason: row.get("reason"),
                attempts: row.get("attempts"),
                first_seen: row.get("first_seen"),
                next_retry_ms: row.get("next_retry_ms"),
            })
            .collect())
    }

    /// The user's latest runs, newest first.
    pub async fn runs(&self, login: &str, limit: i64) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query(&self.sql("SELECT * FROM runs WHERE login = ? ORDER BY id DESC LIMIT ?"))
            .bind(login)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// The conflict log of a user, newest first.
    pub async fn conflicts(&self, login: &str, limit: i64) -> Result<Vec<serde_json::Value>, StoreError> {
        let rows = sqlx::query(&self.sql("SELECT * FROM conflicts WHERE login = ? ORDER BY id DESC LIMIT ?"))
            .bind(login)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                serde_json::json!({
                    "domain": row.get::<String, _>("domain"),
                    "siebel_id": row.get::<String, _>("siebel_id"),
                    "exchange_id": row.get::<String, _>("exchange_id"),
                    "outcome": row.get::<String, _>("outcome"),
                    "detail": row.get::<String, _>("detail"),
                    "at": row.get::<String, _>("at"),
                })
            })
            .collect())
    }

}
