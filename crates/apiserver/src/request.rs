//! Request routing: what a URL path names (a discovery document, a resource
//! collection, one object, a subresource), parsed the way kube-apiserver's
//! RequestInfoFactory does, plus the query parameters the verbs take.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Healthz,
    Livez,
    Readyz,
    Version,
    Metrics,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`
    ResourceList {
        group: String,
        version: String,
    },
    OpenApiV3Root,
    /// `/openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`
    OpenApiV3 {
        group: String,
        version: String,
    },
    OpenApiV2,
    /// `/cacerts`: the cluster CA, for agents joining with a token that
    /// pins its hash.
    CaCerts,
    /// `/.well-known/openid-configuration`: the service account issuer's
    /// OIDC discovery document.
    OpenIdConfiguration,
    /// `/openid/v1/jwks`: the keys service account tokens are signed with.
    Jwks,
    /// `/drover/v1/nodes/<name>/tunnel`: a remote agent's tunnel.
    NodeTunnel(String),
    Resource(ResourcePath),
    NotFound,
}

/// `/api/v1/namespaces/ns/pods/name/status` and friends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub plural: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

pub fn parse_path(path: &str) -> Target {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match parts.as_slice() {
        ["healthz", ..] => Target::Healthz,
        ["livez", ..] => Target::Livez,
        ["readyz", ..] => Target::Readyz,
        ["version"] => Target::Version,
        ["metrics"] => Target::Metrics,
        ["api"] => Target::CoreVersions,
        ["apis"] => Target::Groups,
        ["apis", group] => Target::Group(group.to_string()),
        ["api", version] => Target::ResourceList {
            group: String::new(),
            version: version.to_string(),
        },
        ["apis", group, version] => Target::ResourceList {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["openapi", "v3"] => Target::OpenApiV3Root,
        ["openapi", "v3", "api", version] => Target::OpenApiV3 {
            group: String::new(),
            version: version.to_string(),
        },
        ["openapi", "v3", "apis", group, version] => Target::OpenApiV3 {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["openapi", "v2"] => Target::OpenApiV2,
        ["cacerts"] => Target::CaCerts,
        [".well-known", "openid-configuration"] => Target::OpenIdConfiguration,
        ["openid", "v1", "jwks"] => Target::Jwks,
        ["drover", "v1", "nodes", name, "tunnel"] => Target::NodeTunnel(name.to_string()),
        ["api", version, rest @ ..] => resource(String::new(), version, rest),
        ["apis", group, version, rest @ ..] => resource(group.to_string(), version, rest),
        _ => Target::NotFound,
    }
}

fn resource(group: String, version: &str, rest: &[&str]) -> Target {
    let mut namespace = None;
    let mut parts = rest;
    // `namespaces/<ns>/<resource>...` unless what follows the namespace is one
    // of the namespace's own subresources (then it is the namespace itself).
    if parts.first() == Some(&"namespaces")
        && parts.len() > 2
        && !matches!(parts[2], "status" | "finalize")
    {
        namespace = Some(parts[1].to_string());
        parts = &parts[2..];
    }
    let (plural, name, subresource) = match parts {
        [plural] => (plural, None, None),
        [plural, name] => (plural, Some(name.to_string()), None),
        [plural, name, sub] => (plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return Target::NotFound,
    };
    Target::Resource(ResourcePath {
        group,
        version: version.to_string(),
        namespace,
        plural: plural.to_string(),
        name,
        subresource,
    })
}

/// Decoded query string (last value wins, as in Go's url.Values.Get).
#[derive(Clone, Debug, Default)]
pub struct Query(pub BTreeMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        let mut m = BTreeMap::new();
        if let Some(q) = query {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                m.insert(k.into_owned(), v.into_owned());
            }
        }
        Query(m)
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true") | Some("1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(
        group: &str,
        ns: Option<&str>,
        plural: &str,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> Target {
        Target::Resource(ResourcePath {
            group: group.into(),
            version: "v1".into(),
            namespace: ns.map(Into::into),
            plural: plural.into(),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
        })
    }

    #[test]
    fn paths() {
        let cases: &[(&str, Target)] = &[
            ("/api", Target::CoreVersions),
            ("/apis", Target::Groups),
            ("/apis/apps", Target::Group("apps".into())),
            (
                "/api/v1",
                Target::ResourceList {
                    group: "".into(),
                    version: "v1".into(),
                },
            ),
            ("/api/v1/pods", rp("", None, "pods", None, None)),
            ("/api/v1/namespaces", rp("", None, "namespaces", None, None)),
            (
                "/api/v1/namespaces/default",
                rp("", None, "namespaces", Some("default"), None),
            ),
            (
                "/api/v1/namespaces/default/status",
                rp("", None, "namespaces", Some("default"), Some("status")),
            ),
            (
                "/api/v1/namespaces/default/finalize",
                rp("", None, "namespaces", Some("default"), Some("finalize")),
            ),
            (
                "/api/v1/namespaces/default/pods",
                rp("", Some("default"), "pods", None, None),
            ),
            (
                "/api/v1/namespaces/default/pods/web",
                rp("", Some("default"), "pods", Some("web"), None),
            ),
            (
                "/api/v1/namespaces/default/pods/web/log",
                rp("", Some("default"), "pods", Some("web"), Some("log")),
            ),
            (
                "/apis/apps/v1/namespaces/d/deployments/x/scale",
                rp("apps", Some("d"), "deployments", Some("x"), Some("scale")),
            ),
            (
                "/apis/apps/v1/deployments",
                rp("apps", None, "deployments", None, None),
            ),
            ("/api/v1/namespaces/a/pods/b/c/d", Target::NotFound),
            (
                "/openapi/v3/apis/apps/v1",
                Target::OpenApiV3 {
                    group: "apps".into(),
                    version: "v1".into(),
                },
            ),
            ("/nope", Target::NotFound),
        ];
        for (path, want) in cases {
            assert_eq!(&parse_path(path), want, "{path}");
        }
    }
}
