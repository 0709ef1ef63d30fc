//! K3s versions: `vMAJOR.MINOR.PATCH[-rcN]+k3sN`.
//!
//! Semver ignores build metadata, but for K3s the `+k3sN` suffix is a real release
//! counter (`v1.32.9+k3s2` fixes `v1.32.9+k3s1`), so it takes part in the ordering.

use std::cmp::Ordering;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// `-rcN` pre-release number; a release (`None`) sorts after all its release candidates.
    pub rc: Option<u64>,
    /// The `N` of `+k3sN`.
    pub build: u64,
}

const EXPECTED: &str = "expected vMAJOR.MINOR.PATCH+k3sN, e.g. v1.32.4+k3s1";

impl Version {
    pub fn parse(text: &str) -> Result<Version, String> {
        let bad = || format!("`{text}` is not a K3s version ({EXPECTED})");
        let t = text.trim();
        let t = t.strip_prefix('v').unwrap_or(t);
        let (core, build) = t.split_once('+').ok_or_else(bad)?;
        let build = build.strip_prefix("k3s").ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let (core, rc) = match core.split_once('-') {
            Some((c, pre)) => (c, Some(pre.strip_prefix("rc").ok_or_else(bad)?.parse().map_err(|_| bad())?)),
            None => (core, None),
        };
        let nums: Vec<u64> = core.split('.').map(|p| p.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
        let [major, minor, patch] = nums[..] else {
            return Err(bad());
        };
        Ok(Version { major, minor, patch, rc, build })
    }

    /// `v1.32` — the channel that holds this version's newest patch.
    pub fn minor_channel(&self) -> String {
        format!("v{}.{}", self.major, self.minor)
    }

    fn key(&self) -> (u64, u64, u64, bool, u64, u64) {
        (self.major, self.minor, self.patch, self.rc.is_none(), self.rc.unwrap_or(0), self.build)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(rc) = self.rc {
            write!(f, "-rc{rc}")?;
        }
        write!(f, "+k3s{}", self.build)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn build_suffix_and_patch_order_numerically() {
        assert!(v("v1.32.10+k3s1") > v("v1.32.9+k3s2"));
        assert!(v("v1.32.9+k3s2") > v("v1.32.9+k3s1"));
        assert!(v("v1.33.0+k3s1") > v("v1.32.99+k3s9"));
        assert_eq!(v("1.32.4+k3s1"), v("v1.32.4+k3s1"));
    }

    #[test]
    fn release_candidates_sort_before_the_release() {
        assert!(v("v1.33.0-rc2+k3s1") < v("v1.33.0+k3s1"));
        assert!(v("v1.33.0-rc1+k3s1") < v("v1.33.0-rc2+k3s1"));
        assert_eq!(v("v1.33.0-rc2+k3s1").to_string(), "v1.33.0-rc2+k3s1");
    }

    #[test]
    fn malformed_versions_are_rejected_with_the_expected_form() {
        for bad in [
            "",
            "v1.32",
            "v1.32.4",
            "v1.32.4+k3s",
            "v1.32.x+k3s1",
            "v1.32.4+rke1",
            "v1.2.3.4+k3s1",
            "v1.3.4-beta1+k3s1",
        ] {
            let err = Version::parse(bad).unwrap_err();
            assert!(err.contains("vMAJOR.MINOR.PATCH+k3sN"), "{bad}: {err}");
        }
    }
}
