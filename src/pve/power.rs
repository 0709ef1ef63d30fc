//! Writes to a VM — power actions, configuration, the cloud-init drive — and waiting for
//! their tasks and for the VM's run state.
//!
//! Every write is first a [`WriteRequest`], so a caller can print it instead of sending it
//! (`--dry-run`). Writes are never retried once sent (see the client); reads while waiting are
//! retried as every GET is.

use std::fmt;
use std::time::{Duration, Instant};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde_json::Value;

use super::client::PveClient;
use super::error::PveError;
use super::tasks::{self, TaskOutcome, TaskState, Upid};
use super::types::VmStatus;

/// Lines of the task log kept in a [`TaskOutcome`] that did not end in plain `OK`.
pub const TASK_LOG_TAIL: usize = 20;

/// Parameters whose values are never shown (a dry run prints the rest).
const SECRET_PARAMS: &[&str] = &["password", "cipassword"];

/// Characters kept as they are in a path segment such as a UPID (`:`, `@` and `!` included).
const PATH_SEGMENT: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b':').remove(b'@').remove(b'!');

/// One change to send to PVE: method, path (below `/api2/json`) and form parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRequest {
    /// `POST` or `PUT`.
    pub method: &'static str,
    pub path: String,
    pub params: Vec<(String, String)>,
}

impl WriteRequest {
    /// `POST /nodes/{node}/qemu/{vmid}/status/start`.
    pub fn start(node: &str, vmid: u32) -> WriteRequest {
        Self::power(node, vmid, "start", Vec::new())
    }

    /// `POST .../status/stop`: pulls the plug (no guest shutdown).
    pub fn stop(node: &str, vmid: u32) -> WriteRequest {
        Self::power(node, vmid, "stop", Vec::new())
    }

    /// `POST .../status/shutdown` with `timeout` (seconds PVE waits for the guest; PVE's default
    /// when `None`) and `forceStop=1` when `force_stop` (stop the VM if the guest did not).
    pub fn shutdown(node: &str, vmid: u32, timeout_secs: Option<u32>, force_stop: bool) -> WriteRequest {
        let mut params = Vec::new();
        if let Some(t) = timeout_secs {
            params.push(("timeout".to_string(), t.to_string()));
        }
        if force_stop {
            params.push(("forceStop".to_string(), "1".to_string()));
        }
        Self::power(node, vmid, "shutdown", params)
    }

    /// `POST .../status/reboot` with `timeout` (seconds PVE waits for the shutdown half).
    pub fn reboot(node: &str, vmid: u32, timeout_secs: Option<u32>) -> WriteRequest {
        let params = timeout_secs.map(|t| vec![("timeout".to_string(), t.to_string())]).unwrap_or_default();
        Self::power(node, vmid, "reboot", params)
    }

    fn power(node: &str, vmid: u32, action: &str, params: Vec<(String, String)>) -> WriteRequest {
        WriteRequest { method: "POST", path: format!("/nodes/{node}/qemu/{vmid}/status/{action}"), params }
    }

