//! The look shared by the dashboard and the inbox: one layout, one stylesheet
//! (`/dashboard/assets/dashboard.css`), text escaped once here.

/// Text for HTML content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Who is looking at a page: the admin's name and the token its forms carry.
pub struct Viewer<'a> {
    pub admin: &'a str,
    pub csrf: &'a str,
}

/// The pages of the navigation bar: (path, label).
const NAV: [(&str, &str); 6] = [
    ("/dashboard", "Overview"),
    ("/dashboard/verifications", "Verifications"),
    ("/dashboard/keys", "API keys"),
    ("/dashboard/channels", "Channels"),
    ("/dashboard/audit", "Audit log"),
    ("/inbox", "Inbox"),
];

/// A whole page. `current` is the navigation path to mark; `head` is extra markup for the head
/// (scripts, which the dashboard's policy allows only from its own assets).
pub fn page(
    title: &str,
    current: &str,
    viewer: Option<&Viewer<'_>>,
    head: &str,
    body: &str,
) -> String {
    let mut nav = String::new();
    for (path, label) in NAV {
        let mark = if path == current {
            " aria-current=page"
        } else {
            ""
        };
        nav.push_str(&format!("<a href=\"{path}\"{mark}>{label}</a>"));
    }
    let account = match viewer {
        Some(v) => format!(
            "<form class=logout method=post action=\"/dashboard/logout\">\
             <input type=hidden name=csrf value=\"{}\"><span class=admin>{}</span>\
             <button type=submit>Log out</button></form>",
            escape(v.csrf),
            escape(v.admin)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <title>{title} · verifyd</title><link rel=icon href=\"data:,\">\
         <link rel=stylesheet href=\"/dashboard/assets/dashboard.css\">{head}</head>\n\
         <body><header><a class=brand href=\"/dashboard\">verifyd</a><nav>{nav}</nav>{account}</header>\n\
         <main><h1>{title}</h1>\n{body}</main></body></html>\n",
        title = escape(title),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_is_shown_not_run() {
        assert_eq!(
            escape(r#"<script>alert('x' & "y")</script>"#),
            "&lt;script&gt;alert(&#39;x&#39; &amp; &quot;y&quot;)&lt;/script&gt;"
        );
    }

    #[test]
    fn the_current_page_is_marked_and_names_are_escaped() {
        let html = page(
            "Keys <1>",
            "/dashboard/keys",
            Some(&Viewer {
                admin: "<ops>",
                csrf: "t",
            }),
            "",
            "",
        );
        assert!(html.contains("<a href=\"/dashboard/keys\" aria-current=page>API keys</a>"));
        assert!(html.contains("<title>Keys &lt;1&gt; · verifyd</title>"));
        assert!(html.contains("&lt;ops&gt;"));
        assert!(!html.contains("<ops>"));
    }
}
