//! HTTP routes: the WebSocket upgrade, the JSON API, health and metrics, and the
//! server's own pages and static files.

pub mod admin;
pub mod api;
pub mod feeds;
pub mod health;
pub mod pages;
pub mod upgrade;
pub mod uploads;
pub mod ws;

use std::future::{ready, Ready};

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};

use crate::{
    auth::{credential, Identity},
    error::AppError,
    state::AppState,
};

/// The routes of the private metrics listener (`metrics_bind`).
pub fn metrics_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(health::metrics_private));
}

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws", web::get().to(ws::upgrade))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics))
        .service(
            web::scope("/api")
                .configure(api::routes)
                .configure(admin::routes)
                .configure(feeds::routes)
                .configure(uploads::api_routes),
        )
        .configure(uploads::routes)
        .configure(pages::routes);
}

/// The authenticated caller of an API route (Bearer header or session cookie).
pub struct Caller(pub Identity);

impl FromRequest for Caller {
    type Error = AppError;
    type Future = Ready<Result<Caller, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(caller(req).map(Caller))
    }
}

fn caller(req: &HttpRequest) -> Result<Identity, AppError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| AppError::internal("no state"))?;
    let (token, _) = credential(req, false).ok_or_else(|| AppError::unauthorized("log in or send a Bearer token"))?;
    state.chat.auth.verify(&token)
}

/// Maps actix's JSON/query/path extractor errors to the protocol's error body.
pub fn json_error(err: actix_web::error::JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let e = match &err {
        E::OverflowKnownLength { .. } | E::Overflow { .. } => AppError::too_large("request body too large"),
        E::ContentType => AppError::bad_request("expected Content-Type: application/json"),
        other => AppError::bad_request(format!("bad JSON body: {other}")),
    };
    e.into()
}

pub fn query_error(err: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    AppError::bad_request(format!("bad query: {err}")).into()
}

pub fn path_error(err: actix_web::error::PathError, _: &HttpRequest) -> actix_web::Error {
    AppError::bad_request(format!("bad path: {err}")).into()
}
