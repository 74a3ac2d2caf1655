//! A site's client authentication policy: which methods it accepts and how it checks
//! JWTs. Stored as JSON beside the site (the HMAC secret sealed separately); validated
//! when an operator sets it and turned into a ready verifier when the site is loaded.

use super::jwt::{JwtKeys, JwtSettings, JwtVerifier};
use crate::credential::ReservedHeader;
use crate::secret::Secret;
use http::HeaderName;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum InvalidPolicy {
    #[error("auth policy: {0}")]
    Invalid(String),
    // The inner error is the source: anyhow's `{:#}` prints it after this prefix.
    #[error("auth policy")]
    Jwt(#[from] super::jwt::InvalidJwtSettings),
    #[error("stored auth policy is not valid JSON")]
    Json(#[from] serde_json::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    ApiKey,
    Jwt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JwtVerify {
    /// Signature and claims checked by wpgate with the site's keys.
    #[default]
    Local,
    /// The token is WordPress's own: wpgate asks the site (`/wp/v2/users/me`).
    Wordpress,
}

/// `verify = "wordpress"`: whose credential WordPress receives with an admitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActAs {
    /// The client's own token is forwarded; the site credential is not injected, so
    /// WordPress applies that user's capabilities. The default, also for policies
    /// stored before this setting existed.
    #[default]
    User,
    /// The site credential is injected, for users holding one of `require_roles`.
    Site,
}

/// How a site checks JWTs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtPolicy {
    #[serde(default)]
    pub verify: JwtVerify,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub algorithms: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// PEM public keys (public material, stored as is).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Clock leeway for exp/nbf/iat, e.g. `60s`.
    #[serde(with = "humantime_serde", default = "default_leeway")]
    #[schema(value_type = String, example = "60s")]
    pub leeway: Duration,
    /// Longest accepted `exp - iat`, e.g. `1h`.
    #[serde(
        with = "humantime_serde",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "1h")]
    pub max_lifetime: Option<Duration>,
    /// Claim name -> upstream header, e.g. `sub` -> `X-Auth-Subject`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claim_headers: BTreeMap<String, String>,
    /// `verify = "wordpress"` only: act as the user (absent: user) or as the site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act_as: Option<ActAs>,
    /// `verify = "wordpress"` only: WordPress roles (slugs such as `administrator`), one
    /// of which the user must hold. Required with `act_as = "site"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require_roles: Vec<String>,
}

fn default_leeway() -> Duration {
    Duration::from_secs(60)
}

/// A site's client authentication policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthPolicy {
    pub methods: Vec<Method>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtPolicy>,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        AuthPolicy {
            methods: vec![Method::ApiKey],
            jwt: None,
        }
    }
}

/// How a loaded site checks JWTs.
pub enum JwtAuth {
    Local(JwtVerifier),
    Wordpress(Delegation),
}

/// A `verify = "wordpress"` site: whose credential goes upstream, and who may pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    pub act_as: ActAs,
    /// Empty: any WordPress user (only with `ActAs::User`).
    pub require_roles: Vec<String>,
}

impl Delegation {
    /// True when a user with `roles` may pass.
    pub fn allows(&self, roles: &[String]) -> bool {
        self.require_roles.is_empty() || roles.iter().any(|r| self.require_roles.contains(r))
    }
}

/// A site's policy, ready for the request path.
pub struct SiteAuth {
    pub api_key: bool,
    pub jwt: Option<JwtAuth>,
    /// Verified claims copied into upstream headers (stripped from client requests).
    pub claim_headers: Vec<(String, HeaderName)>,
}

impl SiteAuth {
    pub fn api_keys_only() -> Self {
        SiteAuth {
            api_key: true,
            jwt: None,
            claim_headers: Vec::new(),
        }
    }
}

