//! The Proxmox VE API client: one per run, shared between threads, connections reused.
//!
//! Authentication is an API token header, or a password exchanged lazily for a ticket
//! (cookie, plus the CSRF header on writes) and renewed once on a 401. Idempotent GETs are
//! retried with backoff on connection errors, 595/596 and "try again" 5xx answers; a write is
//! retried only when its connection could not even be opened, so it never ran twice.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;

use super::error::{PveError, Refusal, vm_of_path};
use super::path::ApiPath;
use super::tls::{self, Fingerprint, Trust};
use super::types::{self, Cluster, NodeInfo, VmStatus};
use crate::secret::Secret;

/// Everything the client needs to reach and log in to one Proxmox host.
#[derive(Debug, Clone)]
pub struct PveSettings {
    pub host: String,
    pub port: u16,
    /// `user@realm`.
    pub user: String,
    /// `name`, or already `user@realm!name`.
    pub token_id: Option<String>,
    pub token_secret: Option<Secret>,
    pub password: Option<Secret>,
    /// False disables certificate verification (with one warning).
    pub verify_tls: bool,
    /// Extra trusted CA certificates (PEM), e.g. `/etc/pve/pve-root-ca.pem`.
    pub ca_file: Option<PathBuf>,
    /// Pinned SHA-256 of the server certificate (`AA:BB:...`, lower case or bare hex accepted).
    pub fingerprint: Option<String>,
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Extra attempts for an idempotent request that failed in a way worth retrying.
    pub retries: u32,
}

impl PveSettings {
    /// Settings with PVE's defaults: port 8006, verification on, 10 s connect, 60 s request, 2 retries.
    pub fn new(host: impl Into<String>, user: impl Into<String>) -> Self {
        PveSettings {
            host: host.into(),
            port: 8006,
            user: user.into(),
            token_id: None,
            token_secret: None,
            password: None,
            verify_tls: true,
            ca_file: None,
            fingerprint: None,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            retries: 2,
        }
    }

    /// `host:port`, as errors name it.
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Characters left as they are in form values and query strings: RFC 3986 unreserved.
/// Everything else is escaped, notably `;` and `&`, on which real PVE splits form fields.
const FORM_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Encodes parameters as an `application/x-www-form-urlencoded` body.
pub fn encode_form(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", utf8_percent_encode(k, FORM_VALUE), utf8_percent_encode(v, FORM_VALUE)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A login ticket and its CSRF token.
struct Ticket {
    cookie: HeaderValue,
    csrf: HeaderValue,
}

enum Auth {
    /// The ready `Authorization` header, marked sensitive.
    Token(HeaderValue),
    Password {
        password: Secret,
        ticket: Mutex<TicketState>,
    },
}

/// The login state of a password client.
enum TicketState {
    None,
    Valid(Arc<Ticket>),
    Refused,
}

/// What the transport reported for one attempt.
enum Outcome {
    Answer { status: u16, reason: Option<String>, body: Vec<u8> },
    Failed(reqwest::Error),
}

/// A Proxmox VE API client. `Send + Sync`: share one per run.
pub struct PveClient {
    http: reqwest::blocking::Client,
    base: String,
    address: String,
    settings: PveSettings,
    auth: Auth,
    seen_fingerprint: Arc<Mutex<Option<Fingerprint>>>,
    pinned: bool,
    sent: AtomicU64,
}

impl std::fmt::Debug for PveClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PveClient")
            .field("host", &self.address)
            .field("user", &self.settings.user)
            .field("token", &matches!(self.auth, Auth::Token(_)))
            .finish_non_exhaustive()
    }
}

