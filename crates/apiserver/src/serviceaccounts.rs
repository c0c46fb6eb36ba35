//! Service account credentials, as kube-apiserver gives them: the
//! `serviceaccounts/NAME/token` subresource (TokenRequest) signs a JWT
//! bound to the account and, optionally, to a pod or secret; the
//! authenticator accepts such a token while it has not expired, names one
//! of the API's audiences, and the objects it is bound to still exist with
//! the uids it names; and the ServiceAccount admission plugin gives each new
//! pod a projected volume with a token, the cluster CA and its namespace
//! (the pure mutation is `api::admission::service_account`).
//!
//! Tokens are ES256 (ECDSA P-256) JWTs signed with a key kept in the data
//! dir (`tls/service-account.key`); claims are the ones kube-apiserver
//! writes (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti` and the
//! `kubernetes.io` object), so clients that decode them see what they expect.

use std::collections::HashMap;
use std::sync::Mutex;

use api::status::Cause;
use api::ApiError;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::objects;
use crate::ApiServer;

/// The issuer and the API's audience (k3s's choice and what in-cluster
/// clients see as the API server's name).
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// TokenRequest's defaults and bounds (`pkg/apis/authentication`).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
/// How long after its account, pod or secret started terminating a token
/// is still good (kube-apiserver allows the pod's grace period to use it).
const DELETED_GRACE_SECONDS: i64 = 60;

/// Signs and checks service account tokens.
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    key_id: String,
    /// The public key's curve point (`x`, `y`), for the JWKS.
    point: (Vec<u8>, Vec<u8>),
    issuer: String,
    audiences: Vec<String>,
    /// Tokens whose signature and claims were checked (the bound objects
    /// are looked up on every request).
    verified: Mutex<HashMap<String, Claims>>,
}

/// The claims of a service account token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: ObjectClaim,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectClaim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectClaim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectClaim>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectClaim {
    pub name: String,
    pub uid: String,
}

