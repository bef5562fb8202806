//! Verifying the JWT a business signs for a verified customer: `HS256` only, a `kid` naming one
//! of the integration's signing keys, `scope: "user"`, `external_id`, optional `name`, `email`,
//! `email_verified` and `exp`. Every refusal says exactly what is wrong.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use parley_core::customer::EXTERNAL_ID_MAX;
use serde_json::{Map, Value};
use sha2::Sha256;

#[derive(Debug, Clone, PartialEq)]
pub enum JwtError {
    Malformed(&'static str),
    /// Anything but HS256 (`none`, `RS256`…) is refused before any key is looked at.
    UnsupportedAlgorithm(String),
    MissingKid,
    UnknownKid(String),
    BadSignature,
    Expired,
    MissingClaim(&'static str),
    InvalidClaim(&'static str, &'static str),
    WrongScope(String),
}

impl JwtError {
    pub fn code(&self) -> &'static str {
        match self {
            JwtError::Malformed(_) => "invalid_token",
            JwtError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            JwtError::MissingKid => "missing_kid",
            JwtError::UnknownKid(_) => "unknown_kid",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired => "token_expired",
            JwtError::MissingClaim(_) => "missing_claim",
            JwtError::InvalidClaim(..) => "invalid_claim",
            JwtError::WrongScope(_) => "wrong_scope",
        }
    }

    pub fn field(&self) -> Option<String> {
        match self {
            JwtError::MissingClaim(c) | JwtError::InvalidClaim(c, _) => Some(format!("jwt.{c}")),
            JwtError::WrongScope(_) => Some("jwt.scope".into()),
            JwtError::MissingKid | JwtError::UnknownKid(_) => Some("jwt.kid".into()),
            JwtError::UnsupportedAlgorithm(_) => Some("jwt.alg".into()),
            _ => Some("jwt".into()),
        }
    }

    pub fn detail(&self) -> String {
        match self {
            JwtError::Malformed(why) => format!("the JWT is malformed: {why}"),
            JwtError::UnsupportedAlgorithm(alg) => {
                format!("the JWT's algorithm `{alg}` is not accepted; sign with HS256")
            }
            JwtError::MissingKid => "the JWT header has no `kid`: name the integration key that signed it".into(),
            JwtError::UnknownKid(kid) => format!("`{kid}` is not a signing key of this integration"),
            JwtError::BadSignature => "the JWT's signature does not match the key named by its `kid`".into(),
            JwtError::Expired => "the JWT has expired (`exp` has passed)".into(),
            JwtError::MissingClaim(c) => format!("the JWT lacks the required claim `{c}`"),
            JwtError::InvalidClaim(c, why) => format!("the JWT claim `{c}` {why}"),
            JwtError::WrongScope(s) => format!("the JWT's scope is `{s}`; it must be `user`"),
        }
    }
}

/// A token split and decoded, its signature not yet checked.
#[derive(Debug)]
pub struct Unverified {
    pub kid: String,
    signing_input: String,
    signature: Vec<u8>,
    claims: Map<String, Value>,
}

/// The identity a valid token vouches for.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub external_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
}

fn decode_json(part: &str, what: &'static str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).map_err(|_| JwtError::Malformed(what))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Malformed(what)),
    }
}

pub fn parse(token: &str) -> Result<Unverified, JwtError> {
    let mut parts = token.trim().split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("a JWT has three dot-separated parts"));
    };
    let head = decode_json(header, "the header is not base64url JSON")?;
    let alg = head.get("alg").and_then(Value::as_str).unwrap_or("");
    if alg != "HS256" {
        return Err(JwtError::UnsupportedAlgorithm(alg.to_string()));
    }
    let kid = match head.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
        _ => return Err(JwtError::MissingKid),
    };
    let claims = decode_json(payload, "the payload is not base64url JSON")?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature.trim_end_matches('='))
        .map_err(|_| JwtError::Malformed("the signature is not base64url"))?;
    Ok(Unverified { kid, signing_input: format!("{header}.{payload}"), signature, claims })
}

fn optional_string(claims: &Map<String, Value>, name: &'static str, max: usize) -> Result<Option<String>, JwtError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(JwtError::InvalidClaim(name, "is too long")),
        Some(_) => Err(JwtError::InvalidClaim(name, "must be a string")),
    }
}

