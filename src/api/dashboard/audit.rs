//! The audit log: every admin action and login, newest first.

use axum::extract::State;
use axum::response::Response;

use super::{store_error, Admin};
use crate::api::html::escape;
use crate::api::AppState;

/// Entries the page shows.
const SHOWN: usize = 500;

pub async fn page(State(app): State<AppState>, admin: Admin) -> Response {
    let entries = match app.dashboard.store.audit_log(SHOWN).await {
        Ok(entries) => entries,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: could not read the audit log");
            return store_error();
        }
    };
    let mut body = String::from(
        "<table id=audit><thead><tr><th>Time (UTC)</th><th>Admin</th><th>Action</th>\
         <th>Target</th><th>Detail</th></tr></thead><tbody>",
    );
    for e in &entries {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            e.at.format("%Y-%m-%d %H:%M:%S"),
            escape(&e.admin),
            escape(&e.action),
            escape(&e.target),
            escape(&e.detail)
        ));
    }
    if entries.is_empty() {
        body.push_str("<tr><td colspan=5 class=empty>Nothing yet.</td></tr>");
    }
    body.push_str("</tbody></table>");
    if entries.len() == SHOWN {
        body.push_str(&format!("<p class=hint>The newest {SHOWN} entries.</p>"));
    }
    admin.page("Audit log", "/dashboard/audit", "", &body)
}