    /// `PUT /nodes/{node}/qemu/{vmid}/config` (synchronous): `Some` values are set in the order
    /// given, `None` ones deleted in one `delete=key1,key2`, and `digest` (as read with the
    /// config) makes PVE refuse the write if the config changed since.
    ///
    /// Refuses an empty change list, an empty or malformed key, a key given twice, and the
    /// reserved `digest` and `delete` keys.
    pub fn set_config(
        node: &str,
        vmid: u32,
        changes: &[(String, Option<String>)],
        digest: Option<&str>,
    ) -> Result<WriteRequest, String> {
        if changes.is_empty() {
            return Err(format!("no configuration change given for VM {vmid}"));
        }
        let mut params = Vec::new();
        let mut deletes: Vec<&str> = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (key, value) in changes {
            let valid = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(format!("`{key}` is not a configuration key (VM {vmid})"));
            }
            if key == "digest" || key == "delete" {
                return Err(format!("`{key}` is not a configuration key: pass the digest separately (VM {vmid})"));
            }
            if !seen.insert(key.as_str()) {
                return Err(format!("configuration key `{key}` given twice (VM {vmid})"));
            }
            match value {
                Some(v) => params.push((key.clone(), v.clone())),
                None => deletes.push(key),
            }
        }
        if !deletes.is_empty() {
            params.push(("delete".to_string(), deletes.join(",")));
        }
        if let Some(d) = digest.map(str::trim).filter(|d| !d.is_empty()) {
            params.push(("digest".to_string(), d.to_string()));
        }
        Ok(WriteRequest { method: "PUT", path: format!("/nodes/{node}/qemu/{vmid}/config"), params })
    }

    /// `PUT /nodes/{node}/qemu/{vmid}/cloudinit` (PVE ≥ 8.1): rebuild the cloud-init drive from the
    /// current configuration. A running guest sees it at its next boot.
    pub fn regenerate_cloudinit(node: &str, vmid: u32) -> WriteRequest {
        WriteRequest { method: "PUT", path: format!("/nodes/{node}/qemu/{vmid}/cloudinit"), params: Vec::new() }
    }

    /// The parameters as a dry run shows them: secrets (`password`, `cipassword`) as `***`.
    pub fn shown_params(&self) -> Vec<(String, String)> {
        self.params
            .iter()
            .map(|(k, v)| {
                let shown = if SECRET_PARAMS.contains(&k.as_str()) { "***".to_string() } else { v.clone() };
                (k.clone(), shown)
            })
            .collect()
    }
}

impl fmt::Display for WriteRequest {
    /// `PUT /nodes/pve1/qemu/101/config nameserver="1.1.1.1 8.8.8.8" delete=searchdomain`,
    /// secrets masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        for (k, v) in self.shown_params() {
            let plain = !v.is_empty() && v.chars().all(|c| !c.is_whitespace() && c != '"' && !c.is_control());
            if plain {
                write!(f, " {k}={v}")?;
            } else {
                write!(f, " {k}={v:?}")?;
            }
        }
        Ok(())
    }
}

impl PveClient {
    /// Sends a [`WriteRequest`] (once: a write is never retried after it went out) and returns
    /// the answer's `data`.
    pub fn send_write(&self, request: &WriteRequest) -> Result<Value, PveError> {
        let method = match request.method {
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "DELETE" => Method::DELETE,
            other => {
                return Err(PveError::Invalid {
                    host: self.address().to_string(),
                    message: format!("unsupported write method {other}"),
                });
            }
        };
        if method == Method::DELETE {
            return self.call(method, &request.path, &request.params, None);
        }
        self.call(method, &request.path, &[], Some(&request.params))
    }

    /// Starts the VM; returns the `qmstart` task. A start of a running VM fails in the task
    /// (`VM 101 already running`, kind `already_running`): check the status first.
    pub fn start(&self, node: &str, vmid: u32) -> Result<Upid, PveError> {
        self.send_power(&WriteRequest::start(node, vmid))
    }

    /// Asks the guest to shut down (ACPI); returns the `qmshutdown` task, which fails with
    /// `VM quit/powerdown failed - got timeout` when the guest is not off after `timeout_secs`,
    /// unless `force_stop`. A stopped VM: real PVE answers with a task that does nothing, fakepve
    /// with 500 `VM 101 not running` (kind `not_running`) — check the status first.
    pub fn shutdown(
        &self,
        node: &str,
        vmid: u32,
        timeout_secs: Option<u32>,
        force_stop: bool,
    ) -> Result<Upid, PveError> {
        self.send_power(&WriteRequest::shutdown(node, vmid, timeout_secs, force_stop))
    }

    /// Stops the VM at once (no guest shutdown); returns the `qmstop` task.
    pub fn stop(&self, node: &str, vmid: u32) -> Result<Upid, PveError> {
        self.send_power(&WriteRequest::stop(node, vmid))
    }

