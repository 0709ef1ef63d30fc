//! VM snapshots: the list, and the writes that create, roll back and delete one.
//!
//! Each write is a [`WriteRequest`] whose answer is a task (a UPID): send it with
//! [`PveClient::send_task`] and wait with [`PveClient::wait_task`]. PVE checks most refusals
//! inside the task, so they come back as the task's exit status, classified by
//! [`PveError::kind`]: `snapshot_exists` (the name is in use), `snapshot_missing`, `locked`.

use serde_json::Value;

use super::client::PveClient;
use super::error::PveError;
use super::path::ApiPath;
use super::power::{ParamValue, WriteMethod, WriteRequest};

/// The longest snapshot name PVE accepts.
pub const SNAPSHOT_NAME_MAX: usize = 40;

/// One snapshot of a VM, as `GET /nodes/{node}/qemu/{vmid}/snapshot` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub name: String,
    /// Empty when none was given.
    pub description: String,
    /// Unix time the snapshot was taken (`snaptime`), when PVE reports it.
    pub time: Option<u64>,
    /// True when the snapshot includes the VM's RAM (taken with `vmstate=1` of a running VM).
    pub vmstate: bool,
    /// The snapshot this one was taken on top of.
    pub parent: Option<String>,
}

/// Checks a snapshot name as PVE does before it starts a task: its `pve-configid` format
/// (`[A-Za-z][A-Za-z0-9_-]+`, so at least 2 characters), at most 40 characters, and not one of
/// the names PVE reserves: `current` (the VM's present state in the snapshot list) and
/// `pending` (any case).
///
/// # Errors
/// Why the name is refused.
pub fn check_snapshot_name(name: &str) -> Result<(), String> {
    let shown = name.escape_default();
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return Err(format!("snapshot name `{shown}` must start with a letter"));
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        return Err(format!(
            "snapshot name `{shown}` contains `{}`: only letters, digits, `_` and `-` are allowed",
            c.escape_default()
        ));
    }
    if name.len() < 2 {
        return Err(format!("snapshot name `{shown}` is too short: PVE needs at least 2 characters"));
    }
    if name.len() > SNAPSHOT_NAME_MAX {
        return Err(format!("snapshot name `{shown}` is longer than {SNAPSHOT_NAME_MAX} characters"));
    }
    if name == "current" || name.eq_ignore_ascii_case("pending") {
        return Err(format!("snapshot name `{name}` is reserved by PVE"));
    }
    Ok(())
}

impl WriteRequest {
    /// `POST /nodes/{node}/qemu/{vmid}/snapshot` with `snapname`, `vmstate=1` when `vmstate`
    /// (save the RAM of a running VM too), and `description` when given.
    ///
    /// # Errors
    /// A name [`check_snapshot_name`] refuses, or a node name that is not a path segment.
    pub fn snapshot_create(
        node: &str,
        vmid: u32,
        name: &str,
        vmstate: bool,
        description: Option<&str>,
    ) -> Result<WriteRequest, String> {
        check_snapshot_name(name)?;
        let mut params = vec![plain("snapname", name)];
        if vmstate {
            params.push(plain("vmstate", "1"));
        }
        if let Some(d) = description {
            params.push(plain("description", d));
        }
        WriteRequest::new(WriteMethod::Post, ApiPath::vm(node, vmid, &["snapshot"])?, params)
    }

    /// `POST /nodes/{node}/qemu/{vmid}/snapshot/{name}/rollback`: the VM's disks, configuration
    /// (and RAM, for a snapshot with `vmstate`) back to the snapshot. PVE stops a running VM first.
    ///
    /// # Errors
    /// As [`WriteRequest::snapshot_create`].
    pub fn snapshot_rollback(node: &str, vmid: u32, name: &str) -> Result<WriteRequest, String> {
        check_snapshot_name(name)?;
        WriteRequest::new(WriteMethod::Post, ApiPath::vm(node, vmid, &["snapshot", name, "rollback"])?, [])
    }