impl Unverified {
    /// Checks the signature with `secret` (its raw UTF-8 bytes), then the claims at `now`
    /// (Unix seconds).
    pub fn verify(&self, secret: &str, now: i64) -> Result<Claims, JwtError> {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| JwtError::BadSignature)?;
        mac.update(self.signing_input.as_bytes());
        mac.verify_slice(&self.signature).map_err(|_| JwtError::BadSignature)?;
        let c = &self.claims;
        match c.get("exp") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => {
                let exp = n.as_f64().unwrap_or(0.0);
                if (now as f64) >= exp {
                    return Err(JwtError::Expired);
                }
            }
            Some(_) => return Err(JwtError::InvalidClaim("exp", "must be a number of seconds since the epoch")),
        }
        match c.get("scope") {
            None | Some(Value::Null) => return Err(JwtError::MissingClaim("scope")),
            Some(Value::String(s)) if s == "user" => {}
            Some(Value::String(s)) => return Err(JwtError::WrongScope(s.clone())),
            Some(_) => return Err(JwtError::InvalidClaim("scope", "must be the string `user`")),
        }
        let external_id = optional_string(c, "external_id", EXTERNAL_ID_MAX)?
            .filter(|s| !s.trim().is_empty())
            .ok_or(JwtError::MissingClaim("external_id"))?;
        let email_verified = match c.get("email_verified") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(JwtError::InvalidClaim("email_verified", "must be true or false")),
        };
        Ok(Claims {
            external_id,
            name: optional_string(c, "name", 200)?,
            email: optional_string(c, "email", 254)?,
            email_verified,
        })
    }
}

/// Signs claims as a business's server would (used by tests and documentation examples).
pub fn sign_hs256(kid: &str, secret: &str, claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": kid}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let signature = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(input.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    format!("{input}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn check(token: &str, secret: &str) -> Result<Claims, JwtError> {
        parse(token)?.verify(secret, NOW)
    }

    #[test]
    fn a_valid_token_gives_its_identity() {
        let t = sign_hs256(
            "k1",
            "s3cret",
            &json!({"scope": "user", "external_id": "u-1", "name": "Kamal", "email": "k@x.io", "email_verified": true, "exp": NOW + 60}),
        );
        assert_eq!(parse(&t).unwrap().kid, "k1");
        let claims = check(&t, "s3cret").unwrap();
        assert_eq!(
            claims,
            Claims {
                external_id: "u-1".into(),
                name: Some("Kamal".into()),
                email: Some("k@x.io".into()),
                email_verified: true
            }
        );
    }

    #[test]
    fn every_refusal_says_why() {
        let ok = json!({"scope": "user", "external_id": "u-1"});
        assert_eq!(check(&sign_hs256("k1", "other", &ok), "s3cret"), Err(JwtError::BadSignature));
        assert_eq!(
            check(&sign_hs256("k1", "s3cret", &json!({"scope": "user", "external_id": "u", "exp": NOW})), "s3cret"),
            Err(JwtError::Expired)
        );
        assert_eq!(
            check(&sign_hs256("k1", "s3cret", &json!({"external_id": "u"})), "s3cret"),
            Err(JwtError::MissingClaim("scope"))
        );
        assert_eq!(
            check(&sign_hs256("k1", "s3cret", &json!({"scope": "app", "external_id": "u"})), "s3cret"),
            Err(JwtError::WrongScope("app".into()))
        );
        assert_eq!(
            check(&sign_hs256("k1", "s3cret", &json!({"scope": "user"})), "s3cret"),
            Err(JwtError::MissingClaim("external_id"))
        );
        assert_eq!(
            check(&sign_hs256("k1", "s3cret", &json!({"scope": "user", "external_id": "x".repeat(256)})), "s3cret"),
            Err(JwtError::InvalidClaim("external_id", "is too long"))
        );
        assert!(matches!(check("abc", "s3cret"), Err(JwtError::Malformed(_))));
    }

    #[test]
    fn unsigned_and_asymmetric_tokens_are_refused() {
        let claims = URL_SAFE_NO_PAD.encode(json!({"scope": "user", "external_id": "u"}).to_string());
        for alg in ["none", "RS256", "HS512"] {
            let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "kid": "k1"}).to_string());
            let token = format!("{header}.{claims}.");
            assert_eq!(check(&token, "s3cret").unwrap_err(), JwtError::UnsupportedAlgorithm(alg.into()));
        }
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "HS256"}).to_string());
        assert_eq!(check(&format!("{header}.{claims}.sig"), "s3cret").unwrap_err(), JwtError::MissingKid);
    }
}