    /// Reboots the VM (shutdown, then start, applying pending changes); returns the `qmreboot`
    /// task. On real PVE the task ends after the shutdown half: use [`PveClient::wait_status`]
    /// for `running` afterwards.
    pub fn reboot(&self, node: &str, vmid: u32, timeout_secs: Option<u32>) -> Result<Upid, PveError> {
        self.send_power(&WriteRequest::reboot(node, vmid, timeout_secs))
    }

    /// Sends a power request (`WriteRequest::start`, `shutdown`, ...) and returns its task.
    pub fn send_power(&self, request: &WriteRequest) -> Result<Upid, PveError> {
        let data = self.send_write(request)?;
        let text = data
            .as_str()
            .ok_or_else(|| self.decode_error(&request.path, format!("expected a task id (UPID), got {data}")))?;
        Upid::parse(text).map_err(|reason| self.decode_error(&request.path, reason))
    }

    /// Writes configuration keys with one synchronous `PUT .../config` (see
    /// [`WriteRequest::set_config`]): `None` values delete keys; with `digest` (from
    /// [`PveClient::vm_config`]) PVE refuses the write if the config changed since —
    /// [`PveError::DigestMismatch`], kind `digest_mismatch`, nothing written. Other refusals:
    /// `locked` (VM lock), `lock_timeout` (config lock held), `unreachable` (node offline).
    /// An empty change list sends nothing. On a running VM PVE keeps most keys as pending
    /// until the next start or reboot.
    pub fn set_config(
        &self,
        node: &str,
        vmid: u32,
        changes: &[(String, Option<String>)],
        digest: Option<&str>,
    ) -> Result<(), PveError> {
        if changes.is_empty() {
            return Ok(());
        }
        let request = WriteRequest::set_config(node, vmid, changes, digest)
            .map_err(|message| PveError::Invalid { host: self.address().to_string(), message })?;
        self.send_write(&request).map(|_| ())
    }

    /// Rebuilds the VM's cloud-init drive from its configuration (`PUT .../cloudinit`,
    /// PVE ≥ 8.1; older versions answer 501). The guest applies it at its next boot.
    pub fn regenerate_cloudinit(&self, node: &str, vmid: u32) -> Result<(), PveError> {
        self.send_write(&WriteRequest::regenerate_cloudinit(node, vmid)).map(|_| ())
    }

    // ------------------------------------------------------------------ tasks

    fn task_path(upid: &Upid, what: &str) -> String {
        format!("/nodes/{}/tasks/{}/{what}", upid.node(), utf8_percent_encode(upid.as_str(), PATH_SEGMENT))
    }

    /// One look at a task: `running`, or `stopped` with its exit status.
    pub fn task_status(&self, upid: &Upid) -> Result<TaskState, PveError> {
        let path = Self::task_path(upid, "status");
        let data = self.get(&path, &[])?;
        let status = data
            .get("status")
            .and_then(Value::as_str)
            .ok_or_else(|| self.decode_error(&path, "the task status has no `status`"))?
            .to_string();
        let exitstatus = match data.get("exitstatus") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        Ok(TaskState { upid: upid.clone(), status, exitstatus, elapsed: Duration::ZERO })
    }

    /// The last `lines` lines of the task's log (read in pages of 500 lines).
    pub fn task_log_tail(&self, upid: &Upid, lines: usize) -> Result<Vec<String>, PveError> {
        const PAGE: usize = 500;
        const MAX_PAGES: usize = 200;
        let path = Self::task_path(upid, "log");
        let mut tail = std::collections::VecDeque::with_capacity(lines + 1);
        if lines == 0 {
            return Ok(Vec::new());
        }
        for page in 0..MAX_PAGES {
            let start = (page * PAGE).to_string();
            let limit = PAGE.to_string();
            let data = self.get(&path, &[("start", &start), ("limit", &limit)])?;
            let items = data.as_array().ok_or_else(|| self.decode_error(&path, "expected a list of log lines"))?;
            for item in items {
                let text = item.get("t").and_then(Value::as_str).unwrap_or_default();
                if page > 0 && items.len() == 1 && text == "no content" {
                    break;
                }
                tail.push_back(text.to_string());
                if tail.len() > lines {
                    tail.pop_front();
                }
            }
            if items.len() < PAGE {
                break;
            }
        }
        Ok(tail.into())
    }

