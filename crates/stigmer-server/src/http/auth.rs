//! Who may use the HTTP API, decided in one function ([`judge`]) over the request's parts, the
//! way a notebook server does it:
//!
//! - the `Host` must be this server's loopback address (`127.0.0.1:P`, `localhost:P`,
//!   `[::1]:P`): a page of another site that rebinds its DNS name to 127.0.0.1 sends its own
//!   name and is refused;
//! - `GET /?token=T` with the API token swaps it for a session cookie (HttpOnly, SameSite=Strict)
//!   and redirects to the same address without the token;
//! - every other request needs that cookie or `Authorization: Bearer T` (liveness and readiness
//!   excepted: they say nothing);
//! - a request that changes state needs an `Origin` equal to this server's own (a browser always
//!   sends one with a POST; another site's page cannot forge it).

use axum::http::{HeaderMap, Method, StatusCode, header};
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const COOKIE: &str = "stigmer_session";

/// What a request is judged against.
#[derive(Clone)]
pub struct Auth {
    token: String,
    /// The cookie's value: derived from the token, so the cookie opens the HTTP API only and
    /// the token itself never sits in a browser's cookie jar.
    session: String,
    port: u16,
}

impl Auth {
    pub fn new(token: &str, port: u16) -> Auth {
        let digest = Sha256::digest(format!("stigmer-dashboard-session\0{token}").as_bytes());
        let session = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        Auth {
            token: token.to_owned(),
            session,
            port,
        }
    }

    /// The `Set-Cookie` value that opens a session.
    pub fn session_cookie(&self) -> String {
        format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
            self.session
        )
    }
}

/// The decision on one request.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Allow,
    /// The token was right: set the cookie and send the browser to `location`.
    OpenSession {
        location: String,
    },
    Refuse {
        status: StatusCode,
        message: String,
    },
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Verdict {
    Verdict::Refuse {
        status,
        message: message.into(),
    }
}

/// Judges a request by its method, path and query, and headers.
pub fn judge(
    auth: &Auth,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Verdict {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !is_own_loopback_host(host, auth.port) {
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "Host {host:?} is not this server's loopback address: open http://127.0.0.1:{}/ \
                 instead (requests under other names are refused, against DNS rebinding)",
                auth.port
            ),
        );
    }
    if matches!(path, "/healthz" | "/readyz") {
        return Verdict::Allow;
    }
    let changes_state = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if changes_state {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|value| value.to_str().ok());
        let bearer = bearer_token(headers).is_some();
        match origin {
            Some(origin) if origin == format!("http://{host}") => {}
            // A client that is not a browser (curl, a script) sends its token and no Origin.
            None if bearer => {}
            Some(origin) => {
                return refuse(
                    StatusCode::FORBIDDEN,
                    format!("a request from origin {origin:?} may not change anything here"),
                );
            }
            None => {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "a request that changes something needs an Origin header (or a bearer token)",
                );
            }
        }
    }
    if let Some(token) = query.and_then(token_in_query) {
        if token != auth.token {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "that token is not this server's: run `stigmer dashboard` for a fresh link",
            );
        }
        if *method == Method::GET {
            return Verdict::OpenSession {
                location: without_token(path, query.unwrap_or_default()),
            };
        }
        return Verdict::Allow;
    }
    match bearer_token(headers) {
        Some(token) if token == auth.token => return Verdict::Allow,
        Some(_) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "that bearer token is not this server's",
            );
        }
        None => {}
    }
    if session_cookie(headers).is_some_and(|session| session == auth.session) {
        return Verdict::Allow;
    }
    refuse(
        StatusCode::UNAUTHORIZED,
        "not signed in: open the link `stigmer dashboard` prints, or send `Authorization: Bearer \
         <token>` (the token is in run/api-token under the Stigmer home)",
    )
}

/// True for `127.0.0.1:P`, `localhost:P` and `[::1]:P` with this server's port.
fn is_own_loopback_host(host: &str, port: u16) -> bool {
    let Some((name, host_port)) = host.rsplit_once(':') else {
        return false;
    };
    host_port.parse::<u16>().ok() == Some(port)
        && matches!(
            name.to_ascii_lowercase().as_str(),
            "127.0.0.1" | "localhost" | "[::1]"
        )
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

fn token_in_query(query: &str) -> Option<&str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "token")
        .map(|(_, value)| value)
}

