//! The overview: requests and conversion over time, deliveries, receipt latency and fraud
//! blocks (drawn by uPlot from figures embedded in the page), and tables by country, channel
//! and route.

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::report::{self, Range, Row, Stats, MOST_ROWS};
use super::{store_error, Admin};
use crate::api::html::escape;
use crate::api::AppState;

#[derive(Deserialize)]
pub struct RangeQuery {
    #[serde(default)]
    range: String,
}

fn country_of(digits: &str) -> Option<String> {
    crate::domain::PhoneNumber::parse(&format!("+{digits}"), None)
        .ok()?
        .region()
        .map(str::to_owned)
}

async fn load(app: &AppState, range: Range) -> Result<Stats, crate::store::StoreError> {
    let now = chrono::Utc::now();
    let since = range.since(now);
    let store = &app.dashboard.store;
    let started = store.started_since(since, MOST_ROWS).await?;
    let tried = store.tried_since(since, MOST_ROWS).await?;
    let decisions = store.decisions(None, since).await?;
    Ok(report::stats(
        range, now, &started, &tried, &decisions, country_of,
    ))
}

fn table(id: &str, first: &str, total: &str, good: &str, rows: &[Row], failed: bool) -> String {
    let mut out = format!(
        "<table id={id}><thead><tr><th>{first}</th><th>{total}</th><th>{good}</th><th></th>{}</tr></thead><tbody>",
        if failed { "<th>Failed</th>" } else { "" }
    );
    for r in rows {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><meter min=0 max={} value={}></meter></td>{}</tr>",
            escape(&r.name),
            r.total,
            r.good,
            r.total.max(1),
            r.good,
            if failed { format!("<td>{}</td>", r.failed) } else { String::new() }
        ));
    }
    if rows.is_empty() {
        let span = if failed { 5 } else { 4 };
        out.push_str(&format!(
            "<tr><td colspan={span} class=empty>Nothing in this period.</td></tr>"
        ));
    }
    out.push_str("</tbody></table>");
    out
}

pub async fn page(
    State(app): State<AppState>,
    admin: Admin,
    Query(q): Query<RangeQuery>,
) -> Response {
    let range = Range::parse(&q.range).unwrap_or(Range::Day);
    let stats = match load(&app, range).await {
        Ok(stats) => stats,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: could not read the charts' figures");
            return store_error();
        }
    };
    let mut body = String::from("<nav class=ranges>");
    for r in Range::ALL {
        let mark = if r == range { " aria-current=page" } else { "" };
        body.push_str(&format!(
            "<a href=\"/dashboard?range={0}\"{mark}>{0}</a>",
            r.as_str()
        ));
    }
    body.push_str("</nav>");
    if stats.cut {
        body.push_str(&format!(
            "<p class=hint>More than {MOST_ROWS} rows in this period: the newest are counted.</p>"
        ));
    }
    let totals = (
        stats.started.iter().sum::<u64>(),
        stats.verified.iter().sum::<u64>(),
    );
    body.push_str(&format!(
        "<p class=totals><strong>{}</strong> started, <strong>{}</strong> verified ({}) in the last {}</p>",
        totals.0,
        totals.1,
        if totals.0 > 0 {
            format!("{:.1} %", 100.0 * totals.1 as f64 / totals.0 as f64)
        } else {
            "—".into()
        },
        range.as_str()
    ));
    // Data, not code: the policy lets no inline script run, and charts.js reads it.
    let json = serde_json::to_string(&stats).unwrap_or_else(|_| "{}".into());
    body.push_str(&format!(
        "<script type=\"application/json\" id=stats>{}</script>",
        json.replace('<', "\\u003c")
    ));
    body.push_str(
        "<div class=charts>\
         <figure id=chart-requests><figcaption>Requests and conversion</figcaption></figure>\
         <figure id=chart-delivery><figcaption>Delivery</figcaption></figure>\
         <figure id=chart-latency><figcaption>Receipt latency (s)</figcaption></figure>\
         <figure id=chart-blocks><figcaption>Fraud blocks</figcaption></figure></div>\
         <div class=tables><section><h2>By country</h2>",
    );
    body.push_str(&table(
        "by-country",
        "Country",
        "Started",
        "Verified",
        &stats.by_country,
        false,
    ));
    body.push_str("</section><section><h2>By channel</h2>");
    body.push_str(&table(
        "by-channel",
        "Channel",
        "Tries",
        "Delivered",
        &stats.by_channel,
        true,
    ));
    body.push_str("</section><section><h2>By route</h2>");
    body.push_str(&table(
        "by-route",
        "Route",
        "Tries",
        "Delivered",
        &stats.by_route,
        true,
    ));
    body.push_str("</section></div>");
    let head = "<link rel=stylesheet href=\"/dashboard/assets/uPlot.min.css\">\
                <script defer src=\"/dashboard/assets/uPlot.iife.min.js\"></script>\
                <script defer src=\"/dashboard/assets/charts.js\"></script>";
    admin.page("Overview", "/dashboard", head, &body)
}
