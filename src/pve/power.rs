//! Writes to a VM — power actions, configuration, the cloud-init drive — and waiting for
//! their tasks and for the VM's run state.
//!
//! Every write is first a [`WriteRequest`], so a caller can print it instead of sending it
//! (`--dry-run`). Writes are never retried once sent (see the client); reads while waiting are
//! retried as every GET is.

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use super::client::PveClient;
use super::error::PveError;
use super::path::ApiPath;
use super::tasks::{self, TaskOutcome, TaskState, Upid};
use super::types::VmStatus;
use crate::secret::Secret;

/// Lines of the task log kept in a [`TaskOutcome`] that did not end in plain `OK`.
pub const TASK_LOG_TAIL: usize = 20;

/// Parameters whose values are secrets whatever the caller passed: a dry run shows `***`.
const SECRET_PARAMS: &[&str] = &["password", "cipassword"];

/// The write methods of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMethod {
    Post,
    Put,
    Delete,
}

impl WriteMethod {
    /// `POST`, `PUT`, `DELETE` (as given or in lower case).
    pub fn parse(text: &str) -> Option<WriteMethod> {
        match text.to_ascii_uppercase().as_str() {
            "POST" => Some(WriteMethod::Post),
            "PUT" => Some(WriteMethod::Put),
            "DELETE" => Some(WriteMethod::Delete),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WriteMethod::Post => "POST",
            WriteMethod::Put => "PUT",
            WriteMethod::Delete => "DELETE",
        }
    }

    fn http(self) -> Method {
        match self {
            WriteMethod::Post => Method::POST,
            WriteMethod::Put => Method::PUT,
            WriteMethod::Delete => Method::DELETE,
        }
    }
}

/// A form parameter's value: plain text, or a secret that is sent but never shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    Plain(String),
    Secret(Secret),
}

impl ParamValue {
    fn expose(&self) -> &str {
        match self {
            ParamValue::Plain(v) => v,
            ParamValue::Secret(s) => s.expose(),
        }
    }
}

/// One change to send to PVE: method, a validated path (below `/api2/json`) and form
/// parameters. Its `Display` is what a dry run prints; the path part of it is byte for byte
/// what is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRequest {
    pub method: WriteMethod,
    pub path: ApiPath,
    pub params: Vec<(String, ParamValue)>,
}

