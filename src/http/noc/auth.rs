//! Who may use the console: the users of `server.users_file` (argon2 password hashes,
//! roles `viewer` and `operator`) or the holder of the admin token (an operator), a
//! session cookie once logged in, and a CSRF token bound to that session on every form.
//!
//! Sessions live in the store under the SHA-256 of their id, so that they outlive a restart
//! and every instance of a cluster knows them, while a leaked database opens none. The
//! CSRF token is an HMAC of the session id: nothing more to store, and it dies with the
//! session.

use std::fmt::Write as _;
use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{AppState, page, redirect};
use crate::alert::subscribers::{hash_token, new_token};
use crate::incident::public::escape;
use crate::store::ConsoleSession;

/// The session cookie, sent back only under `/noc`.
pub const COOKIE: &str = "tocsin_noc";
/// The login form's own CSRF cookie (double submit): there is no session to bind it to.
const LOGIN_COOKIE: &str = "tocsin_noc_login";
/// How long a session lasts from login: one NOC shift.
pub const SESSION_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::hours(12);
/// Login attempts per name (or for the admin token) and hour: enough for typos, few
/// enough that guessing a password online gets nowhere.
const LOGIN_ATTEMPTS_PER_HOUR: u32 = 20;
/// The name sessions opened with the admin token go by.
pub const ADMIN: &str = "admin";

/// What a console user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sees every page and report.
    Viewer,
    /// Also acts: acknowledges, registers changes and maintenances, posts updates, judges
    /// the suspected cause.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }
}

/// One line of `server.users_file`: `name:role:$argon2id$…`.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleUser {
    pub name: String,
    pub role: Role,
    /// The PHC string of the password's argon2 hash.
    hash: String,
}

impl std::fmt::Debug for ConsoleUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleUser")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Reads a users file: one `name:role:hash` per line, `#` comments and blank lines
/// ignored. Every problem is returned, each with its line number.
pub fn parse_users(text: &str) -> Result<Vec<ConsoleUser>, Vec<String>> {
    let mut users: Vec<ConsoleUser> = Vec::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = n + 1;
        let mut parts = line.splitn(3, ':');
        let (Some(name), Some(role), Some(hash)) = (parts.next(), parts.next(), parts.next())
        else {
            problems.push(format!("line {at}: expected `name:role:argon2 hash`"));
            continue;
        };
        if name.is_empty() || name == ADMIN {
            problems.push(format!(
                "line {at}: the name must not be empty nor `{ADMIN}` (the admin token's)"
            ));
            continue;
        }
        let Some(role) = Role::parse(role) else {
            problems.push(format!(
                "line {at}: unknown role `{role}` (viewer or operator)"
            ));
            continue;
        };
        match PasswordHash::new(hash) {
            Ok(parsed) if parsed.algorithm.as_str().starts_with("argon2") => {}
            Ok(parsed) => {
                problems.push(format!(
                    "line {at}: `{}` is not an argon2 hash (make one with `tocsin hash-password`)",
                    parsed.algorithm
                ));
                continue;
            }
            Err(e) => {
                problems.push(format!(
                    "line {at}: not a PHC hash string ({e}); make one with `tocsin hash-password`"
                ));
                continue;
            }
        }
        if users.iter().any(|u| u.name == name) {
            problems.push(format!("line {at}: user `{name}` listed twice"));
            continue;
        }
        users.push(ConsoleUser {
            name: name.to_string(),
            role,
            hash: hash.to_string(),
        });
    }
    if problems.is_empty() {
        Ok(users)
    } else {
        Err(problems)
    }
}

/// The argon2id PHC string of `password`, with a fresh salt and the crate's default
/// parameters (OWASP's minimum: 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut salt)
        .expect("the system's random generator works");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes make a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("the default parameters are valid")
        .to_string()
}

fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Verified against for unknown names, so that a wrong name costs what a wrong password
/// does and timing does not tell which names exist.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password("no user has this password"))
}

/// A logged-in user, from the request's session cookie.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// The session id the cookie carries: the key of the CSRF token.
    id: String,
}