    /// `DELETE /nodes/{node}/qemu/{vmid}/snapshot/{name}`. Its answer is a task, like the POSTs.
    ///
    /// # Errors
    /// As [`WriteRequest::snapshot_create`].
    pub fn snapshot_delete(node: &str, vmid: u32, name: &str) -> Result<WriteRequest, String> {
        check_snapshot_name(name)?;
        WriteRequest::new(WriteMethod::Delete, ApiPath::vm(node, vmid, &["snapshot", name])?, [])
    }
}

fn plain(key: &str, value: &str) -> (String, ParamValue) {
    (key.to_string(), ParamValue::Plain(value.to_string()))
}

impl PveClient {
    /// The VM's snapshots, oldest first (`GET .../snapshot`), without the `current` entry PVE
    /// adds for the present state.
    ///
    /// # Errors
    /// Read errors after the client's retries; [`PveError::Decode`] for a list that is not one.
    pub fn snapshots(&self, node: &str, vmid: u32) -> Result<Vec<Snapshot>, PveError> {
        let path = ApiPath::vm(node, vmid, &["snapshot"])
            .map_err(|message| PveError::Invalid { host: self.address().to_string(), message })?
            .to_string();
        let data = self.get(&path, &[])?;
        parse_snapshots(&data).map_err(|reason| self.decode_error(&path, reason))
    }
}

/// The answer of `GET .../snapshot`, oldest first (then by name), `current` left out.
///
/// # Errors
/// An answer that is not a list, or an entry without a `name`.
pub fn parse_snapshots(data: &Value) -> Result<Vec<Snapshot>, String> {
    let items = data.as_array().ok_or("expected a list of snapshots")?;
    let mut list = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = item
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("snapshot entry {i} has no `name`"))?;
        if name == "current" {
            continue;
        }
        let text = |key: &str| item.get(key).and_then(Value::as_str).map(str::to_string);
        list.push(Snapshot {
            name: name.to_string(),
            description: text("description").unwrap_or_default(),
            time: item.get("snaptime").and_then(number),
            vmstate: item.get("vmstate").is_some_and(flag),
            parent: text("parent").filter(|p| !p.is_empty()),
        });
    }
    list.sort_by(|a, b| (a.time, &a.name).cmp(&(b.time, &b.name)));
    Ok(list)
}

