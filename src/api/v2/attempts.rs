//! `GET /v2/verify/attempts/summary`: verifyd's own addition to the v2 surface, what conversion
//! monitoring saw of the caller's key ([`crate::fraud_report`]) over `since` (`90m`, `24h`,
//! `7d`; a day when absent).

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{InvalidParameter, V2Error};
use super::{finish, service_failed, Call};
use crate::api::AppState;
use crate::fraud_report::{parse_period, DEFAULT_PERIOD};

fn period(query: Option<&str>) -> Result<chrono::Duration, V2Error> {
    let since = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(name, _)| name == "since")
        .map(|(_, value)| value.into_owned());
    parse_period(since.as_deref().unwrap_or(DEFAULT_PERIOD))
        .map_err(|reason| V2Error::InvalidParams(vec![InvalidParameter::new("since", &reason)]))
}

pub(super) async fn summary(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    call: Call,
) -> Response {
    let result = async {
        let period = period(query.as_deref())?;
        let report = app
            .service
            .fraud_report(&call.account, period)
            .await
            .map_err(service_failed)?;
        Ok(Json(report).into_response())
    }
    .await;
    finish(&call.instance, result)
}
