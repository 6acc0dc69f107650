//! The end-to-end harness: starts the demo stack in-process (no seed, manual syncs) and
//! speaks to it only over HTTP: Siebel REST, raw EWS SOAP, and the admin API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use quick_xml::events::Event;
use serde_json::{Value, json};
use tandem_cli::demo::{Demo, DemoOptions};
use tandem_host::exchange::ews::EwsAuth;
use tokio::io::{AsyncBufReadExt, BufReader};

pub struct Harness {
    pub demo: Demo,
    http: reqwest::Client,
    capture: tempfile::TempDir,
    _state: tempfile::TempDir,
}

/// Request counts of both emulators, from `/_sim/stats`.
pub struct Stats {
    siebel: Value,
    ews: Value,
}

impl Stats {
    pub fn siebel(&self, method: &str) -> u64 {
        self.siebel["requests"][method].as_u64().unwrap_or(0)
    }

    pub fn ews(&self, operation: &str) -> u64 {
        self.ews["requests"][operation].as_u64().unwrap_or(0)
    }

    /// Every request either emulator counted.
    pub fn total(&self) -> u64 {
        [&self.siebel, &self.ews]
            .iter()
            .filter_map(|stats| stats["requests"].as_object())
            .flat_map(|requests| requests.values())
            .filter_map(serde_json::Value::as_u64)
            .sum()
    }
}

const SOAP_HEAD: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
  xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">"#;