impl PveClient {
    /// Builds the client. Nothing is sent yet; a password login happens on the first request.
    pub fn new(settings: PveSettings) -> Result<PveClient, PveError> {
        let address = settings.address();
        let config_error = |message: String| PveError::Config { host: address.clone(), message };
        let trust = if !settings.verify_tls {
            tracing::warn!(host = %address, "TLS verification of the Proxmox API is disabled (PROXMOX_SSL_VERIFY=false)");
            Trust::Insecure
        } else if let Some(fp) = settings.fingerprint.as_deref().filter(|f| !f.trim().is_empty()) {
            Trust::Pin(tls::parse_fingerprint(fp).map_err(|e| config_error(format!("PROXMOX_TLS_FINGERPRINT: {e}")))?)
        } else if let Some(ca) = &settings.ca_file {
            Trust::Roots(tls::read_ca_file(ca).map_err(|e| config_error(format!("PROXMOX_CA_FILE: {e}")))?)
        } else {
            Trust::Roots(Vec::new())
        };
        let pinned = matches!(trust, Trust::Pin(_));
        let seen_fingerprint = Arc::new(Mutex::new(None));
        let tls_config = tls::client_config(&trust, seen_fingerprint.clone()).map_err(config_error)?;
        let auth = Self::auth(&settings).map_err(config_error)?;
        let http = reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(tls_config)
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("k3sx/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| config_error(format!("cannot build the HTTP client: {e}")))?;
        Ok(PveClient {
            http,
            base: format!("https://{address}/api2/json"),
            address,
            settings,
            auth,
            seen_fingerprint,
            pinned,
            sent: AtomicU64::new(0),
        })
    }

    fn auth(s: &PveSettings) -> Result<Auth, String> {
        let token_id = s.token_id.as_deref().filter(|t| !t.is_empty());
        if let Some(id) = token_id {
            let secret = s
                .token_secret
                .as_ref()
                .filter(|t| !t.is_empty())
                .ok_or("PROXMOX_API_TOKEN_ID is set but PROXMOX_API_TOKEN_SECRET is not".to_string())?;
            // A token id may already carry its user: `root@pam!k3sx`.
            let full_id = if id.contains('!') { id.to_string() } else { format!("{}!{id}", s.user) };
            let mut header = HeaderValue::from_str(&format!("PVEAPIToken={full_id}={}", secret.expose()))
                .map_err(|_| "the API token id or secret holds characters not allowed in a header".to_string())?;
            header.set_sensitive(true);
            return Ok(Auth::Token(header));
        }
        match s.password.as_ref().filter(|p| !p.is_empty()) {
            Some(password) => Ok(Auth::Password { password: password.clone(), ticket: Mutex::new(TicketState::None) }),
            None => Err("no credentials: set PROXMOX_PASSWORD, or PROXMOX_API_TOKEN_ID and \
                         PROXMOX_API_TOKEN_SECRET"
                .to_string()),
        }
    }

    /// HTTP requests sent so far (logins and retries included).
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// `host:port` of the API.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The settings the client was built with.
    pub fn settings(&self) -> &PveSettings {
        &self.settings
    }

    // ------------------------------------------------------------------ generic

    /// `GET path` (relative to `/api2/json`), returning the answer's `data`.
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, PveError> {
        let query: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.call(Method::GET, path, &query, None)
    }

    /// `POST path` with form parameters; returns `data` (a UPID for asynchronous actions).
    pub fn post(&self, path: &str, params: &[(String, String)]) -> Result<Value, PveError> {
        self.call(Method::POST, path, &[], Some(params))
    }

    /// `PUT path` with form parameters; returns `data`.
    pub fn put(&self, path: &str, params: &[(String, String)]) -> Result<Value, PveError> {
        self.call(Method::PUT, path, &[], Some(params))
    }

    /// `DELETE path`; PVE reads a DELETE's parameters from the query string.
    pub fn delete(&self, path: &str, params: &[(String, String)]) -> Result<Value, PveError> {
        self.call(Method::DELETE, path, params, None)
    }

    // -------------------------------------------------------------------- typed

    /// Nodes and QEMU guests of the whole cluster, in ONE `GET /cluster/resources`.
    /// Containers are dropped; templates are kept and flagged for the caller to filter.
    pub fn cluster(&self) -> Result<Cluster, PveError> {
        let path = "/cluster/resources";
        let data = self.get(path, &[])?;
        types::parse_resources(&data).map_err(|reason| self.decode_error(path, reason))
    }

    /// `GET /nodes`: every node with its state.
    pub fn nodes(&self) -> Result<Vec<NodeInfo>, PveError> {
        let data = self.get("/nodes", &[])?;
        types::parse_nodes(&data).map_err(|reason| self.decode_error("/nodes", reason))
    }

    /// The VM's configuration (pending changes applied, as PVE returns it), with its `digest`.
    pub fn vm_config(&self, node: &str, vmid: u32) -> Result<serde_json::Map<String, Value>, PveError> {
        let path = format!("/nodes/{node}/qemu/{vmid}/config");
        match self.get(&path, &[])? {
            Value::Object(map) => Ok(map),
            other => Err(self.decode_error(&path, format!("expected an object, got {other}"))),
        }
    }

    /// The VM's current run state.
    pub fn vm_status(&self, node: &str, vmid: u32) -> Result<VmStatus, PveError> {
        let path = format!("/nodes/{node}/qemu/{vmid}/status/current");
        let data = self.get(&path, &[])?;
        types::parse_vm_status(&data).map_err(|reason| self.decode_error(&path, reason))
    }

    // ---------------------------------------------------------------- transport

    pub(super) fn decode_error(&self, path: &str, reason: impl Into<String>) -> PveError {
        PveError::Decode { host: self.address.clone(), path: path.to_string(), reason: reason.into() }
    }

    /// One API call: authentication, a single re-login on 401, bounded retries, error mapping.
    pub(super) fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        form: Option<&[(String, String)]>,
    ) -> Result<Value, PveError> {
        let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
        // Every path is checked here, whoever built it: a node name or vmid from a script must
        // not be able to turn a request into another one (see `ApiPath`).
        ApiPath::parse(&path).map_err(|message| PveError::Invalid { host: self.address().to_string(), message })?;
        let body = form.map(encode_form);
        let idempotent = method == Method::GET;
        let mut relogged = false;
        let mut attempt = 0u32;
        loop {
            let ticket = self.ticket(&path)?;
            let outcome = self.send(&method, &path, query, body.as_deref(), ticket.as_deref());
            let retry_allowed = attempt < self.settings.retries;
            match outcome {
                Outcome::Answer { status, reason, body } => {
                    if (200..300).contains(&status) {
                        return self.data(&path, &body);
                    }
                    if status == 401 {
                        if let (Some(used), false) = (&ticket, relogged) {
                            // Expired or revoked ticket: log in again once. The request was
                            // refused before it ran, so repeating a write is safe.
                            self.forget_ticket(used);
                            relogged = true;
                            tracing::debug!(path = %path, "ticket refused; logging in again");
                            continue;
                        }
                        return Err(self.auth_error(&path));
                    }
                    let retryable = matches!(status, 502..=504 | 595 | 596);
                    if idempotent && retryable && retry_allowed {
                        self.backoff(&method, &path, attempt, &format!("HTTP {status}"));
                        attempt += 1;
                        continue;
                    }
                    return Err(self.answer_error(&method, &path, status, reason, &body));
                }
                Outcome::Failed(err) => {
                    let mapped = self.transport_error(&path, &err);
                    let retryable = matches!(mapped, PveError::Connect { .. } | PveError::Timeout { .. });
                    // A write whose connection never opened was not sent: repeating it is safe.
                    if retryable && retry_allowed && (idempotent || err.is_connect()) {
                        self.backoff(&method, &path, attempt, &mapped.to_string());
                        attempt += 1;
                        continue;
                    }
                    return Err(mapped);
                }
            }
        }
    }

