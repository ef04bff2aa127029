//! The web phone: its files are embedded in the binary and served at `/` (over https when TLS
//! is configured, like everything on the listener).

use axum::Router;
use axum::http::header;
use axum::routing::get;

/// (path, content type, contents).
const FILES: [(&str, &str, &str); 9] = [
    ("/", HTML, include_str!("../../web/index.html")),
    ("/index.html", HTML, include_str!("../../web/index.html")),
    ("/app.js", JS, include_str!("../../web/app.js")),
    ("/sylkrtc.js", JS, include_str!("../../web/sylkrtc.js")),
    ("/md5.js", JS, include_str!("../../web/md5.js")),
    ("/emitter.js", JS, include_str!("../../web/emitter.js")),
    ("/messages.js", JS, include_str!("../../web/messages.js")),
    (
        "/addressbook.js",
        JS,
        include_str!("../../web/addressbook.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../../web/style.css"),
    ),
];

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// The page may only load its own files and talk to this gateway.
const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; media-src 'self' blob: mediastream:; \
                   img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The paths the web phone takes (the WebSocket path must be another).
pub(crate) fn paths() -> impl Iterator<Item = &'static str> {
    FILES
        .iter()
        .map(|(path, _, _)| *path)
        .chain(["/settings.json"])
}

/// The page's files, and its settings: where the sylkRTC endpoint is (`websocket_path`).
pub(crate) fn routes(websocket_path: &str) -> Router {
    let mut router = Router::new();
    for (path, content_type, body) in FILES {
        router = router.route(
            path,
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, content_type),
                        (header::CACHE_CONTROL, "no-cache"),
                        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                        (header::CONTENT_SECURITY_POLICY, CSP),
                    ],
                    body,
                )
            }),
        );
    }
    let settings = serde_json::json!({ "websocket_path": websocket_path }).to_string();
    router.route(
        "/settings.json",
        get(move || {
            let settings = settings.clone();
            async move {
                (
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    settings,
                )
            }
        }),
    )
}
