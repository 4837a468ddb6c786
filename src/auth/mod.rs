//! Identity: JWT (HS256) tokens, argon2 password hashes, and extracting credentials
//! from a request (header, cookie, query).

pub mod versions;

use std::{path::Path, sync::Arc};

use actix_web::HttpRequest;
use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub use self::versions::TokenVersions;
use crate::{error::AppError, protocol::UserRef};

/// Name of the HttpOnly session cookie set by `/api/login`.
pub const COOKIE: &str = "chat_session";

/// What a user may do beyond the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Publisher,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::User, Role::Publisher, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Publisher => "publisher",
            Role::Admin => "admin",
        }
    }
}

/// A role name the server does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}` (user, publisher or admin)")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.chars().take(32).collect()))
    }
}

/// Who is on the other end of a connection or request.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: UserRef,
    pub role: Role,
    /// Anonymous readers have a random id and may only read namespaces that allow it.
    pub anonymous: bool,
    /// The tracked entity this token speaks for (claim `entity`): it may publish
    /// `loc:<entity>`. Entities are a space of their own: a user's id never is one.
    pub entity: Option<Arc<str>>,
}

impl Identity {
    pub fn anonymous() -> Identity {
        let id = format!("anon-{}", hex::encode(rand::random::<[u8; 6]>()));
        Identity {
            user: UserRef::new(id, "anonymous"),
            role: Role::User,
            anonymous: true,
            entity: None,
        }
    }
    pub fn id(&self) -> &str {
        &self.user.id
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    /// A device token: the entity it reports the position of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entity: Option<String>,
    /// The account's token version when the token was issued ([`TokenVersions`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    ver: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// What a verified token says beyond the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenInfo {
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// The account's token version it was issued under.
    pub ver: u32,
}

/// Signs and verifies tokens with the server's secret.
#[derive(Clone)]
pub struct Auth {
    enc: Arc<EncodingKey>,
    dec: Arc<DecodingKey>,
    validation: Arc<Validation>,
    /// Lifetime of tokens this server issues.
    ttl_s: u64,
    versions: Arc<TokenVersions>,
}

impl Auth {
    pub fn new(secret: &[u8], ttl_s: u64) -> Auth {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Auth {
            enc: Arc::new(EncodingKey::from_secret(secret)),
            dec: Arc::new(DecodingKey::from_secret(secret)),
            validation: Arc::new(validation),
            ttl_s,
            versions: Arc::default(),
        }
    }

    /// The accounts' token versions (shared with the hub, which applies revocations
    /// from other nodes).
    pub fn versions(&self) -> &Arc<TokenVersions> {
        &self.versions
    }

    /// Issues a token for a user of this server.
    pub fn issue(&self, user: &UserRef, role: Role) -> String {
        self.mint(&user.id, Some(&user.name), role, self.ttl_s, None)
    }

    /// Mints a token for any user id, as a backend that knows the secret would (the
    /// command line's `token mint`): `entity` makes it a device's token for `loc:`.
    pub fn mint(&self, sub: &str, name: Option<&str>, role: Role, ttl_s: u64, entity: Option<&str>) -> String {
        let claims = Claims {
            sub: sub.to_string(),
            name: name.map(str::to_string),
            exp: (crate::protocol::now_ms() / 1000) as u64 + ttl_s,
            role: Some(role),
            entity: entity.map(str::to_string),
            ver: self.versions.current(sub),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.enc).expect("HS256 signing cannot fail")
    }

    /// Verifies signature, expiry and version; the display name falls back to the id.
    pub fn verify(&self, token: &str) -> Result<Identity, AppError> {
        self.verify_full(token).map(|(identity, _)| identity)
    }

    /// [`Auth::verify`], also returning the token's expiry and version.
    pub fn verify_full(&self, token: &str) -> Result<(Identity, TokenInfo), AppError> {
        let data = decode::<Claims>(token, &self.dec, &self.validation)
            .map_err(|e| AppError::unauthorized(format!("invalid token: {e}")))?;
        let c = data.claims;
        let bad_sub = c.sub.trim().is_empty()
            || c.sub.len() > 128
            || c.sub.starts_with("anon-")
            || crate::protocol::text::has_control(&c.sub);
        if bad_sub {
            return Err(AppError::unauthorized("invalid token: bad `sub`"));
        }
        let name = c
            .name
            .map(|n| crate::protocol::text::clean_name(&n, 64))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| c.sub.clone());
        if c.entity
            .as_deref()
            .is_some_and(|e| !crate::protocol::text::valid_user_id(e))
        {
            return Err(AppError::unauthorized("invalid token: bad `entity`"));
        }
        if self.versions.is_banned(&c.sub) {
            return Err(AppError::forbidden("this account is banned"));
        }
        if c.ver < self.versions.current(&c.sub) {
            return Err(AppError::unauthorized("token revoked (logged out or password changed)"));
        }
        let info = TokenInfo { exp: c.exp, ver: c.ver };
        let identity = Identity {
            user: UserRef::new(c.sub, name),
            role: c.role.unwrap_or(Role::User),
            anonymous: false,
            entity: c.entity.map(Into::into),
        };
        Ok((identity, info))
    }
}

