//! API paths as validated segments, so what a dry run prints is byte for byte what is sent.
//!
//! A path is built from segments that may only hold characters that need no encoding in a
//! URL path. Everything else is refused rather than escaped: a `?` would start a query
//! (`.../config?delete=scsi0`), a `..` is folded away by the URL parser (`.../qemu/101/../../
//! access/users` becomes `/access/users`), and tabs and newlines are dropped by it (`10\n1`
//! becomes `101`). None of these has a legitimate use in a Proxmox path.

use std::fmt;

/// A path below `/api2/json`, e.g. `/nodes/pve1/qemu/101/config`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiPath {
    segments: Vec<String>,
}

impl ApiPath {
    /// A path from its segments, each checked by [`check_segment`].
    ///
    /// # Errors
    /// The first segment that is not allowed, with the reason.
    pub fn new<I, S>(segments: I) -> Result<ApiPath, String>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let segments: Vec<String> = segments.into_iter().map(Into::into).collect();
        if segments.is_empty() {
            return Err("an API path needs at least one segment".into());
        }
        for s in &segments {
            check_segment(s)?;
        }
        Ok(ApiPath { segments })
    }

    /// Parses `/a/b/c` (the leading `/` is required, no trailing `/`, no query).
    ///
    /// # Errors
    /// A path without a leading `/`, or with a segment [`check_segment`] refuses.
    pub fn parse(text: &str) -> Result<ApiPath, String> {
        let rest = text.strip_prefix('/').ok_or_else(|| format!("`{}`: an API path starts with `/`", shown(text)))?;
        ApiPath::new(rest.split('/')).map_err(|e| format!("`{}`: {e}", shown(text)))
    }

    /// The path of a VM's sub-resource: `/nodes/{node}/qemu/{vmid}/{rest...}`.
    ///
    /// # Errors
    /// A node name or segment that is not allowed.
    pub fn vm(node: &str, vmid: u32, rest: &[&str]) -> Result<ApiPath, String> {
        let vmid = vmid.to_string();
        let mut segments = vec!["nodes", node, "qemu", vmid.as_str()];
        segments.extend_from_slice(rest);
        ApiPath::new(segments)
    }

    pub fn segments(&self) -> &[String] {
        &self.segments
    }
}

impl fmt::Display for ApiPath {
    /// `/nodes/pve1/qemu/101/config`: exactly the text that is sent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.segments {
            write!(f, "/{s}")?;
        }
        Ok(())
    }
}

/// Checks one path segment: not empty, not `.` or `..`, and only characters that stand for
/// themselves in a URL path (letters, digits and `-_.~:@!=+,`), which covers node names,
/// vmids, UPIDs (`UPID:pve1:...:root@pam!k3sx:`), snapshot and storage names.
///
/// # Errors
/// Why the segment is refused, naming the offending character.
pub fn check_segment(segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err("empty path segment (`//` or a trailing `/`)".into());
    }
    if segment == "." || segment == ".." {
        return Err(format!("`{segment}` is not allowed in an API path"));
    }
    if let Some(c) = segment.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_.~:@!=+,".contains(*c))) {
        let what = match c {
            '?' => "`?` (pass parameters in the map, not in the path)".to_string(),
            '#' => "`#`".to_string(),
            c if c.is_control() => format!("a control character ({})", c.escape_default()),
            c => format!("`{}`", c.escape_default()),
        };
        return Err(format!("segment `{}` contains {what}", shown(segment)));
    }
    Ok(())
}

/// Text safe to show in an error: control characters escaped.
fn shown(text: &str) -> String {
    text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_path_prints_exactly_as_given() {
        for p in [
            "/nodes/pve1/qemu/101/config",
            "/cluster/resources",
            "/nodes/pve-2/tasks/UPID:pve-2:000A1B2C:0123ABCD:65F0A1B2:qmstart:101:root@pam!k3sx:/status",
        ] {
            assert_eq!(ApiPath::parse(p).unwrap().to_string(), p);
        }
        assert_eq!(
            ApiPath::vm("pve1", 101, &["status", "start"]).unwrap().to_string(),
            "/nodes/pve1/qemu/101/status/start"
        );
    }

    #[test]
    fn queries_dot_segments_control_characters_and_empty_segments_are_refused() {
        for bad in [
            "/nodes/pve1/qemu/101/config?delete=scsi0",
            "/nodes/pve1/qemu/101/../../../../access/users",
            "/nodes/pve1/qemu/10\n1/config",
            "/nodes/pve1/qemu/101/config#x",
            "/nodes//qemu",
            "/nodes/pve1/",
            "nodes/pve1",
            "/nodes/pve 1",
            "/nodes/pve1/qemu/101/%2e%2e",
            "/nodes/./x",
            "/nodes/p\\v",
        ] {
            assert!(ApiPath::parse(bad).is_err(), "{bad:?} must be refused");
        }
        let e = ApiPath::parse("/nodes/pve1/qemu/10\n1/config").unwrap_err();
        assert!(e.contains("control character") && !e.contains('\n'), "{e}");
        assert!(ApiPath::parse("/a?b=1").unwrap_err().contains("parameters in the map"));
        assert!(ApiPath::vm("../x", 1, &[]).is_err());
    }
}