impl Session {
    /// The token every form of this session carries.
    pub fn csrf(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.csrf_mac().finalize().into_bytes())
    }

    /// Whether `given` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, given: &str) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(given) else {
            return false;
        };
        self.csrf_mac().verify_slice(&bytes).is_ok()
    }

    /// The CSRF token is a MAC keyed by the session id: nothing to store beside it.
    fn csrf_mac(&self) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.id.as_bytes()).expect("any key");
        mac.update(b"noc.csrf");
        mac
    }

    /// The hidden form field with the CSRF token.
    pub fn csrf_field(&self) -> String {
        format!(
            r#"<input type="hidden" name="csrf" value="{}">"#,
            escape(&self.csrf())
        )
    }
}

/// The value of cookie `name` in the request, if any.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The session of the request's cookie, if it names one that has not expired.
pub async fn current(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    let id = cookie(headers, COOKIE)?;
    let stored = state
        .store
        .session(hash_token(id), state.clock.now())
        .await
        .ok()??;
    Some(Session {
        user: stored.user,
        role: Role::parse(&stored.role)?,
        id: id.to_string(),
    })
}

/// Sessions are `Secure` when the console is reached over HTTPS: tocsin itself serves
/// plain HTTP, so that is when `server.external_url` (the address behind the TLS proxy)
/// is `https`.
fn secure(state: &AppState) -> bool {
    state
        .site
        .borrow()
        .server
        .external_url
        .as_ref()
        .is_some_and(|u| u.scheme() == "https")
}

fn set_cookie(state: &AppState, name: &str, value: &str, path: &str, max_age: i64) -> HeaderValue {
    let secure = if secure(state) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("cookie values are base64url")
}

/// `GET /noc/login`: the form, with a fresh double-submit CSRF cookie.
pub async fn login_form(State(state): State<AppState>) -> Response {
    login_page(&state, StatusCode::OK, None)
}

fn login_page(state: &AppState, status: StatusCode, problem: Option<&str>) -> Response {
    let token = new_token();
    let admin = state.site.borrow().server.admin_token.is_some();
    let mut body = String::from("<h1>NOC console</h1>");
    if let Some(problem) = problem {
        let _ = write!(
            body,
            r#"<p class="problem" role="alert">{}</p>"#,
            escape(problem)
        );
    }
    let hint = if admin {
        "Leave the name empty to log in with the admin token."
    } else {
        "Users are listed in server.users_file."
    };
    let _ = write!(
        body,
        r#"<form method="post" action="/noc/login" class="login">
<input type="hidden" name="csrf" value="{token}">
<p><label>Name <input name="user" autocomplete="username" maxlength="128"></label></p>
<p><label>Password or admin token <input type="password" name="password" required autocomplete="current-password" maxlength="1024"></label></p>
<p><button type="submit">Log in</button> <span class="muted">{hint}</span></p></form>"#
    );
    let mut response = page(state, status, "Log in", None, &body);
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, LOGIN_COOKIE, &token, "/noc/login", 3600),
    );
    response
}

/// `POST /noc/login`: `user` (empty for the admin token), `password`, `csrf`.
pub async fn login(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (mut user, mut password, mut csrf) = (String::new(), String::new(), String::new());
    for (key, value) in url::form_urlencoded::parse(&body) {
        match key.as_ref() {
            "user" => user = value.trim().to_string(),
            "password" => password = value.into_owned(),
            "csrf" => csrf = value.into_owned(),
            _ => {}
        }
    }
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(csrf.as_bytes())) {
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            Some("The form expired (or cookies are off): try again."),
        );
    }
    let now = state.clock.now();
    let key = if user.is_empty() {
        ADMIN.to_string()
    } else {
        user.clone()
    };
    let allowed = state
        .login_limit
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take(&format!("noc-login:{key}"), LOGIN_ATTEMPTS_PER_HOUR, now);
    if allowed.is_err() {
        tracing::warn!(user = %key.escape_debug(), "console login refused: too many attempts");
        return login_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many attempts for this name: wait an hour."),
        );
    }
    let Some((name, role)) = authenticate(&state, user, password).await else {
        tracing::info!(user = %key.escape_debug(), "console login failed");
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            Some("Wrong name or password."),
        );
    };
    let id = new_token();
    let session = ConsoleSession {
        user: name.clone(),
        role: role.as_str().to_string(),
        created_at: now,
        expires_at: now + SESSION_LIFETIME,
    };
    state.store.save_session(&hash_token(&id), &session, now);
    if let Err(e) = state.store.flush().await {
        tracing::error!(error = %e, "console session not stored");
        return page(
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            "Not logged in",
            None,
            "<h1>Not logged in</h1><p>The session could not be stored: see the log.</p>",
        );
    }
    tracing::info!(user = %name, role = role.as_str(), "console login");
    let mut response = redirect("/noc");
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(&state, COOKIE, &id, "/noc", SESSION_LIFETIME.num_seconds()),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(&state, LOGIN_COOKIE, "", "/noc/login", 0),
    );
    response
}

