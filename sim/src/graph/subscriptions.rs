//! `/v1.0/subscriptions`: change notifications POSTed to a webhook. Creating one first does
//! the validation handshake (the emulator POSTs `?validationToken=…` to the notification URL,
//! and to the lifecycle URL when given, and wants the token back as `text/plain` with 200
//! within 10 s); changes are then posted as `{"value": [...]}` with the `clientState`.
//! Lifecycle notifications (`reauthorizationRequired`, `subscriptionRemoved`, `missed`) are
//! sent when a test asks (`POST /_sim/graph/lifecycle`). Webhooks must be on loopback.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::ApiError;
use super::store::{CollectionRef, Kind};

/// How long the emulator waits for a validation answer (Graph: 10 s).
pub const VALIDATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest lifetime of a contact or event subscription, in minutes.
pub const MAX_MINUTES_OUTLOOK: i64 = 10_080;
/// Longest lifetime of a To Do task subscription, in minutes.
pub const MAX_MINUTES_TODO: i64 = 4_230;

/// What a subscription watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// `/users/{id}/contacts`: every contact folder.
    AllContacts,
    /// `/users/{id}/contactFolders/{id}/contacts`.
    ContactFolder(String),
    /// `/users/{id}/events`.
    Events,
    /// `/users/{id}/todo/lists/{id}/tasks`.
    TodoList(String),
}

impl Watched {
    /// Whether a change in `collection` concerns this subscription.
    pub fn covers(&self, collection: &CollectionRef) -> bool {
        match (self, collection) {
            (Watched::AllContacts, CollectionRef::ContactFolder(_)) => true,
            (Watched::ContactFolder(a), CollectionRef::ContactFolder(b)) => a == b,
            (Watched::Events, CollectionRef::Calendar) => true,
            (Watched::TodoList(a), CollectionRef::TodoList(b)) => a == b,
            _ => false,
        }
    }

    fn max_minutes(&self) -> i64 {
        match self {
            Watched::TodoList(_) => MAX_MINUTES_TODO,
            _ => MAX_MINUTES_OUTLOOK,
        }
    }
}

/// A live subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub resource: String,
    pub mailbox: String,
    pub watched: Watched,
    pub change_types: Vec<String>,
    pub notification_url: String,
    pub lifecycle_url: Option<String>,
    pub client_state: Option<String>,
    pub expiration: DateTime<Utc>,
    pub application_id: String,
}

impl Subscription {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": self.change_types.join(","),
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": self.expiration.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "creatorId": self.application_id,
            "includeResourceData": false,
            "latestSupportedTlsVersion": "v1_2",
            "encryptionCertificate": null,
            "encryptionCertificateId": null,
            "notificationUrlAppId": null,
        })
    }
}

/// Reads `users/{id}/contacts` and the other supported resources (leading `/` optional);
/// returns the mailbox (as given, not yet lower-cased) and what is watched.
pub fn parse_resource(resource: &str) -> Result<(String, Watched), ApiError> {
    let segments: Vec<String> = resource
        .trim_matches('/')
        .split('/')
        .map(super::query::percent_decode)
        .collect();
    let strs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let watched = match strs.as_slice() {
        [users, user, "contacts"] if users.eq_ignore_ascii_case("users") => {
            Some((user, Watched::AllContacts))
        }
        [users, user, "contactFolders", folder, "contacts"]
            if users.eq_ignore_ascii_case("users") =>
        {
            Some((user, Watched::ContactFolder((*folder).to_owned())))
        }
        [users, user, "events"] if users.eq_ignore_ascii_case("users") => {
            Some((user, Watched::Events))
        }
        [users, user, "todo", "lists", list, "tasks"] if users.eq_ignore_ascii_case("users") => {
            Some((user, Watched::TodoList((*list).to_owned())))
        }
        _ => None,
    };
    match watched {
        Some((user, watched)) => Ok(((*user).to_owned(), watched)),
        None if strs.first().is_some_and(|s| s.eq_ignore_ascii_case("me")) => {
            Err(ApiError::bad_request(
                "ExtensionError",
                "/me is only valid with delegated authentication; use /users/{id}/... with an application token.",
            ))
        }
        None => Err(ApiError::bad_request(
            "InvalidRequest",
            format!(
                "Resource '{resource}' is not supported by the emulator: use /users/{{id}}/contacts, /users/{{id}}/contactFolders/{{id}}/contacts, /users/{{id}}/events or /users/{{id}}/todo/lists/{{id}}/tasks."
            ),
        )),
    }
}

/// The changeType list, checked.
pub fn parse_change_types(text: &str) -> Result<Vec<String>, ApiError> {
    let types: Vec<String> = text
        .split(',')
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    if types.is_empty()
        || types
            .iter()
            .any(|t| !matches!(t.as_str(), "created" | "updated" | "deleted"))
    {
        return Err(ApiError::bad_request(
            "InvalidRequest",
            format!(
                "changeType '{text}' is not valid: use created, updated and/or deleted, comma-separated."
            ),
        ));
    }
    Ok(types)
}

