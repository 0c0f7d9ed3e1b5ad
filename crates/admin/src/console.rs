//! The web console: a single-page app (source in `console/` at the repository's root, built
//! with esbuild from npm) whose built files are committed in `crates/admin/console/` and
//! embedded here at compile time, so the binary builds without Node. It talks only to the
//! `/v1` admin API and `/metrics`-free JSON, and updates itself by polling.

use hyper::{Response, StatusCode};

use crate::{error, Body};

const INDEX_HTML: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const APP_CSS: &str = include_str!("../console/app.css");

pub fn index() -> Response<Body> {
    with_cache(crate::respond(
        StatusCode::OK,
        "text/html; charset=utf-8",
        INDEX_HTML,
    ))
}

pub fn asset(file: &str) -> Response<Body> {
    let (content_type, body) = match file {
        "app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "app.css" => ("text/css; charset=utf-8", APP_CSS),
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no such file: /console/{file}"),
            )
        }
    };
    with_cache(crate::respond(StatusCode::OK, content_type, body))
}

/// The console changes with the binary: browsers revalidate rather than keep an old one.
fn with_cache(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut().insert(
        "cache-control",
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    r
}