impl Harness {
    /// The stack with automatic syncs off: tests sync through the admin API.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(None, false, EwsAuth::Basic).await
    }

    /// The stack with automatic syncs off and the emulators over HTTPS (`tandem demo --tls`):
    /// the service and this harness trust the demo's CA through ca_file.
    pub async fn start_tls() -> anyhow::Result<Self> {
        Self::start_with(None, true, EwsAuth::Basic).await
    }

    /// The stack over HTTPS with an EWS emulator that offers only `auth` (NTLM or Negotiate,
    /// as a fresh Exchange 2016/2019), the service signing in with it; automatic syncs every
    /// `interval` when given. The harness's own SOAP helpers sign in with Basic, so tests on
    /// this stack look into the EWS emulator directly.
    pub async fn start_windows_sign_in(auth: EwsAuth, interval: Option<Duration>) -> anyhow::Result<Self> {
        Self::start_with(interval, true, auth).await
    }

    /// The stack with the scheduler on, syncing every `interval`.
    pub async fn start_scheduled(interval: Duration) -> anyhow::Result<Self> {
        Self::start_with(Some(interval), false, EwsAuth::Basic).await
    }

    async fn start_with(interval: Option<Duration>, tls: bool, ews_auth: EwsAuth) -> anyhow::Result<Self> {
        let capture = tempfile::tempdir()?;
        let state = tempfile::tempdir()?;
        let demo = Demo::start(DemoOptions {
            state_dir: Some(state.path().to_path_buf()),
            manual: interval.is_none(),
            interval,
            seed: false,
            ews_capture_dir: Some(capture.path().to_path_buf()),
            tls,
            ews_auth,
        })
        .await?;
        let transport = tandem_host::transport::Transport { ca_file: demo.ca_file.clone(), proxy: None };
        let http = tandem_host::transport::client_builder(&transport)?.timeout(Duration::from_secs(60)).build()?;
        Ok(Self { demo, http, capture, _state: state })
    }

    pub async fn stop(self) {
        self.demo.stop().await;
    }

    fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.demo.admin_url)).bearer_auth(&self.demo.admin_token)
    }

    pub async fn admin_post(&self, path: &str, body: Value, expected: u16) -> anyhow::Result<Value> {
        let answer = self.admin(reqwest::Method::POST, path).json(&body).send().await?;
        let status = answer.status().as_u16();
        let text = answer.text().await?;
        ensure!(status == expected, "POST {path} answered {status}, expected {expected}: {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn admin_delete(&self, path: &str, expected: u16) -> anyhow::Result<()> {
        let answer = self.admin(reqwest::Method::DELETE, path).send().await?;
        let status = answer.status().as_u16();
        ensure!(status == expected, "DELETE {path} answered {status}, expected {expected}: {}", answer.text().await?);
        Ok(())
    }

    pub async fn admin_patch(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let (status, answer) = self.admin_patch_status(path, body).await?;
        ensure!(status == 200, "PATCH {path} answered {status}: {answer}");
        Ok(answer)
    }

    /// A PATCH whatever its status: `(status, JSON body)`.
    pub async fn admin_patch_status(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        let answer = self.admin(reqwest::Method::PATCH, path).json(&body).send().await?;
        Ok((answer.status().as_u16(), answer.json().await?))
    }

    pub async fn admin_get(&self, path: &str) -> anyhow::Result<Value> {
        let answer = self.admin(reqwest::Method::GET, path).send().await?;
        ensure!(answer.status() == 200, "GET {path} answered {}", answer.status());
        Ok(answer.json().await?)
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn scrape_metrics(&self) -> anyhow::Result<String> {
        let answer = reqwest::get(format!("{}/metrics", self.demo.admin_url)).await?;
        ensure!(answer.status() == 200, "/metrics answered {}", answer.status());
        Ok(answer.text().await?)
    }

    /// Idempotence: a sync with no edits writes nothing on either side.
    pub async fn assert_quiet(&self, login: &str) -> anyhow::Result<()> {
        let quiet = self.sync(login).await?;
        let nothing = json!({"created": 0, "updated": 0, "deleted": 0});
        ensure!(quiet["siebel"] == nothing && quiet["exchange"] == nothing, "a sync with no edits wrote: {quiet}");
        Ok(())
    }

    /// `POST /api/v1/users/{login}/sync?wait=true`, returning the run report.
    pub async fn sync(&self, login: &str) -> anyhow::Result<Value> {
        self.admin_post(&format!("/api/v1/users/{login}/sync?wait=true"), json!({}), 200).await
    }

    fn siebel(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.siebel_in("Contact", method, path)
    }

    /// A request to business component `bc` (of the business object of the same name), as
    /// the administrator in `ViewMode=All` (it is on no record's team).
    fn siebel_in(&self, bc: &str, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let auth = &self.demo.siebel_auth;
        self.http
            .request(method, format!("{}/data/{bc}/{bc}{path}", self.demo.siebel_url))
            .query(&[("ViewMode", "All")])
            .basic_auth(&auth.user, Some(&auth.password))
    }

    /// Inserts a Contact through the Siebel REST API and returns its Id.
    pub async fn siebel_insert(&self, fields: Value) -> anyhow::Result<String> {
        self.siebel_insert_into("Contact", fields).await
    }

    /// Inserts a record into business component `bc` (`Contact`, `Employee`, `Action`) and
    /// returns its Id.
    pub async fn siebel_insert_into(&self, bc: &str, fields: Value) -> anyhow::Result<String> {
        let answer = self.siebel_in(bc, reqwest::Method::POST, "").json(&fields).send().await?;
        ensure!(answer.status().is_success(), "Siebel insert answered {}", answer.status());
        let body: Value = answer.json().await?;
        let items = &body["items"];
        let item = if items.is_array() { &items[0] } else { items };
        item["Id"].as_str().map(str::to_owned).context("Siebel insert reply has no Id")
    }

    pub async fn siebel_update(&self, id: &str, fields: Value) -> anyhow::Result<()> {
        self.siebel_update_in("Contact", id, fields).await
    }

    /// Updates record `id` of business component `bc`.
    pub async fn siebel_update_in(&self, bc: &str, id: &str, fields: Value) -> anyhow::Result<()> {
        let answer = self.siebel_in(bc, reqwest::Method::PUT, &format!("/{id}")).json(&fields).send().await?;
        ensure!(answer.status().is_success(), "Siebel update answered {}", answer.status());
        Ok(())
    }

    /// Deletes record `id` of business component `bc`.
    pub async fn siebel_delete_from(&self, bc: &str, id: &str) -> anyhow::Result<()> {
        let answer = self.siebel_in(bc, reqwest::Method::DELETE, &format!("/{id}")).send().await?;
        ensure!(answer.status().is_success(), "Siebel delete answered {}", answer.status());
        Ok(())
    }

    /// The Contact's fields, or None when Siebel answers 404.
    pub async fn siebel_get(&self, id: &str) -> anyhow::Result<Option<Value>> {
        self.siebel_get_from("Contact", id).await
    }

    /// The fields of record `id` of business component `bc`, or None when Siebel answers 404.
    pub async fn siebel_get_from(&self, bc: &str, id: &str) -> anyhow::Result<Option<Value>> {
        let answer = self.siebel_in(bc, reqwest::Method::GET, &format!("/{id}?uniformresponse=y")).send().await?;
        if answer.status() == 404 {
            return Ok(None);
        }
        ensure!(answer.status() == 200, "Siebel GET {id} answered {}", answer.status());
        let body: Value = answer.json().await?;
        Ok(Some(body["items"][0].clone()))
    }

    /// The records of business component `bc` matching `searchspec` (first 100).
    pub async fn siebel_query(&self, bc: &str, searchspec: &str) -> anyhow::Result<Vec<Value>> {
        let answer = self
            .siebel_in(bc, reqwest::Method::GET, "")
            .query(&[("uniformresponse", "y"), ("PageSize", "100"), ("searchspec", searchspec)])
            .send()
            .await?;
        if answer.status() == 204 {
            return Ok(Vec::new());
        }
        ensure!(answer.status() == 200, "Siebel query of {bc} answered {}", answer.status());
        let body: Value = answer.json().await?;
        Ok(body["items"].as_array().cloned().unwrap_or_default())
    }

    /// How many Contact records Siebel holds (paging through them all).
    pub async fn siebel_count(&self) -> anyhow::Result<usize> {
        let mut count = 0;
        loop {
            let answer = self
                .siebel(reqwest::Method::GET, &format!("?uniformresponse=y&PageSize=100&StartRowNum={count}"))
                .send()
                .await?;
            if answer.status() == 204 {
                return Ok(count);
            }
            ensure!(answer.status() == 200, "Siebel query answered {}", answer.status());
            let body: Value = answer.json().await?;
            let page = body["items"].as_array().map(Vec::len).unwrap_or(0);
            count += page;
            if page < 100 {
                return Ok(count);
            }
        }
    }

    pub async fn stats(&self) -> anyhow::Result<Stats> {
        let siebel_base = self.demo.siebel_url.trim_end_matches("/siebel/v1.0");
        let ews_base = self.demo.ews_url.trim_end_matches("/EWS/Exchange.asmx");
        let siebel = self.http.get(format!("{siebel_base}/_sim/stats")).send().await?.json().await?;
        let ews = self.http.get(format!("{ews_base}/_sim/stats")).send().await?.json().await?;
        Ok(Stats { siebel, ews })
    }

    /// Sends one EWS request as `mailbox` (impersonated) and returns the reply body.
    async fn soap(&self, mailbox: &str, body: &str) -> anyhow::Result<String> {
        let envelope = format!(
            "{SOAP_HEAD}<soap:Header><t:RequestServerVersion Version=\"Exchange2013_SP1\"/>\
             <t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{mailbox}</t:PrimarySmtpAddress>\
             </t:ConnectingSID></t:ExchangeImpersonation></soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>"
        );
        let auth = &self.demo.ews_auth;
        let answer = self
            .http
            .post(&self.demo.ews_url)
            .basic_auth(&auth.user, Some(&auth.password))
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("X-AnchorMailbox", mailbox)
            .body(envelope)
            .send()
            .await?;
        let status = answer.status();
        let text = answer.text().await?;
        ensure!(status == 200, "EWS answered {status}: {text}");
        ensure!(!text.contains("ResponseClass=\"Error\""), "EWS reported an error: {text}");
        Ok(text)
    }

    /// Item ids in the mailbox's Contacts folder (FindItem, paged view).
    pub async fn ews_find_contacts(&self, mailbox: &str) -> anyhow::Result<Vec<String>> {
        self.ews_find_in(mailbox, "contacts").await
    }

    /// Item ids in one of the mailbox's distinguished folders (`contacts`, `calendar`,
    /// `tasks`), FindItem with a paged view.
    pub async fn ews_find_in(&self, mailbox: &str, folder: &str) -> anyhow::Result<Vec<String>> {
        let reply = self
            .soap(
                mailbox,
                &format!(
                    r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>
                <m:IndexedPageItemView MaxEntriesReturned="100" Offset="0" BasePoint="Beginning"/>
                <m:ParentFolderIds><t:DistinguishedFolderId Id="{folder}"/></m:ParentFolderIds></m:FindItem>"#
                ),
            )
            .await?;
        Ok(xml_attrs(&reply, "ItemId", "Id"))
    }

    /// CreateItem of one item (`item_xml` is a `t:Contact`, `t:CalendarItem` or `t:Task`
    /// element) in a distinguished folder, as Outlook would; returns its item id.
    pub async fn ews_create_in(&self, mailbox: &str, folder: &str, item_xml: &str) -> anyhow::Result<String> {
        let invitations = if folder == "calendar" { r#" SendMeetingInvitations="SendToNone""# } else { "" };
        let reply = self
            .soap(
                mailbox,
                &format!(
                    r#"<m:CreateItem{invitations}><m:SavedItemFolderId><t:DistinguishedFolderId Id="{folder}"/></m:SavedItemFolderId>
                <m:Items>{item_xml}</m:Items></m:CreateItem>"#
                ),
            )
            .await?;
        xml_attr(&reply, "ItemId", "Id").context("CreateItem reply has no ItemId")
    }

    /// Waits until the mailbox's Contacts folder holds a contact (the scheduler made it);
    /// returns its item id.
    pub async fn wait_for_contact(&self, mailbox: &str, within: Duration) -> anyhow::Result<String> {
        let started = std::time::Instant::now();
        loop {
            if let Some(id) = self.ews_find_contacts(mailbox).await?.into_iter().next() {
                return Ok(id);
            }
            ensure!(started.elapsed() < within, "no contact reached {mailbox} within {within:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GetItem of one contact with all properties; returns the reply.
    pub async fn ews_get_contact(&self, mailbox: &str, id: &str) -> anyhow::Result<String> {
        self.soap(
            mailbox,
            &format!(
                r#"<m:GetItem><m:ItemShape><t:BaseShape>AllProperties</t:BaseShape></m:ItemShape>
                <m:ItemIds><t:ItemId Id="{id}"/></m:ItemIds></m:GetItem>"#
            ),
        )
        .await
    }

    pub async fn ews_set_job_title(&self, mailbox: &str, id: &str, change_key: &str, title: &str) -> anyhow::Result<()> {
        self.ews_set_field(mailbox, id, change_key, "contacts:JobTitle", &format!("<t:Contact><t:JobTitle>{title}</t:JobTitle></t:Contact>"))
            .await
    }

    /// Sets one field of an item, as Outlook would: `field_uri` such as `item:Subject`, and
    /// `item_xml` the item element holding the new value.
    pub async fn ews_set_field(&self, mailbox: &str, id: &str, change_key: &str, field_uri: &str, item_xml: &str) -> anyhow::Result<()> {
        let notify = if field_uri.starts_with("calendar:") || item_xml.starts_with("<t:CalendarItem") {
            r#" SendMeetingInvitationsOrCancellations="SendToNone""#
        } else {
            ""
        };
        let reply = self
            .soap(
                mailbox,
                &format!(
                    r#"<m:UpdateItem ConflictResolution="NeverOverwrite"{notify}><m:ItemChanges><t:ItemChange>
                <t:ItemId Id="{id}" ChangeKey="{change_key}"/><t:Updates><t:SetItemField>
                <t:FieldURI FieldURI="{field_uri}"/>{item_xml}
                </t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"#
                ),
            )
            .await?;
        ensure!(reply.contains(r#"ResponseClass="Success""#), "UpdateItem of {field_uri} failed: {reply}");
        Ok(())
    }

    /// A meeting request sent from `mailbox` (CreateItem with SendToAllAndSaveCopy): Exchange
    /// puts a copy in each attendee's calendar. Returns the organizer's item id.
    pub async fn ews_send_meeting(&self, mailbox: &str, item_xml: &str) -> anyhow::Result<String> {
        let reply = self
            .soap(
                mailbox,
                &format!(
                    r#"<m:CreateItem SendMeetingInvitations="SendToAllAndSaveCopy"><m:SavedItemFolderId><t:DistinguishedFolderId Id="calendar"/></m:SavedItemFolderId>
                <m:Items>{item_xml}</m:Items></m:CreateItem>"#
                ),
            )
            .await?;
        xml_attr(&reply, "ItemId", "Id").context("CreateItem reply has no ItemId")
    }

    /// Sets a contact's first email address, as Outlook would.
    pub async fn soap_update_email(&self, mailbox: &str, id: &str, change_key: &str, email: &str) -> anyhow::Result<()> {
        self.soap(
            mailbox,
            &format!(
                r#"<m:UpdateItem ConflictResolution="NeverOverwrite"><m:ItemChanges><t:ItemChange>
                <t:ItemId Id="{id}" ChangeKey="{change_key}"/><t:Updates><t:SetItemField>
                <t:IndexedFieldURI FieldURI="contacts:EmailAddress" FieldIndex="EmailAddress1"/><t:Contact><t:EmailAddresses>
                <t:Entry Key="EmailAddress1">{email}</t:Entry></t:EmailAddresses></t:Contact>
                </t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"#
            ),
        )
        .await
        .map(drop)
    }

    pub async fn ews_delete(&self, mailbox: &str, id: &str) -> anyhow::Result<()> {
        self.soap(
            mailbox,
            &format!(
                r#"<m:DeleteItem DeleteType="MoveToDeletedItems" SendMeetingCancellations="SendToNone" AffectedTaskOccurrences="AllOccurrences"><m:ItemIds><t:ItemId Id="{id}"/></m:ItemIds></m:DeleteItem>"#
            ),
        )
        .await
        .map(drop)
    }

    /// Validates every EWS request and reply the emulator saw against Microsoft's schemas.
    pub fn validate_ews_traffic(&self) -> anyhow::Result<()> {
        let files: Vec<PathBuf> = std::fs::read_dir(self.capture.path())?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "xml"))
            .collect();
        ensure!(files.len() >= 10, "expected captured EWS traffic, found {} files", files.len());
        validate_with_schemas(&files)
    }
}

/// Runs `shared/spec/ews/validate/validate.sh` over `files`.
pub fn validate_with_schemas(files: &[PathBuf]) -> anyhow::Result<()> {
    tandem_sim::ews::schema_check::validate_files(files).map_err(anyhow::Error::msg)?;
    Ok(())
}

/// The text of the first element with this local name.
pub fn xml_text(xml: &str, local: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut inside = false;
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) if e.local_name().as_ref() == local.as_bytes() => inside = true,
            Event::Text(t) if inside => return t.decode().ok().map(|s| s.into_owned()),
            Event::End(_) if inside => return Some(String::new()),
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// The texts of every `<local>` element inside the first `<container>`, in order (e.g. the
/// `EmailAddress` of each attendee in `RequiredAttendees`).
pub fn xml_texts_in(xml: &str, container: &str, local: &str) -> Vec<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let (mut in_container, mut inside) = (false, false);
    let mut texts = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) if e.local_name().as_ref() == container.as_bytes() => in_container = true,
            Ok(Event::End(e)) if e.local_name().as_ref() == container.as_bytes() => return texts,
            Ok(Event::Start(e)) if in_container && e.local_name().as_ref() == local.as_bytes() => inside = true,
            Ok(Event::Text(t)) if inside => {
                texts.extend(t.decode().ok().map(|s| s.into_owned()));
                inside = false;
            }
            Ok(Event::End(_)) => inside = false,
            Ok(Event::Eof) | Err(_) => return texts,
            _ => {}
        }
    }
}

/// The text of `<Entry Key="key">` inside the first `<container>`.
pub fn entry(xml: &str, container: &str, key: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let (mut in_container, mut in_entry) = (false, false);
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) if e.local_name().as_ref() == container.as_bytes() => in_container = true,
            Event::End(e) if e.local_name().as_ref() == container.as_bytes() => in_container = false,
            Event::Start(e) if in_container && e.local_name().as_ref() == b"Entry" => {
                in_entry = e
                    .try_get_attribute("Key")
                    .ok()
                    .flatten()
                    .is_some_and(|a| a.value.as_ref() == key.as_bytes());
            }
            Event::Text(t) if in_entry => return t.decode().ok().map(|s| s.into_owned()),
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// The values of `attr` on every element with this local name.
pub fn xml_attrs(xml: &str, local: &str, attr: &str) -> Vec<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut values = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) if e.local_name().as_ref() == local.as_bytes() => {
                if let Ok(Some(a)) = e.try_get_attribute(attr) {
                    values.push(String::from_utf8_lossy(&a.value).into_owned());
                }
            }
            Ok(Event::Eof) | Err(_) => return values,
            _ => {}
        }
    }
}