/// Checks an expiration against the resource's maximum lifetime.
pub fn check_expiration(watched: &Watched, text: &str) -> Result<DateTime<Utc>, ApiError> {
    let expiration = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::bad_request(
                "InvalidRequest",
                format!("expirationDateTime '{text}' is not an ISO 8601 date and time."),
            )
        })?;
    let now = Utc::now();
    if expiration <= now {
        return Err(ApiError::bad_request(
            "InvalidRequest",
            "Subscription expiration must be in the future.",
        ));
    }
    let max = watched.max_minutes();
    if expiration > now + chrono::Duration::minutes(max) {
        return Err(ApiError::bad_request(
            "InvalidRequest",
            format!("Subscription expiration can only be {max} minutes in the future."),
        ));
    }
    Ok(expiration)
}

/// Webhooks must be http(s) on a loopback address (the emulator never calls out further).
pub fn check_webhook_url(name: &str, url: &str) -> Result<(), ApiError> {
    let invalid =
        |why: &str| ApiError::bad_request("InvalidRequest", format!("{name} '{url}' {why}"));
    let parsed = reqwest::Url::parse(url).map_err(|_| invalid("is not a valid URL."))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("must be an http or https URL."));
    }
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(invalid(
            "must be on a loopback address (127.0.0.1, localhost or [::1]) in the emulator.",
        ));
    }
    Ok(())
}

/// The validation handshake: POST `url?validationToken=TOKEN`; the endpoint must answer 200
/// with the token as its body within [`VALIDATION_TIMEOUT`].
pub async fn validate_endpoint(
    http: &reqwest::Client,
    name: &str,
    url: &str,
) -> Result<(), ApiError> {
    let token = format!(
        "Validation: Testing client application reachability for subscription Request-Id: {}",
        uuid::Uuid::new_v4()
    );
    let mut target = reqwest::Url::parse(url).map_err(|_| {
        ApiError::bad_request(
            "InvalidRequest",
            format!("{name} '{url}' is not a valid URL."),
        )
    })?;
    target
        .query_pairs_mut()
        .append_pair("validationToken", &token);
    let failed = |why: String| {
        ApiError::bad_request(
            "ValidationError",
            format!(
                "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request ({name}: {why})."
            ),
        )
    };
    let reply = http
        .post(target)
        .header("content-type", "text/plain; charset=utf-8")
        .timeout(VALIDATION_TIMEOUT)
        .send()
        .await
        .map_err(|error| failed(format!("no answer: {error}")))?;
    let status = reply.status();
    let body = reply
        .text()
        .await
        .map_err(|error| failed(format!("unreadable answer: {error}")))?;
    if !status.is_success() {
        return Err(failed(format!("HTTP {status}")));
    }
    if body.trim() != token {
        return Err(failed("the answer is not the validationToken".into()));
    }
    Ok(())
}

/// One change notification's JSON (without resource data, as for Outlook resources).
pub fn change_notification(
    subscription: &Subscription,
    tenant_id: &str,
    change_type: &str,
    kind: Kind,
    collection: &CollectionRef,
    item_id: &str,
    etag: Option<&str>,
) -> Value {
    let (resource, odata_type) = match (kind, collection) {
        (Kind::TodoTask, CollectionRef::TodoList(list)) => (
            format!(
                "Users/{}/todo/lists/{list}/tasks/{item_id}",
                subscription.mailbox
            ),
            "#Microsoft.Graph.todoTask",
        ),
        (Kind::Event, _) => (
            format!("Users/{}/Events/{item_id}", subscription.mailbox),
            "#Microsoft.Graph.Event",
        ),
        _ => (
            format!("Users/{}/Contacts/{item_id}", subscription.mailbox),
            "#Microsoft.Graph.Contact",
        ),
    };
    let mut resource_data =
        json!({"@odata.type": odata_type, "@odata.id": resource, "id": item_id});
    if let (Some(etag), Some(map)) = (etag, resource_data.as_object_mut()) {
        map.insert("@odata.etag".into(), json!(etag));
    }
    json!({
        "subscriptionId": subscription.id,
        "subscriptionExpirationDateTime": subscription.expiration.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "changeType": change_type,
        "resource": resource,
        "resourceData": resource_data,
        "clientState": subscription.client_state,
        "tenantId": tenant_id,
    })
}

/// A lifecycle notification's JSON.
pub fn lifecycle_notification(subscription: &Subscription, tenant_id: &str, event: &str) -> Value {
    json!({
        "subscriptionId": subscription.id,
        "subscriptionExpirationDateTime": subscription.expiration.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "tenantId": tenant_id,
        "clientState": subscription.client_state,
        "lifecycleEvent": event,
    })
}

/// Posts `{"value": [notification]}` to a webhook in the background (failures are logged;
/// the emulator does not retry).
pub fn post_in_background(http: &reqwest::Client, url: String, notification: Value) {
    let http = http.clone();
    tokio::spawn(async move {
        let body = json!({"value": [notification]});
        match http
            .post(&url)
            .json(&body)
            .timeout(VALIDATION_TIMEOUT)
            .send()
            .await
        {
            Ok(reply) if reply.status().is_success() => {}
            Ok(reply) => {
                tracing::debug!(status = %reply.status(), %url, "webhook refused a Graph notification")
            }
            Err(error) => tracing::debug!(%error, %url, "could not deliver a Graph notification"),
        }
    });
}
