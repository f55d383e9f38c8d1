//! Verify v2 templates end to end: the HAL documents, their errors, and the words a request
//! takes from a template, on this binary's engine.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{number, spawn_app, TestApp};
use crate::v2::{problem, Answer, Auth};

impl TestApp {
    async fn t(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.v2(method, path, body, Auth::Basic).await
    }

    /// Creates template `name`; its id.
    async fn template(&self, name: &str) -> String {
        let a = self
            .t(
                Method::POST,
                "/v2/verify/templates",
                Some(json!({ "name": name })),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
        a.body["template_id"].as_str().unwrap().to_owned()
    }

    /// Adds a fragment to template `id`; its id.
    async fn fragment(&self, id: &str, channel: &str, locale: &str, text: &str) -> String {
        let a = self
            .t(
                Method::POST,
                &format!("/v2/verify/templates/{id}/template_fragments"),
                Some(json!({ "channel": channel, "locale": locale, "text": text })),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
        a.body["template_fragment_id"].as_str().unwrap().to_owned()
    }

    /// The text of the newest message of request `id` on `channel`.
    async fn text_of(&self, to: &str, id: &str, channel: &str, n: usize) -> String {
        let list = self.messages_for(to, &id.replace('-', ""), n).await;
        let newest = list.iter().find(|m| m["channel"] == channel).unwrap();
        newest["text"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn templates_are_created_listed_renamed_made_default_and_deleted_as_hal_documents() {
    let Some(app) = spawn_app().await else { return };
    let base = app.url("");
    let first = app
        .t(
            Method::POST,
            "/v2/verify/templates",
            Some(json!({ "name": "login" })),
        )
        .await;
    assert_eq!(first.status, 201);
    assert_eq!(first.content_type, "application/json");
    let id = first.body["template_id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::try_parse(&id).is_ok());
    let url = format!("{base}/v2/verify/templates/{id}");
    assert_eq!(
        first.body,
        json!({ "template_id": id, "name": "login", "is_default": true, "_links": {
            "self": { "href": url }, "fragments": { "href": format!("{url}/template_fragments") } } })
    );
    let second = app.template("reset").await;
    let third = app.template("signup").await;
    let taken = app
        .t(
            Method::POST,
            "/v2/verify/templates",
            Some(json!({ "name": "reset" })),
        )
        .await;
    problem(&taken, 409, "template-exists");

    let page = app
        .t(Method::GET, "/v2/verify/templates?page_size=2&page=1", None)
        .await;
    assert_eq!(page.status, 200);
    assert_eq!(page.content_type, "application/json");
    assert_eq!(
        (
            &page.body["page_size"],
            &page.body["page"],
            &page.body["total_pages"],
            &page.body["total_items"]
        ),
        (&json!(2), &json!(1), &json!(2), &json!(3))
    );
    let names: Vec<&str> = page.body["_embedded"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["login", "reset"]);
    let list = format!("{base}/v2/verify/templates");
    assert_eq!(
        page.body["_links"]["next"]["href"],
        format!("{list}?page_size=2&page=2")
    );
    assert_eq!(
        page.body["_links"]["last"]["href"],
        format!("{list}?page_size=2&page=2")
    );
    assert!(page.body["_links"].get("prev").is_none());
    let last = app
        .t(Method::GET, "/v2/verify/templates?page_size=2&page=2", None)
        .await;
    assert_eq!(
        last.body["_embedded"]["templates"][0]["template_id"],
        third.as_str()
    );
    assert!(last.body["_links"].get("next").is_none());

    // The Node SDK sends `is_default` on every update, false unless told.
    let renamed = app
        .t(
            Method::PATCH,
            &format!("/v2/verify/templates/{second}"),
            Some(json!({ "name": "password-reset", "is_default": true })),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(
        (&renamed.body["name"], &renamed.body["is_default"]),
        (&json!("password-reset"), &json!(true))
    );
    let old_default = app
        .t(Method::GET, &format!("/v2/verify/templates/{id}"), None)
        .await;
    assert_eq!(
        old_default.body["is_default"], false,
        "one default at a time"
    );
    let clash = app
        .t(
            Method::PATCH,
            &format!("/v2/verify/templates/{id}"),
            Some(json!({ "name": "signup" })),
        )
        .await;
    problem(&clash, 409, "template-exists");

    let deleted = app
        .t(
            Method::DELETE,
            &format!("/v2/verify/templates/{third}"),
            None,
        )
        .await;
    assert_eq!(
        (deleted.status.as_u16(), deleted.body.clone()),
        (204, Value::Null)
    );
    for gone in [
        app.t(Method::GET, &format!("/v2/verify/templates/{third}"), None)
            .await,
        app.t(
            Method::DELETE,
            &format!("/v2/verify/templates/{third}"),
            None,
        )
        .await,
        app.t(Method::GET, "/v2/verify/templates/not-a-uuid", None)
            .await,
    ] {
        problem(&gone, 404, "template-not-found");
    }
}

#[tokio::test]
async fn fragments_are_one_per_channel_and_locale_and_keep_their_template_until_deleted() {
    let Some(app) = spawn_app().await else { return };
    let id = app.template("login").await;
    let fragments = format!("/v2/verify/templates/{id}/template_fragments");
    let made = app
        .t(
            Method::POST,
            &fragments,
            Some(json!({ "channel": "sms", "locale": "en-gb", "text": "${brand}: ${code}" })),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let fid = made.body["template_fragment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = app.url(&format!("{fragments}/{fid}"));
    assert_eq!(made.body["channel"], "sms");
    assert_eq!(made.body["locale"], "en-gb");
    assert_eq!(made.body["text"], "${brand}: ${code}");
    assert_eq!(made.body["_links"]["self"]["href"], url);
    assert_eq!(
        made.body["_links"]["template"]["href"],
        app.url(&format!("/v2/verify/templates/{id}"))
    );
    let created = made.body["date_created"].as_str().unwrap().to_owned();
    assert!(
        chrono::DateTime::parse_from_rfc3339(&created).is_ok(),
        "{created}"
    );
    assert_eq!(made.body["date_updated"], created.as_str());

    let again = app
        .t(
            Method::POST,
            &fragments,
            Some(json!({ "channel": "sms", "locale": "en-gb", "text": "${code}" })),
        )
        .await;
    problem(&again, 409, "fragment-exists");
    app.fragment(&id, "voice", "en-gb", "Your code is ${code}")
        .await;
    app.fragment(&id, "email", "de-de", "Ihr Code: ${code}")
        .await;
    let listed = app
        .t(Method::GET, &format!("{fragments}?page_size=2"), None)
        .await;
    assert_eq!(listed.body["total_items"], 3);
    assert_eq!(
        listed.body["_embedded"]["template_fragments"][0]["template_fragment_id"],
        fid.as_str()
    );
    assert!(listed.body["_links"]["next"].is_object());

    app.advance(60).await;
    let changed = app
        .t(
            Method::PATCH,
            &format!("{fragments}/{fid}"),
            Some(json!({ "text": "Code: ${code}" })),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.body["text"], "Code: ${code}");
    assert_eq!(changed.body["date_created"], created.as_str());
    assert_ne!(changed.body["date_updated"], created.as_str());
    let shown = app
        .t(Method::GET, &format!("{fragments}/{fid}"), None)
        .await;
    assert_eq!(shown.body, changed.body);

    let not_empty = app
        .t(Method::DELETE, &format!("/v2/verify/templates/{id}"), None)
        .await;
    problem(&not_empty, 409, "not-empty-template");
    let deleted = app
        .t(Method::DELETE, &format!("{fragments}/{fid}"), None)
        .await;
    assert_eq!(deleted.status, 204);
    for gone in [
        app.t(Method::GET, &format!("{fragments}/{fid}"), None)
            .await,
        app.t(
            Method::PATCH,
            &format!("{fragments}/{fid}"),
            Some(json!({ "text": "${code}" })),
        )
        .await,
        app.t(Method::DELETE, &format!("{fragments}/{fid}"), None)
            .await,
    ] {
        problem(&gone, 404, "template-fragment-not-found");
    }
    let elsewhere = app
        .t(
            Method::GET,
            "/v2/verify/templates/4ed3027d-8762-44a0-aa3f-c393717413a4/template_fragments",
            None,
        )
        .await;
    problem(&elsewhere, 404, "template-not-found");
}

#[tokio::test]
async fn an_account_keeps_ten_templates_which_no_other_account_sees() {
    let Some(app) = spawn_app().await else { return };
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(app.template(&format!("t{n}")).await);
    }
    let eleventh = app
        .t(
            Method::POST,
            "/v2/verify/templates",
            Some(json!({ "name": "t10" })),
        )
        .await;
    problem(&eleventh, 409, "max-templates");

    let (key, secret) = app.new_key(false).await;
    let other = |method: Method, path: String| {
        app.client
            .request(method, app.url(&path))
            .basic_auth(&key, Some(&secret))
            .send()
    };
    let theirs: Value = other(Method::GET, "/v2/verify/templates".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["total_items"], 0);
    assert_eq!(theirs["_embedded"]["templates"], json!([]));
    let mine = other(Method::GET, format!("/v2/verify/templates/{}", ids[0]))
        .await
        .unwrap();
    assert_eq!(mine.status(), 404);
    let delete = other(Method::DELETE, format!("/v2/verify/templates/{}", ids[0]))
        .await
        .unwrap();
    assert_eq!(delete.status(), 404);
    let unauthenticated = app
        .v2(Method::GET, "/v2/verify/templates", None, Auth::None)
        .await;
    problem(&unauthenticated, 401, "unauthorized");
}

#[tokio::test]
async fn wrong_template_fields_and_pages_are_each_named_in_one_422() {
    let Some(app) = spawn_app().await else { return };
    let names = |a: &Answer| -> Vec<String> {
        a.body["invalid_parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", a.body))
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    for body in [
        json!({ "name": "a b" }),
        json!({}),
        json!({ "name": "x".repeat(65) }),
    ] {
        let a = app
            .t(Method::POST, "/v2/verify/templates", Some(body))
            .await;
        problem(&a, 422, "invalid-params");
        assert_eq!(names(&a), ["name"]);
    }
    let id = app.template("ok").await;
    let bad = app
        .t(
            Method::POST,
            &format!("/v2/verify/templates/{id}/template_fragments"),
            Some(json!({ "channel": "whatsapp", "locale": "xx-yy", "text": "no code here" })),
        )
        .await;
    problem(&bad, 422, "invalid-params");
    assert_eq!(names(&bad), ["channel", "locale", "text"]);
    let patch = app
        .t(
            Method::PATCH,
            &format!("/v2/verify/templates/{id}"),
            Some(json!({ "is_default": "yes" })),
        )
        .await;
    assert_eq!(names(&patch), ["is_default"]);
    let page = app
        .t(Method::GET, "/v2/verify/templates?page_size=0&page=x", None)
        .await;
    assert_eq!(names(&page), ["page_size", "page"]);
    let listed = app.t(Method::GET, "/v2/verify/templates", None).await;
    assert_eq!(
        listed.body["total_items"], 1,
        "nothing was made by the refused calls"
    );
}

#[tokio::test]
async fn a_request_says_the_words_of_the_template_it_names_or_of_the_accounts_default() {
    let Some(app) = spawn_app().await else { return };
    let default = app.template("default").await;
    app.fragment(
        &default,
        "sms",
        "en-us",
        "${brand} code ${code}, good for ${time-limit} ${time-limit-unit}",
    )
    .await;
    let to = number(650);
    let id = app
        .v2_start(json!({ "brand": "Acme", "workflow": [{ "channel": "sms", "to": to }] }))
        .await;
    let text = app.text_of(&to, &id, "sms", 1).await;
    let code = app.v2_code(&to, &id, "sms", 1).await;
    assert_eq!(text, format!("Acme code {code}, good for 3 minutes"));
    assert_eq!(app.v2_check(&id, &code).await.status, 200);

    // A template of its own: its call is in its words, its SMS (it has none) in verifyd's, and
    // the words are those of the start even when the fragment changes later.
    let named = app.template("calls").await;
    let call = app
        .fragment(&named, "voice", "en-us", "Hi from ${brand}. ${code}.")
        .await;
    let to = number(651);
    let id = app
        .v2_start(
            json!({ "brand": "Acme", "template_id": named, "channel_timeout": 60,
            "workflow": [{ "channel": "sms", "to": to }, { "channel": "voice", "to": to }] }),
        )
        .await;
    let sms = app.text_of(&to, &id, "sms", 1).await;
    assert!(sms.starts_with("Acme: your verification code is"), "{sms}");
    app.t(
        Method::PATCH,
        &format!("/v2/verify/templates/{named}/template_fragments/{call}"),
        Some(json!({ "text": "Changed ${code}" })),
    )
    .await;
    app.advance(60).await;
    let spoken = app.text_of(&to, &id, "voice", 2).await;
    let code = app.v2_code(&to, &id, "voice", 2).await;
    let spelled: Vec<String> = code.chars().map(String::from).collect();
    assert_eq!(spoken, format!("Hi from Acme. {}.", spelled.join(", ")));
    assert_eq!(app.v2_check(&id, &code).await.status, 200);

    // A locale the template has no words for says verifyd's.
    let to = number(652);
    let id = app
        .v2_start(json!({ "brand": "Acme", "locale": "de-de", "workflow": [{ "channel": "sms", "to": to }] }))
        .await;
    let german = app.text_of(&to, &id, "sms", 1).await;
    assert!(german.contains("Bestätigungscode"), "{german}");

    let unknown = app
        .v2(
            Method::POST,
            "/v2/verify",
            Some(
                json!({ "brand": "Acme", "template_id": "4ed3027d-8762-44a0-aa3f-c393717413a4",
                "workflow": [{ "channel": "sms", "to": number(653) }] }),
            ),
            Auth::Basic,
        )
        .await;
    problem(&unknown, 422, "invalid-params");
    assert_eq!(unknown.body["invalid_parameters"][0]["name"], "template_id");
}