    /// Waits until the task stops, polling its status (250 ms, backing off to 1 s) and calling
    /// `progress` after every look. Succeeds for `OK` and `WARNINGS: n`; the outcome of any other
    /// exit status has `ok: false` (see [`TaskOutcome::into_result`]). Unless the exit status is
    /// plain `OK`, the outcome holds the last [`TASK_LOG_TAIL`] log lines.
    ///
    /// Errors: [`PveError::TaskTimeout`] (kind `timeout`) when the task still runs after
    /// `timeout` — it goes on in PVE; [`PveError::Cancelled`] as soon as `cancel()` says so;
    /// read errors after the client's retries (e.g. `unreachable`).
    pub fn wait_task(
        &self,
        upid: &Upid,
        timeout: Duration,
        cancel: &dyn Fn() -> bool,
        progress: &mut dyn FnMut(&TaskState),
    ) -> Result<TaskOutcome, PveError> {
        let started = Instant::now();
        let what = || format!("task {upid}");
        for polls in 0u32.. {
            if cancel() {
                return Err(PveError::Cancelled { host: self.address().to_string(), what: what() });
            }
            let mut state = self.task_status(upid)?;
            state.elapsed = started.elapsed();
            progress(&state);
            if !state.running() {
                let exitstatus = state.exitstatus.clone().unwrap_or_else(|| "unknown".to_string());
                let ok = tasks::task_succeeded(&exitstatus);
                let log_tail = if exitstatus.trim() == "OK" {
                    Vec::new()
                } else {
                    // The exit status is the answer; a log that cannot be read does not change it.
                    self.task_log_tail(upid, TASK_LOG_TAIL).unwrap_or_else(|e| {
                        tracing::warn!(%upid, error = %e, "cannot read the task log");
                        Vec::new()
                    })
                };
                return Ok(TaskOutcome { upid: upid.clone(), ok, exitstatus, log_tail, elapsed: state.elapsed });
            }
            if started.elapsed() >= timeout {
                return Err(PveError::TaskTimeout {
                    host: self.address().to_string(),
                    node: upid.node().to_string(),
                    vmid: upid.vmid(),
                    upid: upid.to_string(),
                    after: timeout,
                });
            }
            if self.nap(started, timeout, polls, cancel) {
                return Err(PveError::Cancelled { host: self.address().to_string(), what: what() });
            }
        }
        unreachable!("the poll loop only ends by returning")
    }

    /// Waits until the VM's `status/current` shows `wanted` (`running`, `stopped`), polling as
    /// [`PveClient::wait_task`] does and calling `progress` after every look. Returns the last
    /// status read; [`PveError::StatusTimeout`] (kind `timeout`) or [`PveError::Cancelled`] otherwise.
    pub fn wait_status(
        &self,
        node: &str,
        vmid: u32,
        wanted: &str,
        timeout: Duration,
        cancel: &dyn Fn() -> bool,
        progress: &mut dyn FnMut(&VmStatus),
    ) -> Result<VmStatus, PveError> {
        let started = Instant::now();
        let what = || format!("VM {vmid} on node `{node}` to become `{wanted}`");
        for polls in 0u32.. {
            if cancel() {
                return Err(PveError::Cancelled { host: self.address().to_string(), what: what() });
            }
            let status = self.vm_status(node, vmid)?;
            progress(&status);
            if status.status == wanted {
                return Ok(status);
            }
            if started.elapsed() >= timeout {
                return Err(PveError::StatusTimeout {
                    host: self.address().to_string(),
                    node: node.to_string(),
                    vmid,
                    wanted: wanted.to_string(),
                    last: status.status,
                    after: timeout,
                });
            }
            if self.nap(started, timeout, polls, cancel) {
                return Err(PveError::Cancelled { host: self.address().to_string(), what: what() });
            }
        }
        unreachable!("the poll loop only ends by returning")
    }