    fn backoff(&self, method: &Method, path: &str, attempt: u32, why: &str) {
        let delay = Duration::from_millis(200u64.saturating_mul(1 << attempt.min(4))).min(Duration::from_secs(2));
        tracing::debug!(%method, path, attempt = attempt + 1, ?delay, why, "retrying");
        std::thread::sleep(delay);
    }

    fn send(
        &self,
        method: &Method,
        path: &str,
        query: &[(String, String)],
        form: Option<&str>,
        ticket: Option<&Ticket>,
    ) -> Outcome {
        let mut url = format!("{}{}", self.base, path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&encode_form(query));
        }
        let mut headers = HeaderMap::new();
        match (&self.auth, ticket) {
            (Auth::Token(header), _) => {
                headers.insert(reqwest::header::AUTHORIZATION, header.clone());
            }
            (Auth::Password { .. }, Some(t)) => {
                headers.insert(reqwest::header::COOKIE, t.cookie.clone());
                if *method != Method::GET {
                    headers.insert("CSRFPreventionToken", t.csrf.clone());
                }
            }
            (Auth::Password { .. }, None) => {}
        }
        let mut request = self.http.request(method.clone(), url).headers(headers);
        if let Some(form) = form {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.to_string());
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%method, path, "pve request");
        let response = match request.send() {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(e),
        };
        let status = response.status().as_u16();
        let reason = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
        tracing::debug!(%method, path, status, "pve answer");
        match response.bytes() {
            Ok(body) => Outcome::Answer { status, reason, body: body.to_vec() },
            Err(e) => Outcome::Failed(e),
        }
    }

    /// The current ticket (logging in first if there is none), or `None` with token auth.
    fn ticket(&self, path: &str) -> Result<Option<Arc<Ticket>>, PveError> {
        let Auth::Password { password, ticket } = &self.auth else {
            return Ok(None);
        };
        // Holding the lock while logging in makes concurrent first requests share one login.
        let mut slot = ticket.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            TicketState::Valid(t) => return Ok(Some(t.clone())),
            // The password was refused once; it will not become right during this run
            // (and real PVE delays every failed login by seconds).
            TicketState::Refused => return Err(self.auth_error(path)),
            TicketState::None => {}
        }
        match self.login(password, path) {
            Ok(t) => {
                let fresh = Arc::new(t);
                *slot = TicketState::Valid(fresh.clone());
                Ok(Some(fresh))
            }
            Err(e) => {
                if matches!(e, PveError::Auth { .. }) {
                    *slot = TicketState::Refused;
                }
                Err(e)
            }
        }
    }

    fn forget_ticket(&self, used: &Arc<Ticket>) {
        if let Auth::Password { ticket, .. } = &self.auth {
            let mut slot = ticket.lock().unwrap_or_else(|p| p.into_inner());
            // Another thread may already have replaced it.
            if matches!(&*slot, TicketState::Valid(t) if Arc::ptr_eq(t, used)) {
                *slot = TicketState::None;
            }
        }
    }

    /// `POST /access/ticket`. `for_path` is the request that needed the login, for error messages.
    fn login(&self, password: &Secret, for_path: &str) -> Result<Ticket, PveError> {
        let path = "/access/ticket";
        let form = encode_form(&[
            ("username".into(), self.settings.user.clone()),
            ("password".into(), password.expose().into()),
        ]);
        tracing::debug!(user = %self.settings.user, for_path, "logging in to Proxmox");
        match self.send(&Method::POST, path, &[], Some(&form), None) {
            Outcome::Answer { status: 200..=299, body, .. } => {
                let data = self.data(path, &body)?;
                let field = |name: &str| {
                    let text = data.get(name).and_then(Value::as_str).unwrap_or_default();
                    let mut value = HeaderValue::from_str(text)
                        .map_err(|_| self.decode_error(path, format!("`{name}` is missing or not header-safe")))?;
                    value.set_sensitive(true);
                    Ok::<_, PveError>(value)
                };
                if data.get("NeedTFA").is_some_and(|v| v.as_u64() == Some(1)) {
                    return Err(self.decode_error(path, "the account requires two-factor login; use an API token"));
                }
                let ticket = data.get("ticket").and_then(Value::as_str).unwrap_or_default();
                let mut cookie = HeaderValue::from_str(&format!("PVEAuthCookie={ticket}"))
                    .map_err(|_| self.decode_error(path, "the ticket is not header-safe"))?;
                cookie.set_sensitive(true);
                if ticket.is_empty() {
                    return Err(self.decode_error(path, "no ticket in the login answer"));
                }
                Ok(Ticket { cookie, csrf: field("CSRFPreventionToken")? })
            }
            Outcome::Answer { status: 401, .. } => Err(self.auth_error(for_path)),
            Outcome::Answer { status, reason, body } => {
                Err(self.answer_error(&Method::POST, path, status, reason, &body))
            }
            Outcome::Failed(e) => Err(self.transport_error(path, &e)),
        }
    }

    fn data(&self, path: &str, body: &[u8]) -> Result<Value, PveError> {
        if body.is_empty() {
            return Ok(Value::Null);
        }
        let mut envelope: Value = serde_json::from_slice(body)
            .map_err(|e| self.decode_error(path, format!("the answer is not JSON: {e}")))?;
        Ok(envelope.get_mut("data").map(Value::take).unwrap_or(Value::Null))
    }

    fn auth_error(&self, path: &str) -> PveError {
        PveError::Auth { user: self.settings.user.clone(), host: self.address.clone(), path: path.to_string() }
    }

    fn answer_error(&self, method: &Method, path: &str, status: u16, reason: Option<String>, body: &[u8]) -> PveError {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let body_message = json
            .as_ref()
            .and_then(|j| j.get("message"))
            .and_then(Value::as_str)
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty());
        // Real PVE puts the message in the status line; the body often has only `data: null`.
        let message = body_message
            .or(reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty()))
            .or_else(|| reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).map(String::from))
            .unwrap_or_default();
        let mut field_errors = BTreeMap::new();
        if let Some(Value::Object(errors)) = json.as_ref().and_then(|j| j.get("errors")) {
            for (k, v) in errors {
                let text = v.as_str().map(|s| s.trim().to_string()).unwrap_or_else(|| v.to_string());
                field_errors.insert(k.clone(), text);
            }
        }
        if let Some(refused) = self.vm_refusal(method, path, status, &message) {
            return refused;
        }
        if matches!(status, 595 | 596) {
            return PveError::NodeUnreachable {
                host: self.address.clone(),
                node: node_of(path),
                path: path.to_string(),
                status,
                message,
            };
        }
        PveError::Api {
            host: self.address.clone(),
            method: method.to_string(),
            path: path.to_string(),
            status,
            message,
            field_errors,
        }
    }

    /// The typed error for a VM's refusal PVE reports as a 500 with a known message:
    /// a VM lock, the config lock timeout, a digest mismatch, the wrong run state.
    fn vm_refusal(&self, method: &Method, path: &str, status: u16, message: &str) -> Option<PveError> {
        if status != 500 {
            return None;
        }
        let (node, vmid) = vm_of_path(path)?;
        let (host, method, path, message) =
            (self.address.clone(), method.to_string(), path.to_string(), message.to_string());
        Some(match Refusal::of(&message)? {
            Refusal::Locked(lock) => PveError::Locked { host, method, path, node, vmid, lock },
            Refusal::LockTimeout => PveError::LockTimeout { host, method, path, node, vmid, message },
            Refusal::DigestMismatch => PveError::DigestMismatch { host, method, path, node, vmid, message },
            Refusal::NotRunning => PveError::RunState { host, method, path, node, vmid, running: false, message },
            Refusal::AlreadyRunning => PveError::RunState { host, method, path, node, vmid, running: true, message },
            Refusal::SnapshotExists => PveError::SnapshotExists { host, method, path, node, vmid, message },
            Refusal::SnapshotMissing => PveError::SnapshotMissing { host, method, path, node, vmid, message },
        })
    }

    fn transport_error(&self, path: &str, err: &reqwest::Error) -> PveError {
        let host = self.address.clone();
        let path = path.to_string();
        if let Some(reason) = tls_failure(err) {
            let fingerprint = self.seen_fingerprint.lock().ok().and_then(|f| *f).map(|f| tls::format_fingerprint(&f));
            return PveError::Tls { host, path, reason, fingerprint, pinned: self.pinned };
        }
        if err.is_timeout() {
            let after = if err.is_connect() { self.settings.connect_timeout } else { self.settings.timeout };
            return PveError::Timeout { host, path, after };
        }
        PveError::Connect { host, path, reason: innermost(err) }
    }
}

