//! What Twilio's APIs share: the answer to a create request, and the signature of callbacks
//! (`X-Twilio-Signature`).

use std::collections::BTreeMap;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;

use super::http::{answer, excerpt, status_error, transport_error};
use super::{Failure, ReceiptError, ReceiptRequest, SendError};

#[derive(Deserialize)]
struct Created {
    sid: String,
}

#[derive(Deserialize)]
struct TwilioError {
    code: Option<i64>,
    message: Option<String>,
}

/// Posts `form` to `{base_url}/2010-04-01/Accounts/{account_sid}/{resource}.json` with Basic
/// auth; the sid of what it made (a message, a call), or Twilio's error.
pub async fn create(
    client: &reqwest::Client,
    base_url: &str,
    account_sid: &str,
    auth_token: &str,
    resource: &str,
    form: &[(&str, String)],
) -> Result<String, SendError> {
    let url = format!(
        "{}/2010-04-01/Accounts/{account_sid}/{resource}.json",
        base_url.trim_end_matches('/')
    );
    let response = client
        .post(url)
        .basic_auth(account_sid, Some(auth_token))
        .form(form)
        .send()
        .await
        .map_err(transport_error)?;
    created(response).await
}

/// The sid of what a create request made, or Twilio's error.
async fn created(response: reqwest::Response) -> Result<String, SendError> {
    let (status, headers, body) = answer(response).await?;
    if status.is_success() {
        let created: Created = serde_json::from_str(&body).map_err(|_| {
            SendError::Temporary(Failure::new(
                "answer",
                format!(
                    "Twilio answered {status} without a sid: {}",
                    excerpt(&body, 200)
                ),
            ))
        })?;
        return Ok(created.sid);
    }
    let failure = match serde_json::from_str::<TwilioError>(&body) {
        Ok(TwilioError {
            code: Some(code),
            message,
        }) => Failure::new(code.to_string(), message.unwrap_or_default()),
        _ => Failure::new(format!("http-{}", status.as_u16()), excerpt(&body, 200)),
    };
    Err(status_error(status, &headers, failure))
}

/// Twilio's signature of a callback: HMAC-SHA1 with the auth token over the URL followed by
/// every form parameter's name and value, sorted by name.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A callback's form parameters, once its signature is checked.
pub fn signed_params(
    auth_token: &str,
    request: &ReceiptRequest,
) -> Result<BTreeMap<String, String>, ReceiptError> {
    let params: Vec<(String, String)> =
        form_urlencoded::parse(&request.body).into_owned().collect();
    let given = request
        .headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or(ReceiptError::BadSignature)?;
    let expected = signature(auth_token, &request.url, &params);
    use subtle::ConstantTimeEq;
    if given.len() != expected.len() || !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(ReceiptError::BadSignature);
    }
    Ok(params.into_iter().collect())
}