impl WriteRequest {
    /// A request from parts a script gave: every key checked, the keys PVE treats as secrets
    /// (`password`, `cipassword`) kept as secrets whatever their type.
    ///
    /// # Errors
    /// A key that is empty or holds other characters than letters, digits, `_`, `-` and `[]`.
    pub fn new(
        method: WriteMethod,
        path: ApiPath,
        params: impl IntoIterator<Item = (String, ParamValue)>,
    ) -> Result<WriteRequest, String> {
        let mut checked = Vec::new();
        for (key, value) in params {
            let valid =
                !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '[' | ']'));
            if !valid {
                return Err(format!("`{}` is not a parameter name", key.escape_default()));
            }
            let value = match value {
                ParamValue::Plain(v) if SECRET_PARAMS.contains(&key.as_str()) => ParamValue::Secret(Secret::new(v)),
                other => other,
            };
            checked.push((key, value));
        }
        Ok(WriteRequest { method, path, params: checked })
    }

    /// `POST /nodes/{node}/qemu/{vmid}/status/start`.
    pub fn start(node: &str, vmid: u32) -> Result<WriteRequest, String> {
        Self::power(node, vmid, "start", Vec::new())
    }

    /// `POST .../status/stop`: pulls the plug (no guest shutdown).
    pub fn stop(node: &str, vmid: u32) -> Result<WriteRequest, String> {
        Self::power(node, vmid, "stop", Vec::new())
    }

    /// `POST .../status/shutdown` with `timeout` (seconds PVE waits for the guest; PVE's default
    /// when `None`) and `forceStop=1` when `force_stop` (stop the VM if the guest did not).
    pub fn shutdown(
        node: &str,
        vmid: u32,
        timeout_secs: Option<u32>,
        force_stop: bool,
    ) -> Result<WriteRequest, String> {
        let mut params = Vec::new();
        if let Some(t) = timeout_secs {
            params.push(plain("timeout", t));
        }
        if force_stop {
            params.push(plain("forceStop", 1));
        }
        Self::power(node, vmid, "shutdown", params)
    }

    /// `POST .../status/reboot` with `timeout` (seconds PVE waits for the shutdown half).
    pub fn reboot(node: &str, vmid: u32, timeout_secs: Option<u32>) -> Result<WriteRequest, String> {
        let params = timeout_secs.map(|t| vec![plain("timeout", t)]).unwrap_or_default();
        Self::power(node, vmid, "reboot", params)
    }

    fn power(node: &str, vmid: u32, action: &str, params: Vec<(String, ParamValue)>) -> Result<WriteRequest, String> {
        Ok(WriteRequest { method: WriteMethod::Post, path: ApiPath::vm(node, vmid, &["status", action])?, params })
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
                return Err(format!("`{}` is not a configuration key (VM {vmid})", key.escape_default()));
            }
            if key == "digest" || key == "delete" {
                return Err(format!("`{key}` is not a configuration key: pass the digest separately (VM {vmid})"));
            }
            if !seen.insert(key.as_str()) {
                return Err(format!("configuration key `{key}` given twice (VM {vmid})"));
            }
            match value {
                Some(v) => params.push((key.clone(), ParamValue::Plain(v.clone()))),
                None => deletes.push(key),
            }
        }
        if !deletes.is_empty() {
            params.push(plain("delete", deletes.join(",")));
        }
        if let Some(d) = digest.map(str::trim).filter(|d| !d.is_empty()) {
            params.push(plain("digest", d));
        }
        WriteRequest::new(WriteMethod::Put, ApiPath::vm(node, vmid, &["config"])?, params)
    }

    /// `PUT /nodes/{node}/qemu/{vmid}/cloudinit` (PVE ≥ 8.1): rebuild the cloud-init drive from the
    /// current configuration. A running guest sees it at its next boot.
    pub fn regenerate_cloudinit(node: &str, vmid: u32) -> Result<WriteRequest, String> {
        Ok(WriteRequest {
            method: WriteMethod::Put,
            path: ApiPath::vm(node, vmid, &["cloudinit"])?,
            params: Vec::new(),
        })
    }

    /// True when the answer to this request is a task (a UPID) to wait for.
    pub fn returns_task(&self) -> bool {
        self.method == WriteMethod::Post
    }

    /// The parameters as they are sent.
    fn form(&self) -> Vec<(String, String)> {
        self.params.iter().map(|(k, v)| (k.clone(), v.expose().to_string())).collect()
    }
}

fn plain(key: &str, value: impl ToString) -> (String, ParamValue) {
    (key.to_string(), ParamValue::Plain(value.to_string()))
}

