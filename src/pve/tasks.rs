//! Proxmox worker tasks: the UPID that names one, its state while it runs, and how it ended.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A task id as PVE hands it out: `UPID:node:pid:pstart:starttime:type:id:user:` (hex numbers).
///
/// The node is where the task runs, and the only place its status and log can be read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upid {
    raw: String,
    node: String,
    pid: u32,
    pstart: u64,
    starttime: u64,
    task_type: String,
    id: String,
    user: String,
}

impl Upid {
    /// Parses a UPID as PVE's `upid_decode` does (hex fields of any width up to 16 digits,
    /// an empty `id` allowed). Surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<Upid, String> {
        let raw = text.trim();
        let bad = |why: &str| format!("`{raw}` is not a UPID ({why})");
        let rest = raw.strip_prefix("UPID:").ok_or_else(|| bad("no `UPID:` prefix"))?;
        let rest = rest.strip_suffix(':').ok_or_else(|| bad("no trailing `:`"))?;
        let parts: Vec<&str> = rest.split(':').collect();
        let [node, pid, pstart, starttime, task_type, id, user] = parts[..] else {
            return Err(bad("expected 7 fields"));
        };
        let hex = |field: &str, name: &str| {
            if field.is_empty() || field.len() > 16 {
                return Err(bad(&format!("bad {name}")));
            }
            u64::from_str_radix(field, 16).map_err(|_| bad(&format!("{name} is not hex")))
        };
        let valid_node = !node.is_empty() && node.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !valid_node {
            return Err(bad("bad node name"));
        }
        if task_type.is_empty() || user.is_empty() || raw.chars().any(char::is_whitespace) {
            return Err(bad("empty type or user"));
        }
        Ok(Upid {
            raw: raw.to_string(),
            node: node.to_string(),
            pid: u32::try_from(hex(pid, "pid")?).map_err(|_| bad("pid too large"))?,
            pstart: hex(pstart, "pstart")?,
            starttime: hex(starttime, "starttime")?,
            task_type: task_type.to_string(),
            id: id.to_string(),
            user: user.to_string(),
        })
    }

    /// The UPID as PVE wrote it.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The node the task runs on.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn pstart(&self) -> u64 {
        self.pstart
    }

    /// Unix time the task started.
    pub fn starttime(&self) -> u64 {
        self.starttime
    }

    /// `qmstart`, `qmshutdown`, `qmstop`, `qmreboot`, `qmconfig`, `vzdump`, ...
    pub fn task_type(&self) -> &str {
        &self.task_type
    }

    /// The object the task works on; the VMID for VM tasks. May be empty.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The VMID, when the task's id is one.
    pub fn vmid(&self) -> Option<u32> {
        self.id.parse().ok()
    }

    /// `user@realm` or `user@realm!token` that started the task.
    pub fn user(&self) -> &str {
        &self.user
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl FromStr for Upid {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Upid::parse(s)
    }
}

/// One look at a task (`GET /nodes/{node}/tasks/{upid}/status`), as `wait_task` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    pub upid: Upid,
    /// `running` or `stopped`, as reported.
    pub status: String,
    /// When stopped: `OK`, `WARNINGS: n`, or the error message.
    pub exitstatus: Option<String>,
    /// Time since waiting began (zero for a single `task_status` read).
    pub elapsed: Duration,
}

impl TaskState {
    /// True while PVE still runs the task.
    pub fn running(&self) -> bool {
        self.status != "stopped"
    }
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    pub upid: Upid,
    /// True for `OK` and `WARNINGS: n`.
    pub ok: bool,
    /// The exit status as PVE reports it.
    pub exitstatus: String,
    /// The last lines of the task log (e.g. `TASK ERROR: ...`); read only when the exit status is
    /// not plain `OK`, so empty after a clean success.
    pub log_tail: Vec<String>,
    /// Time from the start of the wait until the task was seen stopped.
    pub elapsed: Duration,
}

