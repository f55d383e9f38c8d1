//! The channels: whether each can take a message now (as `/readyz` says), a form to send one
//! test message through any of them, and the test numbers in force.

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{csrf_field, Admin};
use crate::api::html::escape;
use crate::api::AppState;
use crate::cli::send_test;
use crate::config::delivery::{Kind, INBOX};

fn page(app: &AppState, admin: &Admin, message: &str, status: StatusCode) -> Response {
    let router = app.delivery.current();
    let config = router.config();
    let token = csrf_field(admin);
    let mut body = format!(
        "{message}<table id=channels><thead><tr><th>Channel</th><th>Type</th><th>Carries</th>\
         <th>Ready</th><th>Send a test message</th></tr></thead><tbody>"
    );
    for (name, readiness) in router.readiness() {
        let (kind_name, kinds) = match config.channels.get(name) {
            Some(c) => (
                c.spec.type_name(),
                c.spec
                    .kinds()
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            None if name == INBOX => ("inbox", "every kind".to_owned()),
            None => ("built in", String::new()),
        };
        let ready = match readiness {
            Ok(()) => "<span class=state-ok>ready</span>".to_owned(),
            Err(why) => format!("<span class=state-bad>{}</span>", escape(&why)),
        };
        let name_html = escape(name);
        body.push_str(&format!(
            "<tr><td><code>{name_html}</code></td><td>{kind_name}</td><td>{}</td><td>{ready}</td><td>\
             <form class=inline method=post action=\"/dashboard/channels/{name_html}/test\">{token}\
             <input name=to placeholder=\"+447700900123\" required aria-label=\"to\">\
             <button class=secondary type=submit>Send test</button></form></td></tr>",
            escape(&kinds)
        ));
    }
    body.push_str("</tbody></table>");
    let test_numbers = app.service.test_numbers();
    body.push_str(
        "<h2>Test numbers</h2><table id=test-numbers><thead><tr><th>Number</th>\
                   <th>Code</th></tr></thead><tbody>",
    );
    for number in test_numbers.numbers() {
        body.push_str(&format!(
            "<tr><td>+{}</td><td>fixed (in the configuration file)</td></tr>",
            escape(number)
        ));
    }
    if test_numbers.is_empty() {
        body.push_str("<tr><td colspan=2 class=empty>None: <code>[test_numbers]</code> in the configuration file lists them.</td></tr>");
    }
    body.push_str(
        "</tbody></table><p class=hint>A verification to a test number sends nothing \
                   and counts toward no limit.</p>",
    );
    (
        status,
        admin.page("Channels", "/dashboard/channels", "", &body),
    )
        .into_response()
}

pub async fn list(State(app): State<AppState>, admin: Admin) -> Response {
    page(&app, &admin, "", StatusCode::OK)
}

#[derive(Deserialize)]
pub struct TestForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    to: String,
}

pub async fn send_test(
    State(app): State<AppState>,
    admin: Admin,
    Path(name): Path<String>,
    Form(form): Form<TestForm>,
) -> Response {
    if let Err(r) = admin.check_form(&app, &form.csrf) {
        return r.into_response();
    }
    let router = app.delivery.current();
    let refused = |why: String, status| {
        let message = format!("<p class=error role=alert>{}</p>", escape(&why));
        page(&app, &admin, &message, status)
    };
    let Some((channel, limit, from)) = router.running(&name) else {
        return refused(
            format!("There is no channel {name:?} running."),
            StatusCode::NOT_FOUND,
        );
    };
    let config = router.config().channels.get(&name);
    let kind = config.map_or(Kind::Sms, |c| c.spec.kinds()[0]);
    let to = match send_test::destination(kind, form.to.trim()) {
        Ok(to) => to,
        Err(e) => return refused(e.to_string(), StatusCode::BAD_REQUEST),
    };
    if let Err(r) = admin
        .audit(
            &app,
            "channel.send_test",
            &name,
            &format!("to {}", to.masked()),
        )
        .await
    {
        return r.into_response();
    }
    let from = from.map_or_else(|| crate::channel::DEFAULT_SENDER.to_owned(), str::to_owned);
    let message = send_test::test_message(&name, kind, to, from, None);
    let sent = send_test::send_within(channel.as_ref(), &message, limit).await;
    match sent {
        Ok(accepted) => {
            let message = format!(
                "<p class=notice role=status>Channel {} accepted the test message to {} \
                 (message id <code>{}</code>).</p>",
                escape(&name),
                escape(&message.to.masked()),
                escape(&accepted.message_id)
            );
            page(&app, &admin, &message, StatusCode::OK)
        }
        Err(e) => {
            let advice = config
                .map(|c| send_test::advice(&c.spec, &e, c.timeout))
                .unwrap_or_default();
            refused(
                format!("{name}: {}. {advice}", e.failure()),
                StatusCode::BAD_GATEWAY,
            )
        }
    }
}
