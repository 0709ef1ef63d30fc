//! Files read inside a VM through its QEMU guest agent: how k3sx learns a VM's SSH host key
//! from Proxmox instead of trusting whatever answers on the network the first time.

use super::{PveClient, PveError};

impl PveClient {
    /// The content of `file` inside the VM, read by the QEMU guest agent
    /// (`GET /nodes/{node}/qemu/{vmid}/agent/file-read?file=...`).
    /// [`PveError::AgentNotRunning`] while the agent does not answer; a file too large for one
    /// agent read (`truncated`) is an error rather than half a file.
    pub fn agent_file_read(&self, node: &str, vmid: u32, file: &str) -> Result<String, PveError> {
        let path = format!("/nodes/{node}/qemu/{vmid}/agent/file-read");
        let data = match self.get(&path, &[("file", file)]) {
            Err(PveError::Api { status: 500, message, .. }) if agent_down(&message) => {
                return Err(PveError::AgentNotRunning {
                    host: self.address().to_string(),
                    node: node.to_string(),
                    vmid,
                    path,
                    message,
                });
            }
            other => other?,
        };
        let decode = |reason: String| PveError::Decode { host: self.address().to_string(), path: path.clone(), reason };
        if data["truncated"].as_bool() == Some(true) {
            return Err(decode(format!("`{file}` is larger than the guest agent returns in one read")));
        }
        match data["content"].as_str() {
            Some(content) => Ok(content.to_string()),
            None => Err(decode(format!("no `content` in the answer for `{file}`"))),
        }
    }
}

/// The messages PVE answers (HTTP 500) when a VM's guest agent is off or not configured.
/// The same test as the one `agent_ips` uses in client.rs; one of them can go once both live
/// in the same file.
fn agent_down(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("guest agent is not running") || m.contains("no qemu guest agent configured")
}