impl TaskOutcome {
    /// `Ok(self)` if the task succeeded, else [`PveError::TaskFailed`](super::PveError::TaskFailed)
    /// with the exit status and the log tail.
    pub fn into_result(self) -> Result<TaskOutcome, super::PveError> {
        if self.ok {
            Ok(self)
        } else {
            Err(super::PveError::TaskFailed {
                node: self.upid.node().to_string(),
                vmid: self.upid.vmid(),
                upid: self.upid.as_str().to_string(),
                exitstatus: self.exitstatus,
                log_tail: self.log_tail,
            })
        }
    }

    /// The `n` of `WARNINGS: n`, if the task ended with warnings.
    pub fn warnings(&self) -> Option<u32> {
        warnings(&self.exitstatus)
    }
}

/// True for the exit statuses PVE counts as success: `OK` and `WARNINGS: n`.
pub fn task_succeeded(exitstatus: &str) -> bool {
    let s = exitstatus.trim();
    s == "OK" || warnings(s).is_some()
}

fn warnings(exitstatus: &str) -> Option<u32> {
    exitstatus.trim().strip_prefix("WARNINGS:").and_then(|n| n.trim().parse().ok())
}

/// The poll interval after `polls` polls: 250 ms, growing by half each time, at most 1 s.
pub(super) fn poll_interval(polls: u32) -> Duration {
    let mut ms = 250u64;
    for _ in 0..polls.min(8) {
        ms = ms * 3 / 2;
    }
    Duration::from_millis(ms.min(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upid_fields_are_parsed() {
        let u = Upid::parse("UPID:pve-2:000A1B2C:0123ABCD:65F0A1B2:qmshutdown:101:root@pam!k3sx:").unwrap();
        assert_eq!(u.node(), "pve-2");
        assert_eq!(u.pid(), 0x000A_1B2C);
        assert_eq!(u.pstart(), 0x0123_ABCD);
        assert_eq!(u.starttime(), 0x65F0_A1B2);
        assert_eq!(u.task_type(), "qmshutdown");
        assert_eq!(u.vmid(), Some(101));
        assert_eq!(u.user(), "root@pam!k3sx");
        assert_eq!(u.to_string(), "UPID:pve-2:000A1B2C:0123ABCD:65F0A1B2:qmshutdown:101:root@pam!k3sx:");
        // pstart may outgrow 8 digits; the id may be empty.
        let u: Upid = "UPID:pve1:00001234:123456789:65F0A1B2:vzdump::root@pam:".parse().unwrap();
        assert_eq!((u.id(), u.vmid(), u.pstart()), ("", None, 0x1_2345_6789));
    }

    #[test]
    fn malformed_upids_are_refused() {
        for bad in [
            "",
            "UPID:pve1:1:2:3:qmstart:101:root@pam",
            "PID:pve1:1:2:3:qmstart:101:root@pam:",
            "UPID:pve1:xyz:2:3:qmstart:101:root@pam:",
            "UPID::1:2:3:qmstart:101:root@pam:",
            "UPID:pve1:1:2:3::101:root@pam:",
            "UPID:pve1:1:2:3:qmstart:101:",
            "UPID:pve1:1:2:3:qmstart:101:root@pam:extra:",
        ] {
            assert!(Upid::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn ok_and_warnings_are_success() {
        assert!(task_succeeded("OK"));
        assert!(task_succeeded("WARNINGS: 2"));
        assert!(!task_succeeded("VM quit/powerdown failed - got timeout"));
        assert!(!task_succeeded("WARNINGS: many"));
        assert!(!task_succeeded("unexpected status"));
    }

    #[test]
    fn polling_backs_off_to_one_second() {
        assert_eq!(poll_interval(0), Duration::from_millis(250));
        assert_eq!(poll_interval(1), Duration::from_millis(375));
        assert_eq!(poll_interval(50), Duration::from_secs(1));
    }
}