impl fmt::Display for WriteRequest {
    /// `PUT /nodes/pve1/qemu/101/config nameserver="1.1.1.1 8.8.8.8" delete=searchdomain`,
    /// secrets as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method.as_str(), self.path)?;
        for (k, v) in &self.params {
            match v {
                ParamValue::Secret(_) => write!(f, " {k}=***")?,
                ParamValue::Plain(v) => {
                    let plain = !v.is_empty() && v.chars().all(|c| !c.is_whitespace() && c != '"' && !c.is_control());
                    if plain {
                        write!(f, " {k}={v}")?;
                    } else {
                        write!(f, " {k}={v:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl PveClient {
    /// Sends a [`WriteRequest`] (once: a write is never retried after it went out) and returns
    /// the answer's `data`.
    pub fn send_write(&self, request: &WriteRequest) -> Result<Value, PveError> {
        let path = request.path.to_string();
        let form = request.form();
        match request.method {
            WriteMethod::Delete => self.call(Method::DELETE, &path, &form, None),
            method => self.call(method.http(), &path, &[], Some(&form)),
        }
    }

    /// Sends a request whose answer is a task (`POST .../status/start`, ...) and returns it.
    pub fn send_task(&self, request: &WriteRequest) -> Result<Upid, PveError> {
        let data = self.send_write(request)?;
        let path = request.path.to_string();
        let text =
            data.as_str().ok_or_else(|| self.decode_error(&path, format!("expected a task id (UPID), got {data}")))?;
        Upid::parse(text).map_err(|reason| self.decode_error(&path, reason))
    }

    // ------------------------------------------------------------------ tasks

    fn task_path(upid: &Upid, what: &str) -> String {
        // A UPID holds only characters a path segment may hold (`:`, `@`, `!` included); the
        // client refuses the request if a forged one does not.
        format!("/nodes/{}/tasks/{}/{what}", upid.node(), upid.as_str())
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
        let state = self.poll_until(
            &format!("task {upid}"),
            timeout,
            cancel,
            &mut || {
                let mut state = self.task_status(upid)?;
                state.elapsed = started.elapsed();
                progress(&state);
                Ok(state)
            },
            &|state| !state.running(),
            &|_| PveError::TaskTimeout {
                host: self.address().to_string(),
                node: upid.node().to_string(),
                vmid: upid.vmid(),
                upid: upid.to_string(),
                after: timeout,
            },
        )?;
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
        Ok(TaskOutcome { upid: upid.clone(), ok, exitstatus, log_tail, elapsed: state.elapsed })
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
        self.poll_until(
            &format!("VM {vmid} on node `{node}` to become `{wanted}`"),
            timeout,
            cancel,
            &mut || {
                let status = self.vm_status(node, vmid)?;
                progress(&status);
                Ok(status)
            },
            &|status| status.status == wanted,
            &|last| PveError::StatusTimeout {
                host: self.address().to_string(),
                node: node.to_string(),
                vmid,
                wanted: wanted.to_string(),
                last: last.status.clone(),
                after: timeout,
            },
        )
    }

    /// The one poll loop: `look()` until `done`, at the backing-off interval, never past
    /// `timeout` (then `timed_out(last)`), stopping as soon as `cancel()` says so.
    fn poll_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        cancel: &dyn Fn() -> bool,
        look: &mut dyn FnMut() -> Result<T, PveError>,
        done: &dyn Fn(&T) -> bool,
        timed_out: &dyn Fn(&T) -> PveError,
    ) -> Result<T, PveError> {
        let started = Instant::now();
        let cancelled = || PveError::Cancelled { host: self.address().to_string(), what: what.to_string() };
        for polls in 0u32.. {
            if cancel() {
                return Err(cancelled());
            }
            let seen = look()?;
            if done(&seen) {
                return Ok(seen);
            }
            if started.elapsed() >= timeout {
                return Err(timed_out(&seen));
            }
            if self.nap(started, timeout, polls, cancel) {
                return Err(cancelled());
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
        assert_eq!(WriteRequest::start("pve1", 101).unwrap().to_string(), "POST /nodes/pve1/qemu/101/status/start");
        assert_eq!(
            WriteRequest::shutdown("pve2", 102, Some(60), true).unwrap().to_string(),
            "POST /nodes/pve2/qemu/102/status/shutdown timeout=60 forceStop=1"
        );
        assert_eq!(WriteRequest::shutdown("pve2", 102, None, false).unwrap().params, vec![]);
        assert_eq!(
            WriteRequest::reboot("pve1", 101, Some(30)).unwrap().to_string(),
            "POST /nodes/pve1/qemu/101/status/reboot timeout=30"
        );
        assert_eq!(WriteRequest::stop("pve1", 101).unwrap().path.to_string(), "/nodes/pve1/qemu/101/status/stop");
        assert_eq!(
            WriteRequest::regenerate_cloudinit("pve1", 101).unwrap().to_string(),
            "PUT /nodes/pve1/qemu/101/cloudinit"
        );
        assert!(WriteRequest::start("../access", 101).is_err(), "a node name is a path segment");
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
        assert_eq!(req.method, WriteMethod::Put);
        assert_eq!(req.path.to_string(), "/nodes/pve1/qemu/101/config");
        let keys: Vec<&str> = req.params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["ipconfig0", "nameserver", "delete", "digest"]);
        assert_eq!(req.form()[2].1, "searchdomain,ipconfig1");
        assert_eq!(
            req.to_string(),
            "PUT /nodes/pve1/qemu/101/config ipconfig0=ip=10.0.0.5/24,gw=10.0.0.1 nameserver=\"1.1.1.1 8.8.8.8\" \
             delete=searchdomain,ipconfig1 digest=abc123"
        );
    }

    #[test]
    fn set_config_refuses_bad_keys_and_masks_secrets_by_type() {
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
        assert!(!format!("{req:?}").contains("hunter2"), "Debug never shows a secret");
        assert_eq!(req.form()[0].1, "hunter2", "only the display is masked");
        let raw = WriteRequest::new(
            WriteMethod::Post,
            ApiPath::parse("/access/users").unwrap(),
            [("x".to_string(), ParamValue::Secret(Secret::new("s3cret")))],
        )
        .unwrap();
        assert_eq!(raw.to_string(), "POST /access/users x=***");
        assert!(
            WriteRequest::new(WriteMethod::Post, raw.path.clone(), [("a=b".into(), ParamValue::Plain("1".into()))])
                .is_err()
        );
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
