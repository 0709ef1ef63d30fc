//! Serde for the address types, as the strings users write
//! (`"10.10.0.5/24"`, `"10.10.0.151-10.10.0.199"`, `"ip=dhcp"`), so config
//! files and JSON hold them the same way PVE does and parse errors keep
//! their wording.

use super::cidr::{Ipv4Cidr, Ipv4Range, Ipv6Cidr};
use super::ipconfig::IpConfig;

macro_rules! serde_as_string {
    ($($ty:ty),*) => {$(
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

serde_as_string!(Ipv4Cidr, Ipv6Cidr, Ipv4Range, IpConfig);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_serialize_as_their_text() {
        let cidr: Ipv4Cidr = "10.10.0.5/24".parse().unwrap();
        assert_eq!(serde_json::to_string(&cidr).unwrap(), r#""10.10.0.5/24""#);
        let range: Ipv4Range = "10.10.0.151-10.10.0.199".parse().unwrap();
        assert_eq!(serde_json::to_string(&range).unwrap(), r#""10.10.0.151-10.10.0.199""#);
        let config: IpConfig = "gw=10.0.0.1,ip=dhcp".parse().unwrap();
        assert_eq!(serde_json::to_string(&config).unwrap(), r#""ip=dhcp,gw=10.0.0.1""#);
    }

    #[test]
    fn types_deserialize_from_text() {
        let v6: Ipv6Cidr = serde_json::from_str(r#""2001:db8::5/64""#).unwrap();
        assert_eq!(v6.prefix(), 64);
        let range: Ipv4Range = serde_json::from_str(r#""10.0.0.1-10.0.0.9""#).unwrap();
        assert_eq!(range.len(), 9);
    }

    #[test]
    fn deserialize_errors_keep_the_parse_message() {
        let err = serde_json::from_str::<Ipv4Cidr>(r#""10.0.0.300/24""#).unwrap_err();
        assert!(err.to_string().starts_with("10.0.0.300/24: invalid address"), "{err}");
        let err = serde_json::from_str::<IpConfig>(r#""ip=10.0.0.300/24""#).unwrap_err();
        assert!(err.to_string().starts_with("ip=10.0.0.300/24: invalid address"), "{err}");
        assert!(serde_json::from_str::<Ipv4Range>("42").is_err());
    }
}