/// The HS256 secret: from settings, else read from (or generated into) `<data_dir>/jwt_secret`.
pub fn load_or_create_secret(configured: Option<&str>, data_dir: &Path) -> std::io::Result<Vec<u8>> {
    if let Some(s) = configured {
        return Ok(s.as_bytes().to_vec());
    }
    let path = data_dir.join("jwt_secret");
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(s.trim().as_bytes().to_vec()),
        Ok(_) => log::warn!("{} is too short; generating a new secret", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let tmp = data_dir.join("jwt_secret.tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(secret.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    log::info!("generated a new JWT secret in {}", path.display());
    Ok(secret.into_bytes())
}

/// Where password hashing runs: argon2 is CPU-heavy, so it runs on the blocking pool,
/// never holding a storage connection, at most `permits` at a time. Bounded: at most
/// `max_waiting` requests wait for a permit; overflow policy: more are refused at once
/// with `unavailable` (a login flood cannot queue unbounded CPU work).
pub struct PasswordWork {
    permits: tokio::sync::Semaphore,
    waiting: std::sync::atomic::AtomicUsize,
    max_waiting: usize,
}

impl PasswordWork {
    pub fn new(permits: usize, max_waiting: usize) -> PasswordWork {
        PasswordWork {
            permits: tokio::sync::Semaphore::new(permits.max(1)),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// Runs `f` (hashing or verifying) when a permit is free.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, AppError> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.waiting.fetch_add(1, Relaxed) >= self.max_waiting {
            self.waiting.fetch_sub(1, Relaxed);
            return Err(AppError::unavailable("too many logins at once, try again"));
        }
        let permit = self.permits.acquire().await;
        self.waiting.fetch_sub(1, Relaxed);
        let _permit = permit.map_err(|_| AppError::unavailable("shutting down"))?;
        Ok(actix_web::web::block(f).await?)
    }
}

/// Argon2id hash in PHC string form. CPU-heavy: call from a blocking thread.
pub fn hash_password(password: &str) -> Result<String, AppError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::internal(format!("hashing failed: {e}")))
}

/// Constant-time check of a password against a stored hash. CPU-heavy.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Where a request's token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Header,
    Cookie,
    Query,
}

/// The first credential present, in protocol order: header, cookie, then (only when
/// `allow_query`) the `token` query parameter.
pub fn credential(req: &HttpRequest, allow_query: bool) -> Option<(String, Source)> {
    if let Some(h) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        if let Some(t) = h.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
            return Some((t.trim().to_string(), Source::Header));
        }
    }
    if let Some(c) = req.cookie(COOKIE) {
        if !c.value().is_empty() {
            return Some((c.value().to_string(), Source::Cookie));
        }
    }
    if allow_query {
        let q = req.query_string();
        for pair in q.split('&') {
            if let Some(v) = pair.strip_prefix("token=") {
                let v = percent_decode(v);
                if !v.is_empty() {
                    return Some((v, Source::Query));
                }
            }
        }
    }
    None
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_and_forgery() {
        let a = Auth::new(b"secret-one-secret-one-secret-one", 60);
        let t = a.issue(&UserRef::new("7", "bob"), Role::Publisher);
        let id = a.verify(&t).unwrap();
        assert_eq!((&*id.user.id, &*id.user.name, id.role), ("7", "bob", Role::Publisher));
        let b = Auth::new(b"secret-two-secret-two-secret-two", 60);
        assert_eq!(b.verify(&t).unwrap_err().code, crate::error::ErrorCode::Unauthorized);
        assert!(a.verify("garbage").is_err());
    }

    #[test]
    fn revoked_versions_are_refused() {
        let a = Auth::new(b"secret-one-secret-one-secret-one", 60);
        let bob = UserRef::new("7", "bob");
        let old = a.issue(&bob, Role::User);
        assert_eq!(a.verify_full(&old).unwrap().1.ver, 0);
        a.versions().raise("7", 1);
        let e = a.verify(&old).unwrap_err();
        assert_eq!(e.code, crate::error::ErrorCode::Unauthorized);
        let new = a.issue(&bob, Role::User);
        assert_eq!(a.verify_full(&new).unwrap().1.ver, 1);
        // Another account is not affected.
        assert!(a.verify(&a.issue(&UserRef::new("8", "eve"), Role::User)).is_ok());
    }

    #[test]
    fn roles_parse_strictly() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("Admin".parse::<Role>().is_err());
        assert!("".parse::<Role>().is_err());
    }

    #[test]
    fn passwords() {
        let h = hash_password("correct horse").unwrap();
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn percent() {
        assert_eq!(percent_decode("a%2Eb"), "a.b");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%"), "%");
    }
}