impl TokenSigner {
    /// From a PKCS#8 ECDSA P-256 private key and its public key (both PEM).
    pub fn new(private_pem: &str, public_pem: &str) -> Result<TokenSigner, String> {
        let encoding = EncodingKey::from_ec_pem(private_pem.as_bytes())
            .map_err(|e| format!("service account signing key: {e}"))?;
        let decoding = DecodingKey::from_ec_pem(public_pem.as_bytes())
            .map_err(|e| format!("service account public key: {e}"))?;
        // kube-apiserver's key id: the unpadded base64url SHA-256 of the
        // public key's DER.
        let der = pem_body(public_pem);
        let digest = ring::digest::digest(&ring::digest::SHA256, &der);
        use base64::Engine;
        let key_id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
        // A P-256 SubjectPublicKeyInfo ends with the uncompressed point
        // 0x04 || X (32 bytes) || Y (32 bytes).
        let point = match der.len().checked_sub(65).map(|at| &der[at..]) {
            Some(p) if p[0] == 4 => (p[1..33].to_vec(), p[33..].to_vec()),
            _ => return Err("service account public key: not an uncompressed P-256 point".into()),
        };
        Ok(TokenSigner {
            encoding,
            decoding,
            key_id,
            point,
            issuer: DEFAULT_ISSUER.to_string(),
            audiences: vec![DEFAULT_ISSUER.to_string()],
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The audiences a token must name to be accepted by this API server
    /// (`--api-audiences`; the issuer by default).
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The OIDC discovery document of the issuer (what kube-apiserver
    /// serves on `/.well-known/openid-configuration`).
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", self.issuer),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }

    /// The signing key as a JSON Web Key Set.
    pub fn jwks(&self) -> Value {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        json!({"keys": [{
            "use": "sig", "kty": "EC", "crv": "P-256", "alg": "ES256",
            "kid": self.key_id, "x": b64(&self.point.0), "y": b64(&self.point.1),
        }]})
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// The token's claims when it is a token of ours, signed, for one of our
    /// audiences and valid at `now` (Unix seconds). The bound objects are
    /// not looked at here.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, String> {
        let cached = self.verified.lock().unwrap().get(token).cloned();
        let claims = match cached {
            Some(c) => c,
            None => {
                let claims = self.decode(token, &self.audiences)?;
                let mut verified = self.verified.lock().unwrap();
                if verified.len() > 10_000 {
                    verified.clear();
                }
                verified.insert(token.to_string(), claims.clone());
                claims
            }
        };
        check_times(&claims, now)?;
        Ok(claims)
    }

    /// [`Self::verify`] for other audiences (a TokenReview's), not cached.
    pub fn verify_for(
        &self,
        token: &str,
        now: i64,
        audiences: &[String],
    ) -> Result<Claims, String> {
        let claims = self.decode(token, audiences)?;
        check_times(&claims, now)?;
        Ok(claims)
    }

    fn decode(&self, token: &str, audiences: &[String]) -> Result<Claims, String> {
        let mut validation = Validation::new(Algorithm::ES256);
        // Time is checked against the server's clock (`check_times`).
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims = ["exp", "iss", "sub", "aud"]
            .into_iter()
            .map(String::from)
            .collect();
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(audiences);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|e| format!("invalid service account token: {e}"))
    }
}

/// The user a service account token stands for, as kube-apiserver names
/// it (`authentication.k8s.io/v1` UserInfo).
pub fn user_info(claims: &Claims) -> Value {
    let k = &claims.kubernetes;
    let mut extra = serde_json::Map::new();
    if let Some(pod) = &k.pod {
        extra.insert(
            "authentication.kubernetes.io/pod-name".into(),
            json!([pod.name]),
        );
        extra.insert(
            "authentication.kubernetes.io/pod-uid".into(),
            json!([pod.uid]),
        );
    }
    if let Some(node) = &k.node {
        extra.insert(
            "authentication.kubernetes.io/node-name".into(),
            json!([node.name]),
        );
        extra.insert(
            "authentication.kubernetes.io/node-uid".into(),
            json!([node.uid]),
        );
    }
    if !claims.jti.is_empty() {
        extra.insert(
            "authentication.kubernetes.io/credential-id".into(),
            json!([format!("JTI={}", claims.jti)]),
        );
    }
    let mut user = json!({
        "username": format!("system:serviceaccount:{}:{}", k.namespace, k.serviceaccount.name),
        "groups": [
            "system:serviceaccounts",
            format!("system:serviceaccounts:{}", k.namespace),
            "system:authenticated",
        ],
    });
    if !k.serviceaccount.uid.is_empty() {
        user["uid"] = json!(k.serviceaccount.uid);
    }
    if !extra.is_empty() {
        user["extra"] = Value::Object(extra);
    }
    user
}

fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .unwrap_or_default()
}

/// `exp` strictly in the future; `nbf` and `iat` may be up to a minute
/// ahead (clock skew between servers).
pub fn check_times(claims: &Claims, now: i64) -> Result<(), String> {
    if now >= claims.exp {
        return Err("service account token has expired".into());
    }
    if claims.nbf > now + 60 {
        return Err("service account token is not valid yet".into());
    }
    Ok(())
}

/// A TokenRequest's spec, defaulted and validated.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenRequestSpec {
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    pub bound: Option<BoundObject>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BoundObject {
    pub kind: String,
    pub api_version: String,
    pub name: String,
    pub uid: String,
}

/// Defaults and validates a TokenRequest body for account `name` in `ns`
/// (the request's own name and namespace, when given, must match the URL).
pub fn parse_token_request(
    body: &Value,
    ns: &str,
    name: &str,
    default_audiences: &[String],
) -> Result<TokenRequestSpec, ApiError> {
    if let Some(kind) = body.get("kind").and_then(Value::as_str) {
        if kind != "TokenRequest" {
            return Err(ApiError::bad_request(format!(
                "the body of the request was of kind {kind:?}, expected TokenRequest"
            )));
        }
    }
    if let Some(n) = body.pointer("/metadata/name").and_then(Value::as_str) {
        if !n.is_empty() && n != name {
            return Err(ApiError::bad_request(format!(
                "the name of the TokenRequest ({n:?}) does not match the service account in the URL ({name:?})"
            )));
        }
    }
    if let Some(n) = body.pointer("/metadata/namespace").and_then(Value::as_str) {
        if !n.is_empty() && n != ns {
            return Err(ApiError::bad_request(format!(
                "the namespace of the TokenRequest ({n:?}) does not match the namespace in the URL ({ns:?})"
            )));
        }
    }
    let spec = body.get("spec").cloned().unwrap_or(json!({}));
    let mut causes = Vec::new();
    let audiences: Vec<String> = match spec.get("audiences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match v.as_str() {
                Some(s) => Some(s.to_string()),
                None => {
                    causes.push(Cause::invalid(
                        format!("spec.audiences[{i}]"),
                        v,
                        "must be a string",
                    ));
                    None
                }
            })
            .collect(),
        Some(other) => {
            causes.push(Cause::invalid(
                "spec.audiences",
                other,
                "must be a list of strings",
            ));
            Vec::new()
        }
    };
    let expiration_seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => match v.as_i64() {
            Some(n) => n,
            None => {
                causes.push(Cause::invalid(
                    "spec.expirationSeconds",
                    v,
                    "must be an integer",
                ));
                DEFAULT_EXPIRATION_SECONDS
            }
        },
    };
    if expiration_seconds < MIN_EXPIRATION_SECONDS {
        causes.push(Cause::invalid(
            "spec.expirationSeconds",
            expiration_seconds,
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration_seconds > MAX_EXPIRATION_SECONDS {
        causes.push(Cause::invalid(
            "spec.expirationSeconds",
            expiration_seconds,
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let bound = match spec.get("boundObjectRef") {
        None | Some(Value::Null) => None,
        Some(r) => {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let bound = BoundObject {
                kind: s("kind"),
                api_version: s("apiVersion"),
                name: s("name"),
                uid: s("uid"),
            };
            if bound.name.is_empty() {
                causes.push(Cause::required(
                    "spec.boundObjectRef.name",
                    "name is required",
                ));
            }
            Some(bound)
        }
    };
    if !causes.is_empty() {
        return Err(ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            name,
            causes,
        ));
    }
    let audiences = if audiences.is_empty() {
        default_audiences.to_vec()
    } else {
        audiences
    };
    Ok(TokenRequestSpec {
        audiences,
        expiration_seconds,
        bound,
    })
}

/// `POST serviceaccounts/NAME/token`: the TokenRequest with its token (201).
pub(crate) async fn token_request(
    server: &ApiServer,
    ns: &str,
    name: &str,
    body: &Value,
) -> Result<Value, ApiError> {
    let Some(signer) = server.token_signer() else {
        return Err(ApiError::new(
            404,
            "NotFound",
            "this server issues no service account tokens (it has no signing key)",
        ));
    };
    let spec = parse_token_request(body, ns, name, signer.audiences())?;
    let registry = server.registry();
    let accounts = registry.get("", "v1", "serviceaccounts").expect("built in");
    let (account, _) = objects::get(server, &accounts, Some(ns), name).await?;
    let mut kubernetes = KubernetesClaims {
        namespace: ns.to_string(),
        serviceaccount: ObjectClaim {
            name: name.to_string(),
            uid: uid_of(&account),
        },
        pod: None,
        secret: None,
        node: None,
    };
    if let Some(bound) = &spec.bound {
        let (plural, resource) = match (bound.api_version.as_str(), bound.kind.as_str()) {
            ("v1", "Pod") => ("pods", "pods"),
            ("v1", "Secret") => ("secrets", "secrets"),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token to object of type {}, Kind={}",
                    bound.api_version, bound.kind
                )))
            }
        };
        let rt = registry.get("", "v1", plural).expect("built in");
        let (object, _) = objects::get(server, &rt, Some(ns), &bound.name).await?;
        let uid = uid_of(&object);
        if !bound.uid.is_empty() && bound.uid != uid {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {resource} \"{}\": the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated",
                    bound.name, bound.uid
                ),
            ));
        }
        let claim = ObjectClaim {
            name: bound.name.clone(),
            uid,
        };
        if plural == "pods" {
            let account_of_pod = object
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default");
            if account_of_pod != name {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount \"{name}\" to pod running with different serviceaccount name."
                )));
            }
            if let Some(node) = object.pointer("/spec/nodeName").and_then(Value::as_str) {
                let nodes = registry.get("", "v1", "nodes").expect("built in");
                if let Ok((n, _)) = objects::get(server, &nodes, None, node).await {
                    kubernetes.node = Some(ObjectClaim {
                        name: node.to_string(),
                        uid: uid_of(&n),
                    });
                }
            }
            kubernetes.pod = Some(claim);
        } else {
            kubernetes.secret = Some(claim);
        }
    }
    let now = server.now();
    let issued = now.timestamp();
    let claims = Claims {
        iss: signer.issuer.clone(),
        sub: format!("system:serviceaccount:{ns}:{name}"),
        aud: spec.audiences.clone(),
        exp: issued + spec.expiration_seconds,
        iat: issued,
        nbf: issued,
        jti: uuid::Uuid::new_v4().to_string(),
        kubernetes,
    };
    let token = signer
        .sign(&claims)
        .map_err(|e| ApiError::internal(format!("signing the token: {e}")))?;
    let expires = chrono::DateTime::from_timestamp(claims.exp, 0)
        .unwrap_or(now)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut request_spec = json!({
        "audiences": spec.audiences,
        "expirationSeconds": spec.expiration_seconds,
    });
    if let Some(b) = &spec.bound {
        request_spec["boundObjectRef"] = json!({
            "kind": b.kind, "apiVersion": b.api_version, "name": b.name,
            "uid": claims.kubernetes.pod.as_ref().or(claims.kubernetes.secret.as_ref()).map(|c| c.uid.clone()),
        });
    }
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": request_spec,
        "status": {"token": token, "expirationTimestamp": expires},
    }))
}

