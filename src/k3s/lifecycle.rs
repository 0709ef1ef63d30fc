//! Day-2 mechanics that need no SSH: the etcd snapshot command and what it printed, and when a
//! node counts as upgraded.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{NodeState, Version};

/// A snapshot name K3s accepts and a shell passes through unquoted: letters, digits, `-`, `_`,
/// `.`; 1 to 100 characters, starting with a letter or digit.
pub fn valid_snapshot_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 100 {
        return Err(format!("etcd snapshot name `{name}`: 1 to 100 characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) || !name.chars().all(ok_char) {
        return Err(format!("etcd snapshot name `{name}`: a letter or digit, then letters, digits, `-`, `_` or `.`"));
    }
    Ok(())
}

/// `k3s etcd-snapshot save --name NAME` (run as root on a server).
pub fn etcd_snapshot_command(name: &str) -> Result<String, String> {
    valid_snapshot_name(name)?;
    Ok(format!("k3s etcd-snapshot save --name {name}"))
}

/// The file K3s saved, from its log (`Snapshot NAME-NODE-TIME saved.`): K3s appends the node
/// name and the time to the name it was given.
pub fn saved_snapshot(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let rest = &line[line.find("Snapshot ")? + "Snapshot ".len()..];
        let end = rest.find(" saved.")?;
        let file = rest[..end].trim_matches('"');
        (!file.is_empty() && !file.contains(' ')).then(|| file.to_string())
    })
}

/// `YYYYMMDD-HHMMSS` in UTC: sorts as it reads, and is valid in snapshot names.
pub fn utc_stamp(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Why `name` is not back on `version` yet (not registered, another kubelet version, not
/// Ready, for a server not yet an etcd voter), or `None` when it is.
pub fn not_upgraded(nodes: &[NodeState], name: &str, version: &str, voter: bool) -> Option<String> {
    let Some(n) = nodes.iter().find(|n| n.name == name) else {
        return Some(format!("{name}: not registered"));
    };
    let same = match (Version::parse(&n.kubelet_version), Version::parse(version)) {
        (Ok(a), Ok(b)) => a == b,
        _ => n.kubelet_version == version,
    };
    if !same {
        return Some(format!("{name}: kubelet {} (waiting for {version})", n.kubelet_version));
    }
    if !n.ready {
        return Some(format!("{name}: {version}, not Ready"));
    }
    if voter && n.etcd_voter != Some(true) {
        return Some(format!("{name}: {version}, Ready, etcd learner (not yet a voter)"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn node(name: &str, version: &str, ready: bool, voter: Option<bool>) -> NodeState {
        NodeState {
            name: name.into(),
            roles: vec![],
            kubelet_version: version.into(),
            ready,
            etcd_voter: voter,
            internal_ip: None,
            unschedulable: false,
            labels: Default::default(),
        }
    }

    #[test]
    fn a_node_is_upgraded_only_on_the_new_version_ready_and_for_a_server_a_voter() {
        let v = "v1.31.12+k3s1";
        assert!(not_upgraded(&[], "a", v, false).unwrap().contains("not registered"));
        let old = [node("a", "v1.30.14+k3s2", true, Some(true))];
        assert!(not_upgraded(&old, "a", v, true).unwrap().contains("waiting for v1.31.12+k3s1"));
        let learner = [node("a", v, true, Some(false))];
        assert!(not_upgraded(&learner, "a", v, true).unwrap().contains("learner"));
        assert_eq!(not_upgraded(&learner, "a", v, false), None, "an agent's wait ignores EtcdIsVoter");
        assert!(not_upgraded(&[node("a", v, false, Some(true))], "a", v, true).unwrap().contains("not Ready"));
        assert_eq!(not_upgraded(&[node("a", v, true, Some(true))], "a", v, true), None);
    }

    #[test]
    fn the_saved_snapshot_file_is_read_from_k3s_output() {
        let log = "time=\"..\" level=info msg=\"Saving etcd snapshot to /var/lib/rancher/k3s/server/db/snapshots/k3sx-pre-upgrade-1-n1-17\"\n\
                   time=\"..\" level=info msg=\"Snapshot k3sx-pre-upgrade-1-n1-17 saved.\"\n";
        assert_eq!(saved_snapshot(log).as_deref(), Some("k3sx-pre-upgrade-1-n1-17"));
        assert_eq!(saved_snapshot("nothing here"), None);
    }

    #[test]
    fn snapshot_names_are_checked_and_the_stamp_is_utc() {
        assert_eq!(
            etcd_snapshot_command("k3sx-pre-upgrade-x").unwrap(),
            "k3s etcd-snapshot save --name k3sx-pre-upgrade-x"
        );
        for bad in ["", "-x", "a b", "a;rm", "a/b"] {
            assert!(etcd_snapshot_command(bad).is_err(), "{bad}");
        }
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101-000000");
        // 2024-02-29 12:34:56 UTC
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(1_709_210_096)), "20240229-123456");
    }
}