impl AuthPolicy {
    pub fn from_json(text: Option<&str>) -> Result<AuthPolicy, InvalidPolicy> {
        match text {
            None => Ok(AuthPolicy::default()),
            Some(t) => Ok(serde_json::from_str(t)?),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn accepts(&self, m: Method) -> bool {
        self.methods.contains(&m)
    }

    /// True when the policy verifies HMAC tokens, so it needs a secret.
    pub fn needs_hmac_secret(&self) -> bool {
        self.jwt.as_ref().is_some_and(|j| {
            j.verify == JwtVerify::Local && j.algorithms.iter().any(|a| a.starts_with("HS"))
        })
    }

    /// The rules a policy must meet when an operator sets it, on top of [`Self::build`]:
    /// a JWKS URL must be https, or http on a loopback host. (A policy stored before
    /// this rule still loads, so the site's API keys keep working; its JWKS is refused
    /// at fetch time.)
    pub fn check_new(&self) -> Result<(), InvalidPolicy> {
        let Some(url) = self.jwt.as_ref().and_then(|j| j.jwks_url.as_deref()) else {
            return Ok(());
        };
        let refused = |reason| {
            InvalidPolicy::Jwt(super::jwt::InvalidJwtSettings::BadJwksUrl {
                url: url.to_string(),
                reason,
            })
        };
        let parsed = url::Url::parse(url).map_err(|_| refused("is not a valid URL"))?;
        super::jwt::jwks::check_url(&parsed).map_err(refused)
    }

    /// Validates the policy and builds what the request path uses.
    pub fn build(&self, hmac_secret: Option<Secret>) -> Result<SiteAuth, InvalidPolicy> {
        let bad = |m: &str| InvalidPolicy::Invalid(m.to_string());
        if self.methods.is_empty() {
            return Err(bad("at least one method (api_key, jwt) is required"));
        }
        let wants_jwt = self.accepts(Method::Jwt);
        let jwt = match (&self.jwt, wants_jwt) {
            (None, true) => return Err(bad("method jwt needs JWT settings")),
            (Some(_), false) | (None, false) => None,
            (Some(j), true) => Some(j),
        };
        let Some(j) = jwt else {
            return Ok(SiteAuth {
                api_key: self.accepts(Method::ApiKey),
                jwt: None,
                claim_headers: Vec::new(),
            });
        };
        let mut claim_headers = Vec::new();
        for (claim, header) in &j.claim_headers {
            let name = HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| InvalidPolicy::Invalid(format!("{header:?} is not a header name")))?;
            // Every header the gateway owns, the client's credential headers included.
            if ReservedHeader::of(&name).is_some() {
                return Err(InvalidPolicy::Invalid(format!(
                    "claim {claim:?} cannot be copied into {header}: the gateway owns that header"
                )));
            }
            claim_headers.push((claim.clone(), name));
        }
        let auth = match j.verify {
            JwtVerify::Wordpress => {
                if !j.algorithms.is_empty() || j.jwks_url.is_some() || !j.public_keys.is_empty() {
                    return Err(bad(
                        "verify=wordpress takes no algorithms or keys: the site checks its own tokens",
                    ));
                }
                JwtAuth::Wordpress(delegation(j)?)
            }
            JwtVerify::Local => {
                if j.act_as.is_some() || !j.require_roles.is_empty() {
                    return Err(bad(
                        "act_as and require_roles go with verify=wordpress: a locally verified \
                         token always gets the site credential",
                    ));
                }
                let algorithms = j
                    .algorithms
                    .iter()
                    .map(|a| parse_algorithm(a))
                    .collect::<Result<Vec<_>, _>>()?;
                let keys = match (&j.jwks_url, j.public_keys.is_empty(), hmac_secret) {
                    (Some(url), true, None) => JwtKeys::Jwks { url: url.clone() },
                    (None, false, None) => JwtKeys::PublicPems(j.public_keys.clone()),
                    (None, true, Some(secret)) => JwtKeys::Hmac(secret),
                    (None, true, None) => {
                        return Err(bad(
                            "jwt needs exactly one key source: a JWKS URL, public keys, or an HMAC secret",
                        ))
                    }
                    _ => {
                        return Err(bad(
                            "jwt takes exactly one key source: a JWKS URL, public keys, or an HMAC secret",
                        ))
                    }
                };
                JwtAuth::Local(JwtVerifier::new(JwtSettings {
                    algorithms,
                    keys,
                    issuer: j.issuer.clone(),
                    audiences: j.audiences.clone(),
                    leeway: j.leeway,
                    max_lifetime: j.max_lifetime,
                    kept_claims: j.claim_headers.keys().cloned().collect(),
                })?)
            }
        };
        Ok(SiteAuth {
            api_key: self.accepts(Method::ApiKey),
            jwt: Some(auth),
            claim_headers,
        })
    }
}

/// The `verify = "wordpress"` settings, checked: acting as the site needs roles.
fn delegation(j: &JwtPolicy) -> Result<Delegation, InvalidPolicy> {
    for role in &j.require_roles {
        if !is_role_slug(role) {
            return Err(InvalidPolicy::Invalid(format!(
                "{role:?} is not a WordPress role slug (a-z, 0-9, _ and -, e.g. administrator)"
            )));
        }
    }
    let act_as = j.act_as.unwrap_or_default();
    if act_as == ActAs::Site && j.require_roles.is_empty() {
        return Err(InvalidPolicy::Invalid(
            "act_as=site injects the site credential for WordPress users: it needs \
             require_roles, the roles allowed to act as the site (e.g. administrator)"
                .into(),
        ));
    }
    Ok(Delegation {
        act_as,
        require_roles: j.require_roles.clone(),
    })
}

/// A role as WordPress stores it (`sanitize_key`): lower-case letters, digits, `_`, `-`.
fn is_role_slug(role: &str) -> bool {
    !role.is_empty()
        && role.len() <= 64
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

pub fn parse_algorithm(a: &str) -> Result<jsonwebtoken::Algorithm, InvalidPolicy> {
    use jsonwebtoken::Algorithm::*;
    Ok(match a.to_ascii_uppercase().as_str() {
        "HS256" => HS256,
        "HS384" => HS384,
        "HS512" => HS512,
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EDDSA" => EdDSA,
        other => {
            return Err(InvalidPolicy::Invalid(format!(
                "unknown algorithm {other:?} (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(verify: JwtVerify) -> JwtPolicy {
        JwtPolicy {
            verify,
            algorithms: vec![],
            jwks_url: None,
            public_keys: vec![],
            issuer: None,
            audiences: vec![],
            leeway: default_leeway(),
            max_lifetime: None,
            claim_headers: BTreeMap::new(),
            act_as: None,
            require_roles: vec![],
        }
    }

    #[test]
    fn default_is_api_keys_only() {
        let p = AuthPolicy::from_json(None).unwrap();
        let a = p.build(None).unwrap();
        assert!(a.api_key && a.jwt.is_none());
    }

    #[test]
    fn json_round_trip() {
        let mut j = jwt(JwtVerify::Local);
        j.algorithms = vec!["HS256".into()];
        j.claim_headers
            .insert("sub".into(), "X-Auth-Subject".into());
        j.max_lifetime = Some(Duration::from_secs(3600));
        let p = AuthPolicy {
            methods: vec![Method::ApiKey, Method::Jwt],
            jwt: Some(j),
        };
        let text = p.to_json();
        assert!(text.contains("\"max_lifetime\":\"1h\""), "{text}");
        assert_eq!(AuthPolicy::from_json(Some(&text)).unwrap(), p);
        assert!(p.needs_hmac_secret());
        let built = p.build(Some(Secret::new(vec![7u8; 32]))).unwrap();
        assert!(built.api_key);
        assert_eq!(built.claim_headers[0].1.as_str(), "x-auth-subject");
    }

    #[test]
    fn refuses_bad_policies() {
        let only_jwt_without_settings = AuthPolicy {
            methods: vec![Method::Jwt],
            jwt: None,
        };
        assert!(only_jwt_without_settings.build(None).is_err());
        let no_methods = AuthPolicy {
            methods: vec![],
            jwt: None,
        };
        assert!(no_methods.build(None).is_err());
        let mut j = jwt(JwtVerify::Local);
        j.algorithms = vec!["HS256".into()];
        let no_key = AuthPolicy {
            methods: vec![Method::Jwt],
            jwt: Some(j.clone()),
        };
        assert!(no_key.build(None).is_err());
        let mut reserved = j.clone();
        reserved
            .claim_headers
            .insert("sub".into(), "Authorization".into());
        let p = AuthPolicy {
            methods: vec![Method::Jwt],
            jwt: Some(reserved),
        };
        assert!(p.build(Some(Secret::new(vec![1; 32]))).is_err());
        let mut wp = jwt(JwtVerify::Wordpress);
        wp.algorithms = vec!["RS256".into()];
        let p = AuthPolicy {
            methods: vec![Method::Jwt],
            jwt: Some(wp),
        };
        assert!(p.build(None).is_err());
        assert!(parse_algorithm("none").is_err());
        assert!(AuthPolicy::from_json(Some("{\"methods\":[\"api_key\"],\"x\":1}")).is_err());
    }

    fn delegated(act_as: Option<ActAs>, roles: &[&str]) -> AuthPolicy {
        let mut j = jwt(JwtVerify::Wordpress);
        j.act_as = act_as;
        j.require_roles = roles.iter().map(|r| (*r).to_string()).collect();
        AuthPolicy {
            methods: vec![Method::Jwt],
            jwt: Some(j),
        }
    }

    fn delegation(p: &AuthPolicy) -> Delegation {
        match p.build(None).unwrap().jwt {
            Some(JwtAuth::Wordpress(d)) => d,
            _ => panic!("not a delegated policy"),
        }
    }

    #[test]
    fn a_stored_delegated_policy_without_act_as_acts_as_the_user() {
        // As stored before act_as existed.
        let old = r#"{"methods":["api_key","jwt"],"jwt":{"verify":"wordpress"}}"#;
        let p = AuthPolicy::from_json(Some(old)).unwrap();
        let d = delegation(&p);
        assert_eq!(d.act_as, ActAs::User);
        assert!(d.allows(&[]), "act as user, no roles required: any user");
        assert!(
            !p.to_json().contains("act_as"),
            "saved again, it says nothing new"
        );
    }

    #[test]
    fn acting_as_the_site_needs_roles_and_checks_them() {
        let err = delegated(Some(ActAs::Site), &[]).build(None).err().unwrap();
        assert!(err.to_string().contains("require_roles"), "{err}");
        let p = delegated(Some(ActAs::Site), &["administrator", "editor"]);
        let text = p.to_json();
        assert!(
            text.contains(r#""act_as":"site","require_roles":["administrator","editor"]"#),
            "{text}"
        );
        assert_eq!(AuthPolicy::from_json(Some(&text)).unwrap(), p);
        let d = delegation(&p);
        assert_eq!(d.act_as, ActAs::Site);
        assert!(d.allows(&["editor".into()]));
        assert!(d.allows(&["subscriber".into(), "administrator".into()]));
        assert!(!d.allows(&["subscriber".into()]));
        assert!(!d.allows(&[]));
        assert!(!d.allows(&["Administrator".into()]), "role slugs are exact");
        // Roles may also narrow who acts as themselves.
        let d = delegation(&delegated(Some(ActAs::User), &["author"]));
        assert!(d.allows(&["author".into()]) && !d.allows(&["subscriber".into()]));
    }

    #[test]
    fn act_as_and_roles_are_only_for_delegated_tokens() {
        for bad_role in ["", "Administrator", "shop manager", "a,b", &"x".repeat(65)] {
            assert!(
                delegated(Some(ActAs::Site), &[bad_role])
                    .build(None)
                    .is_err(),
                "{bad_role:?}"
            );
        }
        let mut j = jwt(JwtVerify::Local);
        j.algorithms = vec!["HS256".into()];
        j.act_as = Some(ActAs::User);
        let p = AuthPolicy {
            methods: vec![Method::Jwt],
            jwt: Some(j.clone()),
        };
        assert!(p.build(Some(Secret::new(vec![7u8; 32]))).is_err());
        j.act_as = None;
        j.require_roles = vec!["administrator".into()];
        let p = AuthPolicy {
            methods: vec![Method::Jwt],
            jwt: Some(j),
        };
        assert!(p.build(Some(Secret::new(vec![7u8; 32]))).is_err());
        let unknown = r#"{"methods":["jwt"],"jwt":{"verify":"wordpress","act_as":"admin"}}"#;
        assert!(AuthPolicy::from_json(Some(unknown)).is_err());
    }

    #[test]
    fn jwks_urls_must_be_https_or_loopback() {
        let with_url = |url: &str| {
            let mut j = jwt(JwtVerify::Local);
            j.algorithms = vec!["RS256".into()];
            j.jwks_url = Some(url.into());
            AuthPolicy {
                methods: vec![Method::Jwt],
                jwt: Some(j),
            }
        };
        for ok in [
            "https://idp.example.com/.well-known/jwks.json",
            "http://127.0.0.1:8080/jwks",
            "http://127.9.8.7/jwks",
            "http://[::1]:9000/jwks",
            "http://localhost:9000/jwks",
            "http://LOCALHOST/jwks",
        ] {
            with_url(ok).check_new().unwrap();
        }
        for bad in [
            "http://idp.example.com/jwks",
            "http://10.0.0.1/jwks",
            "http://localhost.example.com/jwks",
            "http://128.0.0.1/jwks",
            "ftp://idp.example.com/jwks",
            "not a url",
        ] {
            let e = with_url(bad).check_new().unwrap_err();
            let text = format!("{:#}", anyhow::Error::new(e));
            assert!(text.contains("JWKS URL"), "{bad}: {text}");
        }
        let e = with_url("http://idp.example.com/jwks")
            .check_new()
            .unwrap_err();
        let text = format!("{:#}", anyhow::Error::new(e));
        assert!(text.contains("must use https"), "{text}");
        // Policies without a JWKS URL have nothing to check.
        AuthPolicy::default().check_new().unwrap();
    }
}
