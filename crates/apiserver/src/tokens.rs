//! Join tokens: how an agent on another machine proves it may join.
//!
//! A join token is `K10<sha256 of the CA certificate PEM>::<id>.<secret>`
//! (k3s's "secure" token format): the hash lets the agent trust the server
//! before it has the CA (it fetches `/cacerts` and checks the hash), and
//! `<id>.<secret>` is a Kubernetes bootstrap token, stored as the Secret
//! `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`
//! — so `kubeadm`-style tooling and `kubectl delete secret` manage it too.
//! The API server accepts a bootstrap token as a bearer token while its
//! Secret exists, says `usage-bootstrap-authentication: "true"` and has not
//! expired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long a checked token is trusted before its Secret is read again
/// (so deleting the Secret revokes the token within this time).
const RECHECK: Duration = Duration::from_secs(10);

pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const SECRET_NAMESPACE: &str = "kube-system";

/// `<id>.<secret>`: 6 and 16 characters of `[a-z0-9]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: String,
    pub secret: String,
}

impl BootstrapToken {
    pub fn parse(text: &str) -> Option<BootstrapToken> {
        let (id, secret) = text.split_once('.')?;
        let ok = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        (ok(id, 6) && ok(secret, 16)).then(|| BootstrapToken {
            id: id.into(),
            secret: secret.into(),
        })
    }

    pub fn generate() -> BootstrapToken {
        use rand::Rng;
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect()
        };
        BootstrapToken {
            id: pick(6),
            secret: pick(16),
        }
    }

    pub fn secret_name(&self) -> String {
        format!("bootstrap-token-{}", self.id)
    }

    /// The Secret that makes this token valid until `expiration` (RFC 3339).
    pub fn to_secret(&self, expiration: Option<&str>, description: &str) -> Value {
        let mut data = json!({
            "token-id": self.id,
            "token-secret": self.secret,
            "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true",
            "auth-extra-groups": "system:bootstrappers:drover:default-node-token",
            "description": description,
        });
        if let Some(e) = expiration {
            data["expiration"] = json!(e);
        }
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": self.secret_name(), "namespace": SECRET_NAMESPACE},
            "type": SECRET_TYPE,
            "stringData": data,
        })
    }
}

impl std::fmt::Display for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

/// `K10<ca hash>::<id>.<secret>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinToken {
    /// Hex SHA-256 of the CA certificate PEM as `/cacerts` serves it.
    pub ca_hash: String,
    pub token: BootstrapToken,
}

impl JoinToken {
    pub fn new(ca_pem: &str, token: BootstrapToken) -> JoinToken {
        JoinToken {
            ca_hash: ca_hash(ca_pem),
            token,
        }
    }

    pub fn parse(text: &str) -> Result<JoinToken, String> {
        let text = text.trim();
        let rest = text
            .strip_prefix("K10")
            .ok_or("a join token starts with K10 (make one with `drover token create`)")?;
        let (hash, token) = rest
            .split_once("::")
            .ok_or("a join token is K10<ca hash>::<id>.<secret>")?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the CA hash of a join token is 64 hex digits".into());
        }
        let token = BootstrapToken::parse(token)
            .ok_or("the token part of a join token is <6 of [a-z0-9]>.<16 of [a-z0-9]>")?;
        Ok(JoinToken {
            ca_hash: hash.to_ascii_lowercase(),
            token,
        })
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "K10{}::{}", self.ca_hash, self.token)
    }
}

pub fn ca_hash(ca_pem: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, ca_pem.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why the Secret `secret` does not make `token` valid at `now`, if it
/// does not (kube-apiserver's bootstrap authenticator rules).
pub fn check_secret(
    secret: &Value,
    token: &BootstrapToken,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), String> {
    if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE) {
        return Err(format!("secret is not of type {SECRET_TYPE}"));
    }
    let field = |key: &str| -> Option<String> {
        use base64::Engine;
        let raw = secret.pointer(&format!("/data/{key}"))?.as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
        String::from_utf8(bytes).ok()
    };
    let stored = field("token-secret").unwrap_or_default();
    if !crate::pki::constant_time_eq(stored.as_bytes(), token.secret.as_bytes()) {
        return Err("token secret does not match".into());
    }
    if field("usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err("token is not for authentication".into());
    }
    if let Some(expiration) = field("expiration") {
        match chrono::DateTime::parse_from_rfc3339(&expiration) {
            Ok(t) if t.with_timezone(&chrono::Utc) > now => {}
            Ok(_) => return Err(format!("token expired at {expiration}")),
            Err(_) => return Err(format!("invalid expiration {expiration:?}")),
        }
    }
    Ok(())
}

