//! The server's own pages (`templates/`) and static files (`static/`), embedded in
//! the release binary (read from disk in debug builds).

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "templates/"]
struct Templates;

#[derive(RustEmbed)]
#[folder = "static/"]
struct Static;

/// Pages only load what this server serves.
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
                   style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(|| page("chat.html")))
        .route("/ticker", web::get().to(|| page("ticker.html")))
        .route("/sports", web::get().to(|| page("sports.html")))
        .route("/map", web::get().to(|| page("map.html")))
        .route("/admin", web::get().to(|| page("admin.html")))
        .route("/static/{path:.*}", web::get().to(static_file));
}

async fn page(name: &'static str) -> HttpResponse {
    match Templates::get(name) {
        Some(f) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::REFERRER_POLICY, "same-origin"))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(f.data.into_owned()),
        None => {
            HttpResponse::NotFound().json(serde_json::json!({"error":{"code":"not_found","message":"no such page"}}))
        }
    }
}

async fn static_file(req: HttpRequest) -> HttpResponse {
    let path = req.match_info().query("path");
    match Static::get(path) {
        Some(f) => {
            let mime = mime_guess::from_path(path).first_or_octet_stream();
            HttpResponse::Ok()
                .content_type(mime.as_ref())
                .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .insert_header((header::CACHE_CONTROL, "no-cache"))
                // Other sites may import the client library as an ES module.
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
                .insert_header((
                    header::ETAG,
                    format!("\"{}\"", hex::encode(&f.metadata.sha256_hash()[..8])),
                ))
                .body(f.data.into_owned())
        }
        None => {
            HttpResponse::NotFound().json(serde_json::json!({"error":{"code":"not_found","message":"no such file"}}))
        }
    }
}