fn without_token(path: &str, query: &str) -> String {
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.starts_with("token=") && !pair.is_empty())
        .collect();
    if rest.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", rest.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const PORT: u16 = 7234;

    fn auth() -> Auth {
        Auth::new("secret-token", PORT)
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn host() -> (header::HeaderName, &'static str) {
        (header::HOST, "127.0.0.1:7234")
    }

    fn cookie(auth: &Auth) -> String {
        format!("other=1; {COOKIE}={}", auth.session)
    }

    fn status_of(verdict: Verdict) -> Option<StatusCode> {
        match verdict {
            Verdict::Refuse { status, .. } => Some(status),
            _ => None,
        }
    }

    #[test]
    fn the_token_opens_a_session_and_leaves_the_address() {
        let verdict = judge(
            &auth(),
            &Method::GET,
            "/",
            Some("token=secret-token&x=1"),
            &headers(&[host()]),
        );
        assert_eq!(
            verdict,
            Verdict::OpenSession {
                location: "/?x=1".into()
            }
        );
        assert!(
            auth()
                .session_cookie()
                .contains("HttpOnly; SameSite=Strict; Path=/")
        );
        assert!(!auth().session_cookie().contains("secret-token"));
    }

    #[test]
    fn a_request_needs_the_cookie_or_the_bearer_token() {
        let auth = auth();
        let get = |pairs: &[(header::HeaderName, &str)]| {
            judge(
                &auth,
                &Method::GET,
                "/api/v1/executions",
                None,
                &headers(pairs),
            )
        };
        assert_eq!(status_of(get(&[host()])), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(
            get(&[host(), (header::COOKIE, &cookie(&auth))]),
            Verdict::Allow
        );
        assert_eq!(
            status_of(get(&[host(), (header::COOKIE, "stigmer_session=forged")])),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            get(&[host(), (header::AUTHORIZATION, "Bearer secret-token")]),
            Verdict::Allow
        );
        assert_eq!(
            status_of(get(&[host(), (header::AUTHORIZATION, "Bearer wrong")])),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            status_of(judge(
                &auth,
                &Method::GET,
                "/",
                Some("token=wrong"),
                &headers(&[host()])
            )),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            judge(&auth, &Method::GET, "/healthz", None, &headers(&[host()])),
            Verdict::Allow
        );
    }

    #[test]
    fn only_this_servers_loopback_names_are_served() {
        let auth = auth();
        for good in [
            "127.0.0.1:7234",
            "localhost:7234",
            "LOCALHOST:7234",
            "[::1]:7234",
        ] {
            let verdict = judge(
                &auth,
                &Method::GET,
                "/",
                None,
                &headers(&[(header::HOST, good), (header::COOKIE, &cookie(&auth))]),
            );
            assert_eq!(verdict, Verdict::Allow, "{good}");
        }
        for bad in [
            "evil.example:7234",
            "127.0.0.1:80",
            "127.0.0.1",
            "",
            "localhost.evil:7234",
        ] {
            let verdict = judge(
                &auth,
                &Method::GET,
                "/healthz",
                None,
                &headers(&[(header::HOST, bad), (header::COOKIE, &cookie(&auth))]),
            );
            assert_eq!(status_of(verdict), Some(StatusCode::FORBIDDEN), "{bad}");
        }
    }

    #[test]
    fn a_change_needs_this_servers_origin() {
        let auth = auth();
        let post = |pairs: &[(header::HeaderName, &str)]| {
            judge(
                &auth,
                &Method::POST,
                "/api/v1/executions/aex-1/cancel",
                None,
                &headers(pairs),
            )
        };
        let cookie = cookie(&auth);
        assert_eq!(
            post(&[
                host(),
                (header::COOKIE, &cookie),
                (header::ORIGIN, "http://127.0.0.1:7234")
            ]),
            Verdict::Allow
        );
        assert_eq!(
            status_of(post(&[
                host(),
                (header::COOKIE, &cookie),
                (header::ORIGIN, "http://evil.example")
            ])),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            status_of(post(&[host(), (header::COOKIE, &cookie)])),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            post(&[host(), (header::AUTHORIZATION, "Bearer secret-token")]),
            Verdict::Allow
        );
        assert_eq!(
            status_of(post(&[
                host(),
                (header::AUTHORIZATION, "Bearer secret-token"),
                (header::ORIGIN, "http://evil.example")
            ])),
            Some(StatusCode::FORBIDDEN)
        );
    }
}
