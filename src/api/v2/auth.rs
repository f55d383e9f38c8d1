//! Who is calling Verify v2: `Authorization: Basic` with an API key and secret, or
//! `Authorization: Bearer` with an application's JWT, which acts for the application's key.

use std::net::IpAddr;

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;

use super::error::V2Error;
use crate::api::body::parse_basic;
use crate::api::AppState;
use crate::auth::apps::TokenError;
use crate::auth::{Account, AuthError};
use crate::http::refusals::{self, Reason};

pub async fn authenticate(
    app: &AppState,
    headers: &HeaderMap,
    client: Option<IpAddr>,
) -> Result<Account, V2Error> {
    let header = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let result = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            bearer(app, token.trim()).await
        }
        _ => match parse_basic(header) {
            Some((key, secret)) => app
                .keys
                .authenticate(&key, &secret)
                .await
                .map_err(from_auth),
            None => Err((V2Error::Unauthorized, Some(Reason::MissingCredentials))),
        },
    };
    result.map_err(|(e, reason)| {
        // Refusals before the caller is known are counted per client, not logged one by one.
        if let Some(reason) = reason {
            if app.refusals.count(client, reason) {
                tracing::info!(reason = %e, client = %refusals::shown(client), "v2 request refused");
            }
        }
        e
    })
}

async fn bearer(app: &AppState, token: &str) -> Result<Account, (V2Error, Option<Reason>)> {
    let application = app.apps.verify(token).await.map_err(|e| match e {
        TokenError::Expired => (V2Error::JwtExpired, Some(Reason::BadCredentials)),
        TokenError::Invalid(_) => (V2Error::Unauthorized, Some(Reason::BadCredentials)),
        TokenError::Store(e) => (super::internal(e), None),
    })?;
    let account = app
        .keys
        .account(&application.api_key)
        .await
        .map_err(from_auth)?;
    Ok(Account {
        application: Some(application.application_id.clone()),
        ..account
    })
}

fn from_auth(e: AuthError) -> (V2Error, Option<Reason>) {
    match e {
        AuthError::BadCredentials => (V2Error::Unauthorized, Some(Reason::BadCredentials)),
        AuthError::Disabled => (V2Error::Disabled, Some(Reason::DisabledKey)),
        AuthError::Store(e) => (super::internal(e), None),
    }
}
