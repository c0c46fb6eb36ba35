//! The server's PKI and credentials: a CA and a serving certificate made on
//! first start (rcgen), kept in the data dir and reused after, an admin bearer
//! token, and the admin kubeconfig that points kubectl at the server.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("generating certificates: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Everything TLS and authentication need, loaded from (or created in) `DIR/tls`.
pub struct Pki {
    pub ca_cert_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    /// The admin's bearer token (full access).
    pub admin_token: String,
    /// The key service account tokens are signed with (PKCS#8 ECDSA
    /// P-256, PEM) and its public half.
    pub service_account_key_pem: String,
    pub service_account_public_pem: String,
}

fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "drover-ca");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(contents.as_bytes()).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

impl Pki {
    /// Loads the PKI from `dir`, creating what is missing. `sans` are the
    /// addresses and names the serving certificate is valid for.
    pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<Pki, PkiError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let ca_cert_path = dir.join("ca.crt");
        let ca_key_path = dir.join("ca.key");
        let server_cert_path = dir.join("server.crt");
        let server_key_path = dir.join("server.key");
        let sans_path = dir.join("server.sans");
        let token_path = dir.join("admin.token");

        let (ca_cert_pem, ca_key) = if ca_cert_path.exists() && ca_key_path.exists() {
            let cert = fs::read_to_string(&ca_cert_path).map_err(io_err(&ca_cert_path))?;
            let key_pem = fs::read_to_string(&ca_key_path).map_err(io_err(&ca_key_path))?;
            let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::Invalid {
                path: ca_key_path.clone(),
                message: e.to_string(),
            })?;
            (cert, key)
        } else {
            let key = KeyPair::generate()?;
            let cert = ca_params()?.self_signed(&key)?;
            write_private(&ca_key_path, &key.serialize_pem())?;
            write_private(&ca_cert_path, &cert.pem())?;
            (cert.pem(), key)
        };

        let wanted_sans = {
            let mut s: Vec<String> = sans.to_vec();
            for extra in [
                "localhost",
                "127.0.0.1",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ] {
                if !s.iter().any(|x| x == extra) {
                    s.push(extra.to_string());
                }
            }
            s.sort();
            s
        };
        let recorded_sans = fs::read_to_string(&sans_path).unwrap_or_default();
        let (server_cert_pem, server_key_pem) = if server_cert_path.exists()
            && server_key_path.exists()
            && recorded_sans == wanted_sans.join("\n")
        {
            (
                fs::read_to_string(&server_cert_path).map_err(io_err(&server_cert_path))?,
                fs::read_to_string(&server_key_path).map_err(io_err(&server_key_path))?,
            )
        } else {
            let issuer = Issuer::new(ca_params()?, &ca_key);
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, "drover-apiserver");
            params.distinguished_name = dn;
            params.subject_alt_names = wanted_sans
                .iter()
                .map(|s| match s.parse::<IpAddr>() {
                    Ok(ip) => Ok(SanType::IpAddress(ip)),
                    Err(_) => s.clone().try_into().map(SanType::DnsName),
                })
                .collect::<Result<_, _>>()?;
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            let cert = params.signed_by(&key, &issuer)?;
            write_private(&server_key_path, &key.serialize_pem())?;
            write_private(&server_cert_path, &cert.pem())?;
            write_private(&sans_path, &wanted_sans.join("\n"))?;
            (cert.pem(), key.serialize_pem())
        };

        let admin_token = match fs::read_to_string(&token_path) {
            Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => {
                let t = random_token();
                write_private(&token_path, &t)?;
                t
            }
        };
        let sa_key_path = dir.join("service-account.key");
        let sa_key = match fs::read_to_string(&sa_key_path) {
            Ok(pem) => KeyPair::from_pem(&pem).map_err(|e| PkiError::Invalid {
                path: sa_key_path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = KeyPair::generate()?;
                write_private(&sa_key_path, &key.serialize_pem())?;
                key
            }
            Err(e) => return Err(io_err(&sa_key_path)(e)),
        };
        Ok(Pki {
            ca_cert_pem,
            server_cert_pem,
            server_key_pem,
            admin_token,
            service_account_key_pem: sa_key.serialize_pem(),
            service_account_public_pem: sa_key.public_key_pem(),
        })
    }

    pub fn rustls_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let certs = rustls_pemfile::certs(&mut self.server_cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PkiError::Invalid {
                path: "server.crt".into(),
                message: e.to_string(),
            })?;
        let key = rustls_pemfile::private_key(&mut self.server_key_pem.as_bytes())
            .map_err(|e| PkiError::Invalid {
                path: "server.key".into(),
                message: e.to_string(),
            })?
            .ok_or_else(|| PkiError::Invalid {
                path: "server.key".into(),
                message: "no private key".into(),
            })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PkiError::Invalid {
                path: "tls".into(),
                message: e.to_string(),
            })?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| PkiError::Invalid {
                path: "server.crt".into(),
                message: e.to_string(),
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// An admin kubeconfig for a server at `server_url` (e.g. https://127.0.0.1:6443).
    pub fn admin_kubeconfig(&self, server_url: &str) -> String {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_cert_pem.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server_url}\n  name: drover\ncontexts:\n- context:\n    cluster: drover\n    user: admin\n  name: drover\ncurrent-context: drover\npreferences: {{}}\nusers:\n- name: admin\n  user:\n    token: {}\n",
            self.admin_token
        )
    }
}

pub fn write_kubeconfig(path: &Path, contents: &str) -> Result<(), PkiError> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
    }
    write_private(path, contents)
}

pub fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let a = Pki::load_or_create(dir.path(), &["127.0.0.1".into()]).unwrap();
        let b = Pki::load_or_create(dir.path(), &["127.0.0.1".into()]).unwrap();
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_eq!(a.server_cert_pem, b.server_cert_pem);
        assert_eq!(a.admin_token, b.admin_token);
        a.rustls_config().unwrap();
        // New SANs re-issue the serving cert from the same CA.
        let c = Pki::load_or_create(dir.path(), &["10.0.0.1".into()]).unwrap();
        assert_eq!(a.ca_cert_pem, c.ca_cert_pem);
        assert_ne!(a.server_cert_pem, c.server_cert_pem);
    }

    #[test]
    fn token_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