fn uid_of(object: &Value) -> String {
    object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Whether `token` is a service account token this server accepts now:
/// signed by it, unexpired, for its audience, and every object it is bound
/// to (the account, and the pod or secret) still there with the same uid.
pub(crate) async fn authenticate(
    server: &ApiServer,
    token: &str,
    audiences: Option<&[String]>,
) -> Result<Claims, String> {
    let Some(signer) = server.token_signer() else {
        return Err("no service account tokens on this server".into());
    };
    let now = server.now();
    let claims = match audiences {
        None => signer.verify(token, now.timestamp())?,
        Some(a) => signer.verify_for(token, now.timestamp(), a)?,
    };
    let k = &claims.kubernetes;
    let registry = server.registry();
    let lookup = |plural: &'static str, name: String| {
        let rt = registry.get("", "v1", plural).expect("built in");
        let ns = k.namespace.clone();
        async move { objects::get(server, &rt, Some(&ns), &name).await.ok() }
    };
    // An object being deleted still vouches for its tokens for a minute
    // (kube-apiserver's validator: a pod's processes may need the API
    // during their grace period), then no more.
    let deleted_long_ago = |obj: &Value| {
        obj.pointer("/metadata/deletionTimestamp")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|at| now.timestamp() - at.timestamp() > DELETED_GRACE_SECONDS)
    };
    let account = lookup("serviceaccounts", k.serviceaccount.name.clone()).await;
    match account {
        Some((a, _)) if k.serviceaccount.uid.is_empty() || uid_of(&a) == k.serviceaccount.uid => {
            if deleted_long_ago(&a) {
                return Err(format!(
                    "service account {}/{} is being deleted",
                    k.namespace, k.serviceaccount.name
                ));
            }
        }
        _ => {
            return Err(format!(
                "service account {}/{} has been deleted",
                k.namespace, k.serviceaccount.name
            ))
        }
    }
    if let Some(pod) = &k.pod {
        match lookup("pods", pod.name.clone()).await {
            Some((p, _)) if uid_of(&p) == pod.uid => {
                if deleted_long_ago(&p) {
                    return Err(format!("pod {}/{} is being deleted", k.namespace, pod.name));
                }
            }
            _ => return Err(format!("pod {}/{} has been deleted", k.namespace, pod.name)),
        }
    }
    if let Some(secret) = &k.secret {
        match lookup("secrets", secret.name.clone()).await {
            Some((s, _)) if uid_of(&s) == secret.uid => {
                if deleted_long_ago(&s) {
                    return Err(format!(
                        "secret {}/{} is being deleted",
                        k.namespace, secret.name
                    ));
                }
            }
            _ => {
                return Err(format!(
                    "secret {}/{} has been deleted",
                    k.namespace, secret.name
                ))
            }
        }
    }
    Ok(claims)
}

