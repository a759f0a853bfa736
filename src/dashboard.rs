//! The dashboards' static files, compiled into the binary (no CDN: many
//! operators' networks have no internet): the customer page at
//! `/dashboard` on the main listener and the operator console at `/admin`
//! on the admin listener. They hold no secret and no data: the pages ask
//! for a key or the admin token, keep it in the tab's session storage, and
//! call the gateway's own JSON APIs. Every answer carries a strict
//! Content-Security-Policy (no inline script or style, nothing from
//! elsewhere) and headers that keep the pages out of frames and caches.

/// One file: its bytes and media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    pub body: &'static [u8],
    pub content_type: &'static str,
}

/// Scripts, styles and calls only from this origin; no plugin, no frame,
/// no form posted anywhere, no base URL rewriting.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The headers every dashboard answer carries besides its type.
pub const HEADERS: [(&str, &str); 5] = [
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cache-control", "no-store"),
];

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

fn shared(file: &str) -> Option<Asset> {
    match file {
        "style.css" => Some(Asset { body: include_bytes!("dashboard/assets/style.css"), content_type: CSS }),
        "common.js" => Some(Asset { body: include_bytes!("dashboard/assets/common.js"), content_type: JS }),
        "icon.svg" => Some(Asset { body: include_bytes!("dashboard/assets/icon.svg"), content_type: SVG }),
        _ => None,
    }
}

/// The customer page's file at `path` (under `/dashboard`).
pub fn customer(path: &str) -> Option<Asset> {
    match path {
        "/dashboard" | "/dashboard/" => {
            Some(Asset { body: include_bytes!("dashboard/assets/customer.html"), content_type: HTML })
        }
        "/dashboard/assets/customer.js" => {
            Some(Asset { body: include_bytes!("dashboard/assets/customer.js"), content_type: JS })
        }
        _ => shared(path.strip_prefix("/dashboard/assets/")?),
    }
}

/// The operator console's file at `path` (under `/admin`).
pub fn console(path: &str) -> Option<Asset> {
    match path {
        "/admin" | "/admin/" => {
            Some(Asset { body: include_bytes!("dashboard/assets/admin.html"), content_type: HTML })
        }
        "/admin/assets/admin.js" => {
            Some(Asset { body: include_bytes!("dashboard/assets/admin.js"), content_type: JS })
        }
        _ => shared(path.strip_prefix("/admin/assets/")?),
    }
}

/// Whether `path` is the customer page's (answered without a key).
pub fn is_customer_path(path: &str) -> bool {
    path == "/dashboard" || path.starts_with("/dashboard/")
}

/// What the customer page fills its set-up snippets with: each mount's
/// prefix and formats, and a model to show per format (the first live
/// chat model served in it). The origin comes from the browser.
pub fn setup(mounts: &[(String, Vec<&'static str>)], models: &[(&'static str, String)]) -> Vec<u8> {
    let mounts: Vec<serde_json::Value> = mounts
        .iter()
        .map(|(prefix, formats)| serde_json::json!({ "prefix": prefix, "formats": formats }))
        .collect();
    let models: serde_json::Map<String, serde_json::Value> = models
        .iter()
        .map(|(format, id)| ((*format).to_string(), serde_json::Value::from(id.as_str())))
        .collect();
    serde_json::json!({ "mounts": mounts, "models": models }).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_page_and_its_files_are_served_and_nothing_else() {
        for path in
            ["/dashboard", "/dashboard/", "/dashboard/assets/customer.js", "/dashboard/assets/style.css"]
        {
            assert!(customer(path).is_some(), "{path}");
        }
        for path in ["/admin", "/admin/assets/admin.js", "/admin/assets/common.js"] {
            assert!(console(path).is_some(), "{path}");
        }
        for path in ["/dashboard/assets/admin.js", "/dashboard/assets/../customer.html", "/dashboard/x"] {
            assert!(customer(path).is_none(), "{path}");
        }
        assert!(console("/admin/assets/customer.js").is_none());
    }

    #[test]
    fn the_pages_have_no_inline_script_or_style_and_load_nothing_from_elsewhere() {
        for page in [customer("/dashboard"), console("/admin")] {
            let html = std::str::from_utf8(page.map(|a| a.body).unwrap_or_default()).unwrap_or_default();
            assert!(html.contains("<script src="), "{html}");
            assert!(!html.contains("<script>") && !html.contains("<style") && !html.contains(" style="));
            for handler in ["onclick=", "onsubmit=", "onload=", "onerror=", "javascript:"] {
                assert!(!html.contains(handler), "no inline handler: {handler}");
            }
            assert!(!html.contains("http://") && !html.contains("https://"), "nothing from elsewhere");
        }
    }
}