/// A number PVE may send as a JSON number or as text.
fn number(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// PVE's booleans: `1`/`0`, `true`/`false`, or the same as text.
fn flag(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.trim(), "1" | "true"),
        other => other.as_u64().is_some_and(|n| n != 0),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pve::TaskOutcome;
    use crate::pve::tasks::Upid;

    #[test]
    fn snapshot_requests_carry_name_vmstate_and_description() {
        let req = WriteRequest::snapshot_create("pve1", 101, "pre-upgrade", true, Some("before v1.31")).unwrap();
        assert_eq!(req.method, WriteMethod::Post);
        assert_eq!(
            req.to_string(),
            "POST /nodes/pve1/qemu/101/snapshot snapname=pre-upgrade vmstate=1 description=\"before v1.31\""
        );
        assert_eq!(
            WriteRequest::snapshot_create("pve1", 101, "pre_1", false, None).unwrap().to_string(),
            "POST /nodes/pve1/qemu/101/snapshot snapname=pre_1",
            "without vmstate=0 and without a description"
        );
        let rollback = WriteRequest::snapshot_rollback("pve2", 102, "pre").unwrap();
        assert_eq!(rollback.to_string(), "POST /nodes/pve2/qemu/102/snapshot/pre/rollback");
        let delete = WriteRequest::snapshot_delete("pve2", 102, "pre").unwrap();
        assert_eq!(
            (delete.method, delete.path.to_string()),
            (WriteMethod::Delete, "/nodes/pve2/qemu/102/snapshot/pre".into())
        );
        assert!(delete.params.is_empty());
        assert!(WriteRequest::snapshot_rollback("../access", 101, "pre").is_err(), "a node name is a path segment");
    }

    #[test]
    fn snapshot_names_are_checked_as_pve_checks_them() {
        let forty = format!("a{}", "b".repeat(39));
        for good in ["ab", "Pre-upgrade_1", "k3sx-pre-v1-31-2", forty.as_str(), "Current", "currently"] {
            assert_eq!(check_snapshot_name(good), Ok(()), "{good}");
        }
        let too_long = format!("{forty}c");
        for (bad, why) in [
            ("", "start with a letter"),
            ("1pre", "start with a letter"),
            ("-pre", "start with a letter"),
            ("a", "at least 2"),
            ("pre.1", "contains `.`"),
            ("pre/../x", "contains `/`"),
            ("pre upgrade", "contains ` `"),
            ("pre\nx", "contains `\\n`"),
            ("prä", "contains"),
            (too_long.as_str(), "longer than 40"),
            ("current", "reserved"),
            ("Pending", "reserved"),
        ] {
            let err = check_snapshot_name(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
            for request in [
                WriteRequest::snapshot_create("pve1", 101, bad, false, None),
                WriteRequest::snapshot_rollback("pve1", 101, bad),
                WriteRequest::snapshot_delete("pve1", 101, bad),
            ] {
                assert_eq!(request.unwrap_err(), err);
            }
        }
    }

    #[test]
    fn the_list_leaves_out_current_and_is_oldest_first() {
        let data = json!([
            {"name": "b", "snaptime": 200, "vmstate": 0, "description": "", "parent": "a"},
            {"name": "current", "digest": "abc", "running": 1, "description": "You are here!", "parent": "b"},
            {"name": "a", "snaptime": "100", "vmstate": 1, "description": "first"},
        ]);
        let list = parse_snapshots(&data).unwrap();
        assert_eq!(
            list,
            vec![
                Snapshot {
                    name: "a".into(),
                    description: "first".into(),
                    time: Some(100),
                    vmstate: true,
                    parent: None
                },
                Snapshot {
                    name: "b".into(),
                    description: "".into(),
                    time: Some(200),
                    vmstate: false,
                    parent: Some("a".into())
                },
            ]
        );
        assert_eq!(parse_snapshots(&json!([{"name": "current"}])).unwrap(), vec![]);
        assert!(parse_snapshots(&json!({"name": "a"})).is_err());
        assert!(parse_snapshots(&json!([{"snaptime": 1}])).unwrap_err().contains("no `name`"));
    }

    fn failed_task(task_type: &str, exitstatus: &str) -> PveError {
        let upid = Upid::parse(&format!("UPID:pve1:00000001:00000007:65F0A1B2:{task_type}:101:root@pam:")).unwrap();
        let log_tail = vec![exitstatus.to_string(), format!("TASK ERROR: {exitstatus}")];
        TaskOutcome { upid, ok: false, exitstatus: exitstatus.into(), log_tail, elapsed: Default::default() }
            .into_result()
            .unwrap_err()
    }

    #[test]
    fn failed_snapshot_tasks_are_classified_by_their_exit_status() {
        // pve-guest-common's wording (what fakepve says too), and a storage's own.
        let err = failed_task("qmsnapshot", "snapshot name 'pre' already used");
        assert_eq!((err.kind(), err.reason().as_str()), ("snapshot_exists", "snapshot `pre` already exists"));
        let zfs = "zfs error: cannot create snapshot 'rpool/data/vm-101-disk-0@pre': dataset already exists";
        let err = failed_task("qmsnapshot", zfs);
        assert_eq!((err.kind(), err.reason().as_str()), ("snapshot_exists", "snapshot `pre` already exists"));
        for task_type in ["qmrollback", "qmdelsnapshot"] {
            let err = failed_task(task_type, "snapshot 'pre' does not exist");
            assert_eq!((err.kind(), err.reason().as_str()), ("snapshot_missing", "no snapshot `pre`"));
            assert_eq!(err.vm(), Some(("pve1".to_string(), 101)));
        }
        assert_eq!(failed_task("qmsnapshot", "VM is locked (backup)").kind(), "locked");
        assert_eq!(failed_task("qmrollback", "VM is locked (snapshot-delete)").reason(), "VM locked (snapshot-delete)");
        // Look-alikes are other failures.
        for other in [
            "Configuration file 'nodes/pve1/qemu-server/101.conf' does not exist",
            "snapshot feature is not available",
            "unable to rollback to incomplete snapshot (snapstate = prepare)",
            "storage 'local-zfs' does not exist",
        ] {
            assert_eq!(failed_task("qmrollback", other).kind(), "task_failed", "{other}");
        }
    }
}
