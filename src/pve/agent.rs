//! Files read inside a VM through its QEMU guest agent: how k3sx learns a VM's SSH host key
//! from Proxmox instead of trusting whatever answers on the network the first time.

use serde_json::Value;

use super::types::{self, GuestIp};
use super::{PveClient, PveError};

impl PveClient {
    /// Addresses the guest agent reports, without loopback and link-local ones.
    /// [`PveError::AgentNotRunning`] when the agent does not answer (yet).
    pub fn agent_ips(&self, node: &str, vmid: u32) -> Result<Vec<GuestIp>, PveError> {
        let path = format!("/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces");
        let data = self.agent_get(node, vmid, &path, &[])?;
        types::parse_agent_interfaces(&data).map_err(|reason| self.decode_error(&path, reason))
    }

    /// The content of `file` inside the VM, read by the QEMU guest agent
    /// (`GET /nodes/{node}/qemu/{vmid}/agent/file-read?file=...`).
    /// [`PveError::AgentNotRunning`] while the agent does not answer; a file too large for one
    /// agent read (`truncated`) is an error rather than half a file.
    pub fn agent_file_read(&self, node: &str, vmid: u32, file: &str) -> Result<String, PveError> {
        let path = format!("/nodes/{node}/qemu/{vmid}/agent/file-read");
        let data = self.agent_get(node, vmid, &path, &[("file", file)])?;
        let decode = |reason: String| PveError::Decode { host: self.address().to_string(), path: path.clone(), reason };
        if data["truncated"].as_bool() == Some(true) {
            return Err(decode(format!("`{file}` is larger than the guest agent returns in one read")));
        }
        match data["content"].as_str() {
            Some(content) => Ok(content.to_string()),
            None => Err(decode(format!("no `content` in the answer for `{file}`"))),
        }
    }

    /// A guest-agent GET: PVE's "agent not running" answer becomes [`PveError::AgentNotRunning`],
    /// which callers wait on rather than report.
    fn agent_get(&self, node: &str, vmid: u32, path: &str, query: &[(&str, &str)]) -> Result<Value, PveError> {
        match self.get(path, query) {
            Err(PveError::Api { status: 500, message, .. }) if agent_down(&message) => Err(PveError::AgentNotRunning {
                host: self.address().to_string(),
                node: node.to_string(),
                vmid,
                path: path.to_string(),
                message,
            }),
            other => other,
        }
    }
}

/// The messages PVE answers (HTTP 500) when a VM's guest agent is off or not configured.
fn agent_down(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("guest agent is not running") || m.contains("no qemu guest agent configured")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_down_messages_are_recognised() {
        assert!(agent_down("QEMU guest agent is not running"));
        assert!(agent_down("No QEMU guest agent configured"));
        assert!(!agent_down("VM 101 not running"));
    }
}
