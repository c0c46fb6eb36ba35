//! An agent on another machine than the server (`drover agent`): it joins
//! with a token, talks to the API like any client over HTTPS, and keeps a
//! tunnel open through which the server reaches it for logs and metrics
//! ([`apiserver::tunnel`]).

use std::sync::Arc;
use std::time::Duration;

use apiserver::nodes::NodeConnection;
use apiserver::tokens::{ca_hash, BootstrapToken, JoinToken, SECRET_NAMESPACE};
use bytes::Bytes;
use client::https::{Endpoint, Https};
use http_body_util::Full;

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("join token: {0}")]
    Token(String),
    #[error("{0}")]
    Server(String),
    #[error(
        "the server's CA certificate does not match the join token (token has {expected}, server sent {actual}): wrong server or wrong token"
    )]
    CaMismatch { expected: String, actual: String },
}

/// What a joined agent has: a client for the API and how to reach the
/// server again (for the tunnel).
pub struct Joined {
    pub client: client::Client,
    pub endpoint: Endpoint,
    pub token: String,
}

/// Checks `join_token` against the server at `url` (its CA must hash to
/// the token's hash, and the token must be accepted) and returns a client
/// that authenticates with node `node`'s own credential.
///
/// Join tokens expire (24 h by default); the agent trades it once for a
/// credential of its own — a bootstrap token without expiry, labelled
/// `drover.dev/node=<node>`, kept in `credential_path` — and uses that from
/// then on, also after restarts. Deleting that Secret revokes the node.
pub async fn join(
    url: &str,
    join_token: &str,
    node: &str,
    credential_path: &std::path::Path,
) -> Result<Joined, JoinError> {
    let token = JoinToken::parse(join_token).map_err(JoinError::Token)?;
    let ca = client::https::fetch_ca_unverified(url)
        .await
        .map_err(|e| JoinError::Server(format!("fetching the server's CA: {e}")))?;
    let actual = ca_hash(&ca);
    if actual != token.ca_hash {
        return Err(JoinError::CaMismatch {
            expected: token.ca_hash,
            actual,
        });
    }
    let endpoint = Endpoint::new(url, &ca).map_err(|e| JoinError::Server(e.to_string()))?;
    let client_with = |bearer: &str| {
        client::Client::new(Arc::new(Https::new(endpoint.clone(), bearer)), "kubelet")
    };
    if let Ok(saved) = std::fs::read_to_string(credential_path) {
        let saved = saved.trim().to_string();
        let client = client_with(&saved);
        if accepted(&client, url).await? {
            return Ok(Joined {
                client,
                endpoint,
                token: saved,
            });
        }
        tracing::warn!("this node's saved credential was refused; joining again with the token");
    }
    let client = client_with(&token.token.to_string());
    if !accepted(&client, url).await? {
        return Err(JoinError::Token(
            "the server does not accept this token (unknown, expired or deleted)".into(),
        ));
    }
    let credential = BootstrapToken::generate();
    let secrets = client::Gvr::new("", "v1", "secrets");
    let mut secret = credential.to_secret(None, &format!("credential of node {node}"));
    secret["metadata"]["labels"] = serde_json::json!({ NODE_LABEL: node });
    secret["stringData"]["auth-extra-groups"] = serde_json::json!("system:nodes");
    let selector = format!("{NODE_LABEL}={node}");
    let old = client
        .list(secrets, Some(SECRET_NAMESPACE), Some(&selector), None)
        .await
        .map_err(|e| JoinError::Server(format!("listing credentials of node {node}: {e}")))?;
    client
        .create(secrets, Some(SECRET_NAMESPACE), &secret)
        .await
        .map_err(|e| JoinError::Server(format!("creating the credential of node {node}: {e}")))?;
    // Only one credential per node: an agent that joins again under the
    // same name replaces the old one.
    for item in old.items {
        if let Some(name) = item.pointer("/metadata/name").and_then(|v| v.as_str()) {
            let _ = client
                .delete(
                    secrets,
                    Some(SECRET_NAMESPACE),
                    name,
                    &client::DeleteOptions::default(),
                )
                .await;
        }
    }
    write_private(credential_path, &credential.to_string()).map_err(|e| {
        JoinError::Server(format!(
            "saving the credential in {}: {e}",
            credential_path.display()
        ))
    })?;
    let bearer = credential.to_string();
    Ok(Joined {
        client: client_with(&bearer),
        endpoint,
        token: bearer,
    })
}

/// The label naming the node a credential belongs to.
pub const NODE_LABEL: &str = "drover.dev/node";

/// One cheap authenticated request: `Ok(false)` if the server refuses the
/// credential (so a bad token fails here, clearly, not in a watch).
async fn accepted(client: &client::Client, url: &str) -> Result<bool, JoinError> {
    match client
        .get(
            client::Gvr::new("", "v1", "namespaces"),
            None,
            "kube-system",
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some(401) => Ok(false),
        Err(e) => Err(JoinError::Server(format!("talking to {url}: {e}"))),
    }
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Keeps the tunnel to the server open for node `node`, reopening it
/// after it breaks; never returns.
pub async fn run_tunnel(
    endpoint: Endpoint,
    token: String,
    node: String,
    connection: Arc<dyn NodeConnection>,
) {
    let mut delay = Duration::from_millis(200);
    loop {
        match open_tunnel(&endpoint, &token, &node).await {
            Ok(upgraded) => {
                delay = Duration::from_millis(200);
                tracing::info!("tunnel to {} open", endpoint.url);
                if let Err(e) = apiserver::tunnel::serve(connection.clone(), upgraded).await {
                    tracing::warn!("tunnel to {} broke: {e}", endpoint.url);
                }
            }
            Err(e) => tracing::warn!("opening the tunnel to {}: {e}", endpoint.url),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

async fn open_tunnel(
    endpoint: &Endpoint,
    token: &str,
    node: &str,
) -> Result<hyper::upgrade::Upgraded, String> {
    let tls = endpoint
        .connect_tls(&[b"http/1.1"])
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let request = http::Request::get(apiserver::tunnel::path(node))
        .header(
            http::header::HOST,
            format!("{}:{}", endpoint.host, endpoint.port),
        )
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, apiserver::tunnel::UPGRADE)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(format!("the server answered {}", response.status()));
    }
    hyper::upgrade::on(response)
        .await
        .map_err(|e| e.to_string())
}
