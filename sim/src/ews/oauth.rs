//! OAuth 2.0 for the EWS emulator (`--auth oauth`), as Exchange Online and hybrid modern
//! authentication have it: an app gets a token from the identity platform with the client
//! credentials grant and the scope `https://outlook.office365.com/.default`, then sends it as
//! `Authorization: Bearer` with every EWS request (Microsoft, "Authenticate an EWS
//! application by using OAuth"). The emulator plays the identity platform too, at
//! `POST /oauth2/v2.0/token`, with Microsoft Entra's error codes for what it refuses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::common::Credentials;

/// The only scope the token endpoint takes: EWS's resource, app permissions.
pub const EWS_SCOPE: &str = "https://outlook.office365.com/.default";

/// Where the emulator's token endpoint answers.
pub const TOKEN_PATH: &str = "/oauth2/v2.0/token";

/// The app the token endpoint knows, and the tokens it issued.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    app: Credentials,
    lifetime: Duration,
    issued: Arc<Mutex<HashMap<String, Instant>>>,
}

impl TokenIssuer {
    pub fn new(app: Credentials, lifetime: Duration) -> Self {
        Self { app, lifetime, issued: Arc::default() }
    }

    /// The app's client id and secret.
    pub fn app(&self) -> &Credentials {
        &self.app
    }

    /// Whether `token` was issued here and has not expired.
    pub fn accepts(&self, token: &str) -> bool {
        let issued = self.issued.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        issued.get(token).is_some_and(|expires| *expires > Instant::now())
    }

    /// Forgets every token, as a revoked consent or a restarted tenant would.
    pub fn revoke_all(&self) {
        self.issued.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }

    /// Answers a token request (`application/x-www-form-urlencoded`).
    pub fn answer(&self, form: &str) -> Response {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(form).unwrap_or_default();
        let get = |name: &str| pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
        let error = |status: StatusCode, error: &str, description: &str| {
            (status, axum::Json(json!({ "error": error, "error_description": description }))).into_response()
        };
        if get("grant_type") != Some("client_credentials") {
            return error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "AADSTS70003: the app asked for an unsupported grant type");
        }
        if get("client_id") != Some(self.app.user.as_str()) {
            return error(StatusCode::BAD_REQUEST, "unauthorized_client", "AADSTS700016: application not found in the directory");
        }
        if get("client_secret") != Some(self.app.password.as_str()) {
            return error(StatusCode::UNAUTHORIZED, "invalid_client", "AADSTS7000215: invalid client secret provided");
        }
        if get("scope") != Some(EWS_SCOPE) {
            let asked = get("scope").unwrap_or("none");
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                &format!("AADSTS70011: the scope '{asked}' is not valid; an app-only EWS token needs {EWS_SCOPE}"),
            );
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.issued
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(token.clone(), Instant::now() + self.lifetime);
        axum::Json(json!({ "token_type": "Bearer", "expires_in": self.lifetime.as_secs(), "access_token": token }))
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> (StatusCode, serde_json::Value) {
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        (status, serde_json::from_slice(&bytes).expect("json"))
    }

    #[tokio::test]
    async fn tokens_are_issued_for_the_ews_scope_only_and_checked_by_lookup() {
        let issuer = TokenIssuer::new(Credentials::new("app", "secret"), Duration::from_secs(3600));
        let form = |secret: &str, scope: &str| {
            serde_urlencoded::to_string([("grant_type", "client_credentials"), ("client_id", "app"), ("client_secret", secret), ("scope", scope)])
                .expect("form")
        };
        let (status, reply) = body(issuer.answer(&form("secret", EWS_SCOPE))).await;
        assert_eq!(status, StatusCode::OK);
        let token = reply["access_token"].as_str().expect("token").to_owned();
        assert!(issuer.accepts(&token) && !issuer.accepts("forged"));
        let (status, reply) = body(issuer.answer(&form("wrong", EWS_SCOPE))).await;
        assert_eq!((status, reply["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
        let (status, reply) = body(issuer.answer(&form("secret", "https://graph.microsoft.com/.default"))).await;
        assert_eq!((status, reply["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")));
        issuer.revoke_all();
        assert!(!issuer.accepts(&token));
    }
}
