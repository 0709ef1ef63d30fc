//! How the client trusts a Proxmox host: system roots plus a CA file, a pinned SHA-256
//! fingerprint (as Proxmox's own tools pin), or no verification at all.
//!
//! Every mode goes through [`ServerVerifier`], which records the SHA-256 of the certificate
//! the server presented, so a failed handshake can tell the user what to pin.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

/// A SHA-256 certificate fingerprint.
pub type Fingerprint = [u8; 32];

/// How the server's certificate is checked.
#[derive(Debug, Clone)]
pub enum Trust {
    /// System roots, plus the certificates of a CA file when given; hostname checked.
    Roots(Vec<CertificateDer<'static>>),
    /// The end-entity certificate must have this SHA-256; the pin is the identity, no hostname check.
    Pin(Fingerprint),
    /// Anything is accepted (handshake signatures are still checked).
    Insecure,
}

/// Parses a fingerprint written as Proxmox does (`AA:BB:...`), in lower case, or without colons.
pub fn parse_fingerprint(text: &str) -> Result<Fingerprint, String> {
    let hex: String = text.trim().chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "`{}` is not a SHA-256 fingerprint (64 hex digits, optionally in pairs joined by `:`)",
            text.trim()
        ));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Formats bytes as Proxmox shows fingerprints: upper-case hex pairs joined by `:`.
pub fn format_fingerprint(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// SHA-256 of a DER certificate.
pub fn cert_fingerprint(der: &[u8]) -> Fingerprint {
    Sha256::digest(der).into()
}

/// Reads the PEM certificates of a CA file.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?
        .collect();
    let certs = certs.map_err(|e| format!("CA file {} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("CA file {} holds no certificate", path.display()));
    }
    Ok(certs)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The certificate verifier for every [`Trust`] mode; remembers the last certificate seen.
#[derive(Debug)]
pub struct ServerVerifier {
    mode: Mode,
    algorithms: WebPkiSupportedAlgorithms,
    seen: Arc<Mutex<Option<Fingerprint>>>,
}

#[derive(Debug)]
enum Mode {
    Delegate(Arc<dyn ServerCertVerifier>),
    /// No trust anchor at all (no system roots, no CA file): every certificate is refused.
    NoRoots,
    Pin(Fingerprint),
    Insecure,
}

/// Builds the rustls configuration for `trust`; `seen` receives the server's fingerprint.
pub fn client_config(trust: &Trust, seen: Arc<Mutex<Option<Fingerprint>>>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mode = match trust {
        Trust::Pin(fp) => Mode::Pin(*fp),
        Trust::Insecure => Mode::Insecure,
        Trust::Roots(extra) => {
            match rustls_platform_verifier::Verifier::new_with_extra_roots(extra.iter().cloned(), provider.clone()) {
                Ok(v) => Mode::Delegate(Arc::new(v)),
                // No system roots and no CA file: nothing can be trusted, which the
                // handshake then reports with the fingerprint to pin.
                Err(_) if extra.is_empty() => Mode::NoRoots,
                Err(e) => return Err(format!("CA file not usable: {e}")),
            }
        }
    };
    let verifier = ServerVerifier { mode, algorithms: provider.signature_verification_algorithms, seen };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fingerprint = cert_fingerprint(end_entity);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(fingerprint);
        }
        match &self.mode {
            Mode::Delegate(inner) => {
                inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            Mode::NoRoots => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)),
            Mode::Pin(expected) if constant_time_eq(expected, &fingerprint) => Ok(ServerCertVerified::assertion()),
            Mode::Pin(_) => {
                Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
            }
            Mode::Insecure => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn fingerprint_parses_proxmox_style_lower_case_and_bare_hex() {
        let bare = parse_fingerprint(HEX).unwrap();
        let upper = format_fingerprint(&bare);
        assert_eq!(&upper[..8], "01:23:45");
        assert_eq!(parse_fingerprint(&upper).unwrap(), bare);
        assert_eq!(parse_fingerprint(&upper.to_lowercase()).unwrap(), bare);
        assert_eq!(parse_fingerprint(&format!("  {upper}\n")).unwrap(), bare);
    }

    #[test]
    fn fingerprint_rejects_wrong_length_and_non_hex() {
        assert!(parse_fingerprint(&HEX[..62]).is_err());
        assert!(parse_fingerprint(&HEX.replace('a', "g")).is_err());
        assert!(parse_fingerprint("").is_err());
    }

    #[test]
    fn constant_time_eq_compares_whole_slices() {
        assert!(constant_time_eq(&[1, 2, 3], &[1, 2, 3]));
        assert!(!constant_time_eq(&[1, 2, 3], &[1, 2, 4]));
        assert!(!constant_time_eq(&[1, 2], &[1, 2, 3]));
    }
}
