//! `k3s::` — versions and releases (more primitives arrive with provisioning).

use std::sync::Arc;

use rhai::{Dynamic, INT, Map, Module};

use super::{RhaiResult, register, script_error};
use crate::k3s::{ReleaseError, Version, release};
use crate::script::Host;
use crate::secret::Secret;

pub fn module(host: &Arc<Host>) -> Module {
    let mut m = Module::new();
    let h = host.clone();
    register(
        &mut m,
        "latest",
        &["channel: &str", "String"],
        "The latest K3s version in `channel` (`stable`, `latest`, `testing`, `v1.32`, ...), asked of the\n\
         channel server (`k3s.channel_url`).\n\n```rhai\nlet v = k3s::latest(\"stable\"); // \"v1.33.4+k3s1\"\n```",
        move |channel: &str| latest(&h, channel),
    );
    let h = host.clone();
    register(
        &mut m,
        "latest",
        &["String"],
        "The latest K3s version in the configured channel (`k3s.channel`).",
        move || latest(&h, &h.config().k3s.channel.clone()),
    );
    let h = host.clone();
    register(
        &mut m,
        "latest_github",
        &["Map"],
        "The latest K3s release on GitHub (`k3s.github_url`): `#{version, prerelease, draft, url}`.\n\
         GitHub allows 60 unauthenticated requests an hour; `GITHUB_TOKEN` raises that.\n\n\
         ```rhai\nlet r = k3s::latest_github(); print(r.version);\n```",
        move || -> RhaiResult<Map> {
            let url = &h.config().k3s.github_url;
            let token = std::env::var("GITHUB_TOKEN").ok().filter(|t| !t.is_empty()).map(Secret::new);
            let (version, rel) = release::latest_on_github(h.http(), url, token.as_ref()).map_err(release_error)?;
            let mut m = Map::new();
            m.insert("version".into(), version.to_string().into());
            m.insert("prerelease".into(), rel.prerelease.into());
            m.insert("draft".into(), rel.draft.into());
            m.insert("url".into(), rel.html_url.into());
            Ok(m)
        },
    );
    register(
        &mut m,
        "compare",
        &["a: &str", "b: &str", "INT"],
        "Compares two K3s versions: -1, 0 or 1. The `+k3sN` suffix counts and release candidates\n\
         sort before their release.\n\n```rhai\nk3s::compare(\"v1.32.10+k3s1\", \"v1.32.9+k3s2\") // 1\n```",
        |a: &str, b: &str| -> RhaiResult<INT> { Ok(parse(a)?.cmp(&parse(b)?) as INT) },
    );
    register(
        &mut m,
        "parse_version",
        &["version: &str", "Map"],
        "Splits a K3s version into `#{major, minor, patch, rc, build, channel}` (`channel` is the\n\
         minor channel, e.g. `v1.32`; `rc` is `()` for releases). Fails on a malformed version.",
        |v: &str| -> RhaiResult<Map> {
            let v = parse(v)?;
            let mut m = Map::new();
            m.insert("major".into(), (v.major as INT).into());
            m.insert("minor".into(), (v.minor as INT).into());
            m.insert("patch".into(), (v.patch as INT).into());
            m.insert("rc".into(), v.rc.map(|r| Dynamic::from(r as INT)).unwrap_or(Dynamic::UNIT));
            m.insert("build".into(), (v.build as INT).into());
            m.insert("channel".into(), v.minor_channel().into());
            Ok(m)
        },
    );
    m
}

fn parse(v: &str) -> RhaiResult<Version> {
    Version::parse(v).map_err(|e| script_error("version", e, Some(v)))
}

fn latest(host: &Host, channel: &str) -> RhaiResult<String> {
    let url = &host.config().k3s.channel_url;
    release::latest_in_channel(host.http(), url, channel).map(|v| v.to_string()).map_err(release_error)
}

fn release_error(e: ReleaseError) -> Box<rhai::EvalAltResult> {
    script_error(e.kind(), e.to_string(), None)
}