/// The user and role `password` opens, if any: the admin token when `user` is empty, else
/// the user's argon2 hash (verified off the async runtime: it is slow on purpose).
async fn authenticate(state: &AppState, user: String, password: String) -> Option<(String, Role)> {
    let site = state.site.borrow().clone();
    if user.is_empty() {
        let token = site.server.admin_token.as_deref()?;
        return bool::from(token.as_bytes().ct_eq(password.as_bytes()))
            .then(|| (ADMIN.to_string(), Role::Operator));
    }
    let found = site.server.users.iter().find(|u| u.name == user).cloned();
    tokio::task::spawn_blocking(move || match found {
        Some(u) => verify(&password, &u.hash).then_some((u.name, u.role)),
        None => {
            verify(&password, decoy_hash());
            None
        }
    })
    .await
    .ok()?
}

/// `POST /noc/logout`: ends the session (CSRF-checked, so that no page elsewhere can log
/// an operator out).
pub async fn logout(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let session = match super::acting(&state, &headers, &body, None).await {
        Ok((session, _)) => session,
        Err(refused) => return refused,
    };
    if let Some(id) = cookie(&headers, COOKIE) {
        state.store.delete_session(&hash_token(id));
        let _ = state.store.flush().await;
    }
    tracing::info!(user = %session.user, "console logout");
    let mut response = redirect("/noc/login");
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, COOKIE, "", "/noc", 0),
    );
    response
}

/// What a request without a session is answered: pages go to the login form, forms are
/// refused.
pub fn no_session(page: bool) -> Response {
    if page {
        redirect("/noc/login")
    } else {
        (StatusCode::UNAUTHORIZED, "log in first: /noc/login\n").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_lines_are_checked_each_with_its_number() {
        let hash = hash_password("s3cret");
        let text = format!(
            "# NOC staff\nalice:operator:{hash}\n\nbob:viewer:{hash}\nmallory:root:{hash}\n\
             alice:viewer:{hash}\nnohash\ncarol:viewer:plain\n{ADMIN}:operator:{hash}\n"
        );
        let problems = parse_users(&text).unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert_eq!(
            problems[0],
            "line 5: unknown role `root` (viewer or operator)"
        );
        assert_eq!(problems[1], "line 6: user `alice` listed twice");
        assert_eq!(problems[2], "line 7: expected `name:role:argon2 hash`");
        assert!(problems[3].starts_with("line 8: not a PHC hash string"));
        assert!(problems[4].starts_with("line 9: the name must not be empty"));
        let users = parse_users(&format!("alice:operator:{hash}\nbob:viewer:{hash}")).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(
            (users[1].name.as_str(), users[1].role),
            ("bob", Role::Viewer)
        );
        assert!(verify("s3cret", &users[0].hash));
        assert!(!verify("S3cret", &users[0].hash));
        assert!(
            !format!("{users:?}").contains("argon2"),
            "Debug hides the hashes"
        );
    }

    #[test]
    fn the_csrf_token_is_bound_to_its_session() {
        let session = |id: &str| Session {
            user: "alice".into(),
            role: Role::Operator,
            id: id.into(),
        };
        let (a, b) = (session("one"), session("two"));
        assert!(a.csrf_matches(&a.csrf()));
        assert!(!a.csrf_matches(&b.csrf()));
        assert!(!a.csrf_matches(""));
        assert!(!a.csrf_matches("not base64!"));
    }

    #[test]
    fn cookies_are_found_by_name_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; tocsin_noc=xyz"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "tocsin"), None);
    }
}