    /// Sleeps until the next poll (never past the deadline), in slices so `cancel` is heard
    /// within 50 ms. True if cancelled.
    fn nap(&self, started: Instant, timeout: Duration, polls: u32, cancel: &dyn Fn() -> bool) -> bool {
        let wake = Instant::now() + tasks::poll_interval(polls);
        let wake = wake.min(started + timeout);
        loop {
            let now = Instant::now();
            if now >= wake {
                return false;
            }
            std::thread::sleep((wake - now).min(Duration::from_millis(50)));
            if cancel() {
                return true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(list: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        list.iter().map(|(k, v)| (k.to_string(), v.map(String::from))).collect()
    }

    #[test]
    fn power_requests_carry_their_parameters() {
        assert_eq!(WriteRequest::start("pve1", 101).to_string(), "POST /nodes/pve1/qemu/101/status/start");
        assert_eq!(
            WriteRequest::shutdown("pve2", 102, Some(60), true).to_string(),
            "POST /nodes/pve2/qemu/102/status/shutdown timeout=60 forceStop=1"
        );
        assert_eq!(WriteRequest::shutdown("pve2", 102, None, false).params, vec![]);
        assert_eq!(
            WriteRequest::reboot("pve1", 101, Some(30)).to_string(),
            "POST /nodes/pve1/qemu/101/status/reboot timeout=30"
        );
        assert_eq!(WriteRequest::stop("pve1", 101).path, "/nodes/pve1/qemu/101/status/stop");
        assert_eq!(WriteRequest::regenerate_cloudinit("pve1", 101).to_string(), "PUT /nodes/pve1/qemu/101/cloudinit");
    }

    #[test]
    fn set_config_sets_in_order_deletes_in_one_list_and_sends_the_digest_last() {
        let req = WriteRequest::set_config(
            "pve1",
            101,
            &changes(&[
                ("ipconfig0", Some("ip=10.0.0.5/24,gw=10.0.0.1")),
                ("searchdomain", None),
                ("nameserver", Some("1.1.1.1 8.8.8.8")),
                ("ipconfig1", None),
            ]),
            Some("abc123"),
        )
        .unwrap();
        assert_eq!(req.method, "PUT");
        assert_eq!(req.path, "/nodes/pve1/qemu/101/config");
        let keys: Vec<&str> = req.params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["ipconfig0", "nameserver", "delete", "digest"]);
        assert_eq!(req.params[2].1, "searchdomain,ipconfig1");
        assert_eq!(
            req.to_string(),
            "PUT /nodes/pve1/qemu/101/config ipconfig0=ip=10.0.0.5/24,gw=10.0.0.1 nameserver=\"1.1.1.1 8.8.8.8\" \
             delete=searchdomain,ipconfig1 digest=abc123"
        );
    }

    #[test]
    fn set_config_refuses_bad_keys_and_masks_secrets() {
        for bad in [
            changes(&[]),
            changes(&[("", Some("x"))]),
            changes(&[("a,b", None)]),
            changes(&[("net0", Some("x")), ("net0", None)]),
            changes(&[("digest", Some("x"))]),
            changes(&[("delete", Some("net0"))]),
        ] {
            assert!(WriteRequest::set_config("pve1", 101, &bad, None).is_err(), "{bad:?}");
        }
        let req = WriteRequest::set_config(
            "pve1",
            101,
            &changes(&[("cipassword", Some("hunter2")), ("ciuser", Some("k3s"))]),
            None,
        )
        .unwrap();
        let shown = req.to_string();
        assert!(!shown.contains("hunter2") && shown.contains("cipassword=***"), "{shown}");
        assert_eq!(req.params[0].1, "hunter2", "only the display is masked");
    }

    #[test]
    fn upid_path_keeps_its_colons() {
        let upid = Upid::parse("UPID:pve1:00001234:00000010:65F0A1B2:qmstart:101:root@pam!k3sx:").unwrap();
        assert_eq!(
            PveClient::task_path(&upid, "status"),
            "/nodes/pve1/tasks/UPID:pve1:00001234:00000010:65F0A1B2:qmstart:101:root@pam!k3sx:/status"
        );
    }
}
