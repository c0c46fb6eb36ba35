//! The client's network transport: HTTP/2 over TLS to a drover (or any
//! Kubernetes) API server, trusting one CA and sending a bearer token. A
//! remote node agent and drover's own CLI commands use it; in-process
//! components use [`crate::InProcess`].
//!
//! One HTTP/2 connection carries every request (watches included), as
//! client-go does; it is made on first use and again after it breaks.

use std::sync::Arc;

use apiserver::ResponseBody;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::StreamExt;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use tokio::sync::Mutex;

use crate::{ClientError, Result, Transport};

type Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

/// Where a server is and how to trust it.
#[derive(Clone)]
pub struct Endpoint {
    /// `https://host:port`
    pub url: String,
    pub host: String,
    pub port: u16,
    pub tls: Arc<rustls::ClientConfig>,
}

impl Endpoint {
    /// `url` (`https://host[:port]`), trusting the CA certificates in
    /// `ca_pem`.
    pub fn new(url: &str, ca_pem: &str) -> Result<Endpoint> {
        let uri: Uri = url
            .parse()
            .map_err(|e| ClientError::Transport(format!("server URL {url:?}: {e}")))?;
        if uri.scheme_str() != Some("https") {
            return Err(ClientError::Transport(format!(
                "server URL {url:?}: must start with https://"
            )));
        }
        let host = uri
            .host()
            .ok_or_else(|| ClientError::Transport(format!("server URL {url:?}: no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        Ok(Endpoint {
            url: format!("https://{}", uri.authority().expect("has a host")),
            host,
            port,
            tls: tls_config(ca_pem)?,
        })
    }

    /// A TLS connection to the server offering exactly `alpn`.
    pub async fn connect_tls(
        &self,
        alpn: &[&[u8]],
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| ClientError::Transport(format!("connecting to {}: {e}", self.url)))?;
        let _ = tcp.set_nodelay(true);
        let mut config = (*self.tls).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| ClientError::Transport(format!("server name {}: {e}", self.host)))?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| ClientError::Transport(format!("TLS with {}: {e}", self.url)))
    }
}

fn tls_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let mut any = false;
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| ClientError::Transport(format!("CA certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ClientError::Transport(format!("CA certificate: {e}")))?;
        any = true;
    }
    if !any {
        return Err(ClientError::Transport(
            "CA certificate: no PEM certificate found".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Transport(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The transport: HTTP/2 with a bearer token.
pub struct Https {
    endpoint: Endpoint,
    authorization: String,
    sender: Mutex<Option<Sender>>,
}

impl Https {
    pub fn new(endpoint: Endpoint, token: &str) -> Https {
        Https {
            endpoint,
            authorization: format!("Bearer {token}"),
            sender: Mutex::new(None),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    async fn sender(&self) -> Result<Sender> {
        let mut slot = self.sender.lock().await;
        if let Some(s) = slot.as_ref() {
            if !s.is_closed() {
                return Ok(s.clone());
            }
        }
        let tls = self.endpoint.connect_tls(&[b"h2"]).await?;
        let (sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .map_err(|e| ClientError::Transport(format!("HTTP/2 with {}: {e}", self.endpoint.url)))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        *slot = Some(sender.clone());
        Ok(sender)
    }
}

impl Transport for Https {
    fn send(&self, request: Request<Full<Bytes>>) -> BoxFuture<'_, Result<Response<ResponseBody>>> {
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let path = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            parts.uri = format!("{}{path}", self.endpoint.url)
                .parse()
                .map_err(|e| ClientError::Transport(format!("request path {path:?}: {e}")))?;
            parts.headers.insert(
                http::header::AUTHORIZATION,
                self.authorization
                    .parse()
                    .map_err(|_| ClientError::Transport("token is not a valid header".into()))?,
            );
            let request = Request::from_parts(parts, body);
            let mut sender = self.sender().await?;
            let response = match sender.send_request(request).await {
                Ok(r) => r,
                Err(e) => {
                    // The connection broke: the next request makes a new one.
                    *self.sender.lock().await = None;
                    return Err(ClientError::Transport(format!(
                        "{}: {e}",
                        self.endpoint.url
                    )));
                }
            };
            Ok(response.map(|body| {
                // A body that breaks mid-way ends there: callers see a short
                // list or a watch that ended, and retry as they do anyway.
                let frames = BodyStream::new(body)
                    .take_while(|frame| std::future::ready(frame.is_ok()))
                    .map(|frame| Ok(frame.expect("errors end the stream")));
                BodyExt::boxed(StreamBody::new(frames))
            }))
        })
    }
}

/// Fetches the server's CA certificate from `/cacerts` without verifying
/// the server (nothing is trusted yet); the caller must check it against a
/// hash it already knows (the join token's) before using it.
pub async fn fetch_ca_unverified(url: &str) -> Result<String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| ClientError::Transport(format!("server URL {url:?}: {e}")))?;
    let host = uri
        .host()
        .ok_or_else(|| ClientError::Transport(format!("server URL {url:?}: no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let config = unverified_tls_config(&[b"http/1.1"]);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| ClientError::Transport(format!("connecting to {url}: {e}")))?;
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| ClientError::Transport(format!("server name {host}: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| ClientError::Transport(format!("TLS with {url}: {e}")))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| ClientError::Transport(format!("HTTP with {url}: {e}")))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::get("/cacerts")
        .header(
            http::header::HOST,
            uri.authority().map(|a| a.as_str()).unwrap_or(""),
        )
        .body(Full::new(Bytes::new()))
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| ClientError::Transport(format!("GET {url}/cacerts: {e}")))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Transport(format!("GET {url}/cacerts: {e}")))?
        .to_bytes();
    if !status.is_success() {
        return Err(ClientError::Transport(format!(
            "GET {url}/cacerts: {status}"
        )));
    }
    String::from_utf8(body.to_vec())
        .map_err(|_| ClientError::Transport(format!("GET {url}/cacerts: not text")))
}

/// A TLS client configuration that accepts any server certificate: for
/// the join's `/cacerts` fetch (checked by hash afterwards) and for HTTPS
/// probes, which the kubelet does not verify either.
pub fn unverified_tls_config(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Accepts any server certificate (see [`unverified_tls_config`]);
/// signatures are still checked, so the peer holds the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