/// `pve1` from `/nodes/pve1/qemu/101/...`.
fn node_of(path: &str) -> Option<String> {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next()) {
        (Some("nodes"), Some(node)) if !node.is_empty() => Some(node.to_string()),
        _ => None,
    }
}

/// The rustls error behind a failed request, if the failure was certificate trust.
fn tls_failure(err: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // io::Error hides its payload from `source()` (and hyper nests one io::Error in another):
        // step into the payload itself.
        source = match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// The most specific message in an error chain ("Connection refused", ...).
fn innermost(err: &reqwest::Error) -> String {
    let mut last = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        last = e.to_string();
        source = e.source();
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_escapes_semicolon_ampersand_and_space() {
        let body = encode_form(&[
            ("tags".into(), "a;b&c".into()),
            ("sshkeys".into(), "ssh-ed25519 AAA= me@x".into()),
            ("ipconfig0".into(), "ip=10.0.0.5/24,gw=10.0.0.1".into()),
        ]);
        assert_eq!(
            body,
            "tags=a%3Bb%26c&sshkeys=ssh-ed25519%20AAA%3D%20me%40x&ipconfig0=ip%3D10.0.0.5%2F24%2Cgw%3D10.0.0.1"
        );
    }

    #[test]
    fn node_is_read_from_node_paths_only() {
        assert_eq!(node_of("/nodes/pve2/qemu/101/config").as_deref(), Some("pve2"));
        assert_eq!(node_of("/cluster/resources"), None);
    }

    fn settings() -> PveSettings {
        let mut s = PveSettings::new("127.0.0.1", "root@pam");
        s.password = Some(Secret::new("hunter2-secret"));
        s
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let mut s = settings();
        s.token_id = Some("k3sx".into());
        s.token_secret = Some(Secret::new("tok-secret-42"));
        let client = PveClient::new(s.clone()).unwrap();
        let shown = format!("{s:?} {client:?}");
        assert!(!shown.contains("hunter2-secret") && !shown.contains("tok-secret-42"), "{shown}");
    }

    #[test]
    fn error_message_falls_back_to_the_status_line_and_595_names_the_node() {
        let client = PveClient::new(settings()).unwrap();
        let path = "/nodes/pve1/qemu/101/status/start";
        let reason = Some("service busy".to_string());
        let err = client.answer_error(&Method::POST, path, 503, reason, br#"{"data":null}"#);
        assert!(matches!(&err, PveError::Api { status: 503, message, .. } if message == "service busy"), "{err}");
        let err = client.answer_error(&Method::GET, path, 595, None, b"");
        assert!(matches!(&err, PveError::NodeUnreachable { node: Some(n), .. } if n == "pve1"), "{err}");
        assert!(err.to_string().contains("pve1"), "{err}");
        let body = br#"{"data":null,"message":"Parameter verification failed.\n","errors":{"ipconfig0":"bad"}}"#;
        let err = client.answer_error(&Method::PUT, path, 400, Some("Parameter verification failed.".into()), body);
        let PveError::Api { message, field_errors, .. } = &err else { panic!("{err}") };
        assert_eq!(message, "Parameter verification failed.");
        assert_eq!(field_errors.get("ipconfig0").map(String::as_str), Some("bad"));
    }

    #[test]
    fn vm_refusals_are_typed_and_name_the_vm() {
        let client = PveClient::new(settings()).unwrap();
        let refused = |method: &Method, path: &str, message: &str| {
            client.answer_error(method, path, 500, Some(message.to_string()), br#"{"data":null}"#)
        };
        let start = "/nodes/pve1/qemu/101/status/start";
        let config = "/nodes/pve2/qemu/102/config";
        let err = refused(&Method::POST, start, "VM is locked (backup)");
        assert!(matches!(&err, PveError::Locked { lock, vmid: 101, .. } if lock == "backup"), "{err}");
        assert_eq!((err.kind(), err.vm(), err.status()), ("locked", Some(("pve1".to_string(), 101)), Some(500)));
        let err = refused(&Method::PUT, config, "can't lock file '/var/lock/qemu-server/lock-102.conf' - got timeout");
        assert_eq!(err.kind(), "lock_timeout", "{err}");
        assert!(err.to_string().contains("VM 102 on node `pve2`"), "{err}");
        let err = refused(&Method::PUT, config, "checksum mismatch (file change by other user?)");
        assert_eq!(err.kind(), "digest_mismatch", "{err}");
        let err =
            refused(&Method::PUT, config, "detected modified configuration - file changed by other user? Try again.");
        assert_eq!(err.kind(), "digest_mismatch", "{err}");
        assert!(err.to_string().contains(config), "{err}");
        assert_eq!(refused(&Method::POST, start, "VM 101 not running").kind(), "not_running");
        assert_eq!(refused(&Method::POST, start, "VM 101 already running").kind(), "already_running");
        // Not about a VM, or not a known refusal: a plain API error, still naming the path.
        assert_eq!(refused(&Method::PUT, "/cluster/options", "VM is locked (backup)").kind(), "api");
        let err = refused(&Method::POST, start, "QEMU exited with code 1");
        assert_eq!((err.kind(), err.vm()), ("api", Some(("pve1".to_string(), 101))));
    }

    #[test]
    fn snapshot_refusals_answered_at_once_are_typed_and_name_the_snapshot() {
        let client = PveClient::new(settings()).unwrap();
        let refused = |method: &Method, path: &str, message: &str| {
            client.answer_error(method, path, 500, Some(message.to_string()), br#"{"data":null}"#)
        };
        let create = "/nodes/pve1/qemu/101/snapshot";
        let err = refused(&Method::POST, create, "snapshot name 'pre' already used");
        assert!(matches!(&err, PveError::SnapshotExists { vmid: 101, .. }), "{err}");
        assert_eq!(
            (err.kind(), err.status(), err.reason().as_str()),
            ("snapshot_exists", Some(500), "snapshot `pre` already exists")
        );
        let text = err.to_string();
        assert!(text.contains("VM 101 on node `pve1` already has a snapshot `pre`") && text.contains(create), "{text}");
        let config = "/nodes/pve1/qemu/101/snapshot/pre/config";
        let err = refused(&Method::GET, config, "snapshot 'pre' does not exist");
        assert!(matches!(&err, PveError::SnapshotMissing { .. }), "{err}");
        assert_eq!(err.reason(), "no snapshot `pre`");
        assert_eq!((err.kind(), err.vm()), ("snapshot_missing", Some(("pve1".to_string(), 101))));
        assert_eq!(refused(&Method::POST, create, "VM is locked (backup)").kind(), "locked");
        // A missing VM is not a missing snapshot.
        let err = refused(&Method::GET, create, "Configuration file 'nodes/pve1/qemu-server/101.conf' does not exist");
        assert_eq!(err.kind(), "api", "{err}");
    }

    #[test]
    fn bad_fingerprint_and_missing_credentials_are_config_errors() {
        let mut s = settings();
        s.fingerprint = Some("zz".into());
        assert_eq!(PveClient::new(s).unwrap_err().kind(), "config");
        let mut s = settings();
        s.password = None;
        let err = PveClient::new(s).unwrap_err();
        assert!(err.is_setup_error() && err.to_string().contains("PROXMOX_PASSWORD"), "{err}");
        let mut s = settings();
        s.token_id = Some("root@pam!k3sx".into());
        assert!(PveClient::new(s).unwrap_err().to_string().contains("PROXMOX_API_TOKEN_SECRET"));
    }
}