pub fn xml_attr(xml: &str, local: &str, attr: &str) -> Option<String> {
    xml_attrs(xml, local, attr).into_iter().next()
}

/// `tandem demo --manual` as a child process.
pub struct DemoProcess {
    child: tokio::process::Child,
    pub endpoints: BTreeMap<String, String>,
}

impl DemoProcess {
    pub async fn spawn(state_dir: &Path) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["demo", "--manual", "--state-dir"])
            .arg(state_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut endpoints = BTreeMap::new();
        let wanted = ["siebel", "siebel-auth", "ews", "ews-auth", "admin", "admin-token"];
        let read = async {
            while let Some(line) = lines.next_line().await? {
                if let Some((key, value)) = line.split_once(": ") {
                    if wanted.contains(&key) {
                        endpoints.insert(key.to_owned(), value.to_owned());
                    }
                }
                if endpoints.len() == wanted.len() {
                    return anyhow::Ok(());
                }
            }
            bail!("tandem demo exited before printing its endpoints: {endpoints:?}")
        };
        tokio::time::timeout(Duration::from_secs(120), read).await.context("tandem demo did not print its endpoints")??;
        Ok(Self { child, endpoints })
    }

    /// Sends SIGTERM and returns the exit code.
    pub async fn terminate(&mut self) -> anyhow::Result<Option<i32>> {
        let pid = self.child.id().context("demo already exited")?;
        let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
        ensure!(status.success(), "kill -TERM failed");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??;
        Ok(status.code())
    }
}

/// The value of the Prometheus sample whose name and labels are exactly `series` (0 when
/// the series is absent, as Prometheus reads a counter that never moved).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}
