//! Where the latest K3s version comes from: the channel server (preferred: no rate limit)
//! or GitHub's releases API.

use reqwest::blocking::Client;
use serde::Deserialize;

use super::Version;
use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("cannot reach {url} ({message})")]
    Network { url: String, message: String },
    #[error("{url} answered {status}")]
    Http { url: String, status: String },
    #[error(
        "{url}: GitHub's rate limit is used up (60 requests an hour without a token); set GITHUB_TOKEN or use the channel server"
    )]
    RateLimited { url: String },
    #[error("{url}: unexpected answer: {message}")]
    Malformed { url: String, message: String },
    #[error("{url}: no channel `{channel}` (channels: {available})")]
    NoSuchChannel { url: String, channel: String, available: String },
}

impl ReleaseError {
    pub fn kind(&self) -> &'static str {
        match self {
            ReleaseError::Network { .. } => "network",
            ReleaseError::Http { .. } => "http",
            ReleaseError::RateLimited { .. } => "rate_limited",
            ReleaseError::Malformed { .. } => "malformed",
            ReleaseError::NoSuchChannel { .. } => "no_such_channel",
        }
    }
}

#[derive(Deserialize)]
struct Channels {
    data: Vec<Channel>,
}

#[derive(Deserialize)]
struct Channel {
    id: String,
    latest: String,
}

/// The latest version of `channel` (`stable`, `latest`, `v1.32`, ...) from the channel server.
pub fn latest_in_channel(client: &Client, url: &str, channel: &str) -> Result<Version, ReleaseError> {
    let body: Channels = get_json(client, url, None)?;
    let found = body.data.iter().find(|c| c.id == channel).ok_or_else(|| ReleaseError::NoSuchChannel {
        url: url.into(),
        channel: channel.into(),
        available: body.data.iter().map(|c| c.id.as_str()).collect::<Vec<_>>().join(", "),
    })?;
    Version::parse(&found.latest).map_err(|message| ReleaseError::Malformed { url: url.into(), message })
}

#[derive(Debug, Clone, Deserialize)]
pub struct GithubRelease {
    pub tag_name: String,
    #[serde(default)]
    pub prerelease: bool,
    #[serde(default)]
    pub draft: bool,
    #[serde(default)]
    pub html_url: String,
}

/// GitHub's latest release (newest by date, not by version). `token` raises the rate limit.
pub fn latest_on_github(
    client: &Client,
    url: &str,
    token: Option<&Secret>,
) -> Result<(Version, GithubRelease), ReleaseError> {
    let release: GithubRelease = get_json(client, url, token)?;
    let version =
        Version::parse(&release.tag_name).map_err(|message| ReleaseError::Malformed { url: url.into(), message })?;
    Ok((version, release))
}

fn get_json<T: for<'de> Deserialize<'de>>(
    client: &Client,
    url: &str,
    token: Option<&Secret>,
) -> Result<T, ReleaseError> {
    let mut req = client.get(url).header("Accept", "application/json");
    if let Some(t) = token {
        req = req.bearer_auth(t.expose());
    }
    // The URL is in the error already: reqwest's own message would name it a second time.
    let resp = req.send().map_err(|e| ReleaseError::Network { url: url.into(), message: root_cause(&e) })?;
    let status = resp.status();
    if status == reqwest::StatusCode::FORBIDDEN || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        let remaining = resp.headers().get("x-ratelimit-remaining").and_then(|v| v.to_str().ok());
        if remaining == Some("0") {
            return Err(ReleaseError::RateLimited { url: url.into() });
        }
    }
    if !status.is_success() {
        return Err(ReleaseError::Http { url: url.into(), status: status.to_string() });
    }
    resp.json().map_err(|e| ReleaseError::Malformed { url: url.into(), message: error_chain(&e) })
}

/// The innermost cause ("Connection refused (os error 111)", "failed to lookup address
/// information: ..."): what a person can act on, without reqwest's wrappers and the URL.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(s) = cause.source() {
        cause = s;
    }
    cause.to_string()
}

/// The error with its causes, since reqwest's top-level message alone says little.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}