/// Bootstrap tokens checked against their Secrets, remembered briefly.
#[derive(Default)]
pub(crate) struct BootstrapTokens {
    checked: Mutex<HashMap<String, (Instant, bool)>>,
}

impl BootstrapTokens {
    pub(crate) async fn valid(
        &self,
        store: &Arc<dyn store::Store>,
        registry: &api::registry::Registry,
        clock: &Arc<dyn crate::Clock>,
        bearer: &str,
    ) -> bool {
        let Some(token) = BootstrapToken::parse(bearer) else {
            return false;
        };
        if let Some((at, ok)) = self.checked.lock().unwrap().get(bearer) {
            if at.elapsed() < RECHECK {
                return *ok;
            }
        }
        let Some(secrets) = registry.get("", "v1", "secrets") else {
            return false;
        };
        let key = secrets.key(Some(SECRET_NAMESPACE), &token.secret_name());
        let secret: Option<Value> = match store.get(&key).await {
            Ok((Some(kv), _)) => serde_json::from_slice(&kv.value).ok(),
            Ok((None, _)) => None,
            // Not remembered: the next request asks the store again.
            Err(_) => return false,
        };
        let ok = match secret {
            Some(s) => match check_secret(&s, &token, clock.now()) {
                Ok(()) => true,
                Err(why) => {
                    tracing::info!("bootstrap token {}: {why}", token.id);
                    false
                }
            },
            None => false,
        };
        let mut checked = self.checked.lock().unwrap();
        if checked.len() > 1000 {
            checked.clear();
        }
        checked.insert(bearer.to_string(), (Instant::now(), ok));
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    /// The Secret as the API server stores it: stringData folded into data.
    fn stored(secret: &Value) -> Value {
        use base64::Engine;
        let mut s = secret.clone();
        let data: serde_json::Map<String, Value> = s["stringData"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    json!(base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap())),
                )
            })
            .collect();
        s.as_object_mut().unwrap().remove("stringData");
        s["data"] = Value::Object(data);
        s
    }

    #[test]
    fn bootstrap_tokens_parse_only_in_their_format() {
        assert!(BootstrapToken::parse("abcdef.0123456789abcdef").is_some());
        for bad in [
            "abcdef0123456789abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde",
            "abcdef.0123456789abcdef0",
            "",
        ] {
            assert!(BootstrapToken::parse(bad).is_none(), "{bad:?} parsed");
        }
        let t = BootstrapToken::generate();
        assert_eq!(BootstrapToken::parse(&t.to_string()), Some(t));
    }

    #[test]
    fn join_tokens_round_trip_and_explain_what_is_wrong() {
        let ca = "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n";
        let t = JoinToken::new(
            ca,
            BootstrapToken::parse("abcdef.0123456789abcdef").unwrap(),
        );
        assert_eq!(JoinToken::parse(&t.to_string()), Ok(t.clone()));
        assert_eq!(t.ca_hash, ca_hash(ca));
        assert!(JoinToken::parse("abcdef.0123456789abcdef")
            .unwrap_err()
            .contains("starts with K10"));
        assert!(JoinToken::parse("K10abc::abcdef.0123456789abcdef")
            .unwrap_err()
            .contains("64 hex digits"));
        assert!(JoinToken::parse(&format!("K10{}::nope", t.ca_hash))
            .unwrap_err()
            .contains("token part"));
    }

    #[test]
    fn secrets_validate_tokens_like_the_bootstrap_authenticator() {
        let token = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let check =
            |secret: Value, token: &BootstrapToken| check_secret(&stored(&secret), token, now());
        assert_eq!(check(token.to_secret(None, "x"), &token), Ok(()));
        assert_eq!(
            check(token.to_secret(Some("2026-12-04T00:00:00Z"), "x"), &token),
            Ok(())
        );
        assert_eq!(
            check(token.to_secret(Some("2026-12-03T11:59:59Z"), "x"), &token),
            Err("token expired at 2026-12-03T11:59:59Z".into())
        );
        let wrong = BootstrapToken::parse("abcdef.0000000000000000").unwrap();
        assert_eq!(
            check(token.to_secret(None, "x"), &wrong),
            Err("token secret does not match".into())
        );
        let mut not_auth = token.to_secret(None, "x");
        not_auth["stringData"]["usage-bootstrap-authentication"] = json!("false");
        assert_eq!(
            check(not_auth, &token),
            Err("token is not for authentication".into())
        );
        let mut opaque = token.to_secret(None, "x");
        opaque["type"] = json!("Opaque");
        assert!(check(opaque, &token).unwrap_err().contains("not of type"));
    }
}