/// The ServiceAccount admission plugin on a pod being created: its account
/// must exist (the `default` one is waited for a little, as the controller
/// that makes it may not have run yet in a new namespace), then
/// `api::admission::service_account` mutates the pod.
pub(crate) async fn admit_pod(
    server: &ApiServer,
    ns: &str,
    pod: &mut Value,
) -> Result<(), ApiError> {
    if server.token_signer().is_none() {
        return Ok(());
    }
    // `serviceAccount` is the deprecated spelling of `serviceAccountName`.
    let name = ["/spec/serviceAccountName", "/spec/serviceAccount"]
        .iter()
        .find_map(|p| {
            pod.pointer(p)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .unwrap_or("default")
        .to_string();
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("serviceAccountName".into(), json!(name));
        // The deprecated field mirrors it, as kube-apiserver stores it.
        spec.insert("serviceAccount".into(), json!(name));
    }
    let rt = server
        .registry()
        .get("", "v1", "serviceaccounts")
        .expect("built in");
    let attempts = if name == "default" { 10 } else { 1 };
    let mut account = None;
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(
                100 + server.random_u64() % 100,
            ))
            .await;
        }
        match objects::get(server, &rt, Some(ns), &name).await {
            Ok((a, _)) => {
                account = Some(a);
                break;
            }
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let Some(account) = account else {
        return Err(ApiError::forbidden(format!(
            "pods \"{}\" is forbidden: error looking up service account {ns}/{name}: serviceaccount \"{name}\" not found",
            pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
        )));
    };
    let suffix = api::admission::name_suffix(server.random_u64());
    api::admission::service_account(pod, &account, &suffix);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        let key = rcgen::KeyPair::generate().unwrap();
        TokenSigner::new(&key.serialize_pem(), &key.public_key_pem()).unwrap()
    }

    fn claims(now: i64) -> Claims {
        Claims {
            iss: DEFAULT_ISSUER.into(),
            sub: "system:serviceaccount:default:default".into(),
            aud: vec![DEFAULT_ISSUER.into()],
            exp: now + 600,
            iat: now,
            nbf: now,
            jti: "j".into(),
            kubernetes: KubernetesClaims {
                namespace: "default".into(),
                serviceaccount: ObjectClaim {
                    name: "default".into(),
                    uid: "u1".into(),
                },
                pod: Some(ObjectClaim {
                    name: "p".into(),
                    uid: "u2".into(),
                }),
                secret: None,
                node: None,
            },
        }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let s = signer();
        let now = 1_800_000_000;
        let c = claims(now);
        let token = s.sign(&c).unwrap();
        assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
        assert_eq!(s.verify(&token, now).unwrap(), c);
        assert_eq!(s.verify(&token, now + 599).unwrap(), c);
        let expired = s.verify(&token, now + 600).unwrap_err();
        assert!(expired.contains("expired"), "{expired}");
    }

    #[test]
    fn tokens_of_another_key_audience_or_issuer_are_refused() {
        let (a, b) = (signer(), signer());
        let now = 1_800_000_000;
        let token = b.sign(&claims(now)).unwrap();
        let why = a.verify(&token, now).unwrap_err();
        assert!(why.contains("invalid service account token"), "{why}");

        let mut other_audience = claims(now);
        other_audience.aud = vec!["vault".into()];
        let token = a.sign(&other_audience).unwrap();
        assert!(a.verify(&token, now).unwrap_err().contains("Audience"));

        let mut other_issuer = claims(now);
        other_issuer.iss = "https://elsewhere".into();
        let token = a.sign(&other_issuer).unwrap();
        assert!(a.verify(&token, now).unwrap_err().contains("Issuer"));

        assert!(a.verify("not.a.jwt", now).is_err());
        // A token altered after signing.
        let good = a.sign(&claims(now)).unwrap();
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged_claims = {
            use base64::Engine;
            let mut c = claims(now);
            c.sub = "system:serviceaccount:kube-system:admin".into();
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap())
        };
        parts[1] = &forged_claims;
        assert!(a.verify(&parts.join("."), now).is_err());
    }

    #[test]
    fn the_jwks_key_verifies_tokens() {
        let s = signer();
        let jwks = s.jwks();
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "EC");
        let decoding =
            DecodingKey::from_ec_components(key["x"].as_str().unwrap(), key["y"].as_str().unwrap())
                .unwrap();
        let token = s.sign(&claims(1_800_000_000)).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), key["kid"].as_str());
        let mut v = Validation::new(Algorithm::ES256);
        v.validate_exp = false;
        v.set_audience(&[DEFAULT_ISSUER]);
        jsonwebtoken::decode::<Claims>(&token, &decoding, &v).expect("verified with the JWKS key");
        assert_eq!(
            s.openid_configuration()["jwks_uri"],
            format!("{DEFAULT_ISSUER}/openid/v1/jwks")
        );
    }

    #[test]
    fn other_audiences_are_checked_when_asked() {
        let s = signer();
        let now = 1_800_000_000;
        let mut c = claims(now);
        c.aud = vec!["vault".into()];
        let token = s.sign(&c).unwrap();
        assert!(s.verify(&token, now).is_err(), "not for the API");
        assert_eq!(s.verify_for(&token, now, &["vault".into()]).unwrap(), c);
        assert!(s.verify_for(&token, now, &["other".into()]).is_err());
    }

    #[test]
    fn the_user_is_the_service_account_with_the_pod_in_extra() {
        let u = user_info(&claims(0));
        assert_eq!(u["username"], "system:serviceaccount:default:default");
        assert_eq!(u["uid"], "u1");
        assert_eq!(
            u["groups"],
            json!([
                "system:serviceaccounts",
                "system:serviceaccounts:default",
                "system:authenticated"
            ])
        );
        assert_eq!(
            u["extra"]["authentication.kubernetes.io/pod-name"],
            json!(["p"])
        );
        assert_eq!(
            u["extra"]["authentication.kubernetes.io/pod-uid"],
            json!(["u2"])
        );
        assert_eq!(
            u["extra"]["authentication.kubernetes.io/credential-id"],
            json!(["JTI=j"])
        );
    }

    #[test]
    fn not_before_allows_a_minute_of_skew() {
        let now = 1_800_000_000;
        let mut c = claims(now);
        c.nbf = now + 60;
        assert_eq!(check_times(&c, now), Ok(()));
        c.nbf = now + 61;
        assert!(check_times(&c, now).is_err());
    }

    #[test]
    fn token_requests_default_and_validate_like_kubernetes() {
        let auds = vec![DEFAULT_ISSUER.to_string()];
        let spec = parse_token_request(&json!({}), "ns", "sa", &auds).unwrap();
        assert_eq!(
            spec,
            TokenRequestSpec {
                audiences: auds.clone(),
                expiration_seconds: 3600,
                bound: None
            }
        );
        let spec = parse_token_request(
            &json!({"spec": {"audiences": ["vault"], "expirationSeconds": 7200,
                             "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u"}}}),
            "ns",
            "sa",
            &auds,
        )
        .unwrap();
        assert_eq!(spec.audiences, vec!["vault".to_string()]);
        assert_eq!(spec.expiration_seconds, 7200);
        assert_eq!(spec.bound.unwrap().name, "p");

        let short = parse_token_request(
            &json!({"spec": {"expirationSeconds": 60}}),
            "ns",
            "sa",
            &auds,
        )
        .unwrap_err();
        assert_eq!(short.code, 422);
        assert_eq!(
            short.details.as_ref().unwrap().causes[0].field,
            "spec.expirationSeconds"
        );
        assert!(
            short
                .message
                .contains("may not specify a duration less than 10 minutes"),
            "{}",
            short.message
        );

        let long = parse_token_request(
            &json!({"spec": {"expirationSeconds": (1i64 << 32) + 1}}),
            "ns",
            "sa",
            &auds,
        )
        .unwrap_err();
        assert!(
            long.message.contains("larger than 2^32 seconds"),
            "{}",
            long.message
        );

        let nameless = parse_token_request(
            &json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1"}}}),
            "ns",
            "sa",
            &auds,
        )
        .unwrap_err();
        assert!(
            nameless.message.contains("spec.boundObjectRef.name"),
            "{}",
            nameless.message
        );

        let wrong_name =
            parse_token_request(&json!({"metadata": {"name": "other"}}), "ns", "sa", &auds)
                .unwrap_err();
        assert_eq!(wrong_name.code, 400);
    }
}
