//! Digest authentication, client side (RFC 3261 section 22, RFC 2617, RFC 7616).
//!
//! The browser sends the account's HA1 (`md5(user:realm:password)`), never the password, so MD5
//! responses are computed from the HA1 directly. SHA-256 needs the password itself, which the
//! client sends only with `ha1: false`.

use std::fmt;

use ezk_sip_types::Name;
use ezk_sip_types::header::typed::{
    Algorithm, AlgorithmValue, AuthChallenge, DigestChallenge, QopOption,
};
use md5::Md5;
use sha2::{Digest, Sha256};

use crate::message::{Message, list};

/// An account's credentials. `Debug` never shows the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The digest username (the user part of the account).
    pub username: String,
    /// The secret.
    pub secret: Secret,
}

/// What the client knows of the password.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// `md5(username:realm:password)` as 32 hex digits.
    Ha1(String),
    /// The password itself.
    Password(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Ha1(_) => f.write_str("Ha1(<redacted>)"),
            Secret::Password(_) => f.write_str("Password(<redacted>)"),
        }
    }
}

/// Why a challenge cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    /// The response carries no challenge we can parse.
    #[error("no usable digest challenge")]
    NoChallenge,
    /// Only algorithms we cannot compute were offered (SHA-256 needs the plain password).
    #[error("unsupported digest algorithm {0}")]
    Unsupported(String),
    /// The server challenged again for credentials it had already been given: they are wrong.
    #[error("credentials rejected")]
    Rejected,
}

/// Answers digest challenges for one sequence of requests (a REGISTER and its refreshes, an
/// INVITE...): keeps the nonce count, and tells a fresh challenge from a rejection.
#[derive(Debug)]
pub(crate) struct DigestClient {
    credentials: Credentials,
    /// The nonce last used, with its count.
    last: Option<(String, u32)>,
    /// The challenge in use, to authorize later requests (refreshes) without a new round trip.
    current: Option<(Name, DigestChallenge)>,
    /// A challenge was answered since the last success: another one means the credentials are
    /// wrong (unless it is stale).
    answered: bool,
    /// The one retry allowed for `stale=true` since the last success was used.
    stale_retried: bool,
}

impl DigestClient {
    /// A client for these credentials.
    pub(crate) fn new(credentials: Credentials) -> Self {
        DigestClient {
            credentials,
            last: None,
            current: None,
            answered: false,
            stale_retried: false,
        }
    }

    /// Reads the challenges of a 401 or 407 and keeps the best one we can answer. A second
    /// challenge since the last success means the credentials are wrong, except for one retry
    /// when the server says the nonce was merely stale.
    pub(crate) fn challenge(&mut self, response: &Message) -> Result<(), AuthError> {
        let (name, authorization) = match response.code() {
            Some(407) => (Name::PROXY_AUTHENTICATE, Name::PROXY_AUTHORIZATION),
            _ => (Name::WWW_AUTHENTICATE, Name::AUTHORIZATION),
        };
        let challenges: Vec<DigestChallenge> = list::<AuthChallenge>(&response.headers, &name)
            .map_err(|_| AuthError::NoChallenge)?
            .into_iter()
            .filter_map(|challenge| match challenge {
                AuthChallenge::Digest(digest) => Some(digest),
                AuthChallenge::Other(_) => None,
            })
            .collect();
        if challenges.is_empty() {
            return Err(AuthError::NoChallenge);
        }
        let password = matches!(self.credentials.secret, Secret::Password(_));
        let mut unsupported = None;
        let usable = challenges
            .into_iter()
            .find(|challenge| match hash_of(&challenge.algorithm) {
                Some((Hash::Md5, _)) => true,
                Some((Hash::Sha256, _)) if password => true,
                _ => {
                    unsupported.get_or_insert_with(|| challenge.algorithm.to_string());
                    false
                }
            });
        let Some(challenge) = usable else {
            return Err(AuthError::Unsupported(unsupported.unwrap_or_default()));
        };
        if self.answered {
            if !challenge.stale || self.stale_retried {
                return Err(AuthError::Rejected);
            }
            self.stale_retried = true;
        }
        self.answered = true;
        self.current = Some((authorization, challenge));
        Ok(())
    }

    /// The request succeeded: the next challenge is a fresh one (a nonce that expired between
    /// refreshes), not a rejection. The challenge is kept to authorize the next request.
    pub(crate) fn succeeded(&mut self) {
        self.answered = false;
        self.stale_retried = false;
    }

    /// The header (name and value) that authorizes a request with the held challenge, or
    /// `None` when no challenge is held. `cnonce` should be random.
    pub(crate) fn authorize(
        &mut self,
        method: &str,
        uri: &str,
        body: &[u8],
        cnonce: &str,
    ) -> Option<(Name, String)> {
        let (name, challenge) = self.current.as_ref()?;
        let (hash, session) = hash_of(&challenge.algorithm)?;
        let nc = match &self.last {
            Some((nonce, count)) if *nonce == challenge.nonce.as_str() => count + 1,
            _ => 1,
        };
        let qop = if challenge.qop.contains(&QopOption::Auth) {
            Some("auth")
        } else if challenge.qop.contains(&QopOption::AuthInt) {
            Some("auth-int")
        } else {
            None
        };
        let inputs = Inputs {
            username: &self.credentials.username,
            realm: &challenge.realm,
            nonce: &challenge.nonce,
            method,
            uri,
            body,
            qop,
            nc,
            cnonce,
            session,
        };
        let response = compute(hash, &self.credentials.secret, &inputs)?;
        let mut value = format!(
            r#"Digest username="{}", realm="{}", nonce="{}", uri="{}", response="{response}", algorithm={}"#,
            quote_escape(&self.credentials.username),
            challenge.realm,
            challenge.nonce,
            uri,
            challenge.algorithm,
        );
        if let Some(opaque) = &challenge.opaque {
            value.push_str(&format!(r#", opaque="{opaque}""#));
        }
        if let Some(qop) = qop {
            // nc is LHEX (RFC 2617 section 3.2.2): lower case, eight digits.
            value.push_str(&format!(r#", qop={qop}, cnonce="{cnonce}", nc={nc:08x}"#));
        }
        self.last = Some((challenge.nonce.to_string(), nc));
        Some((name.clone(), value))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Md5,
    Sha256,
}

/// The hash of an algorithm and whether it is a `-sess` variant.
fn hash_of(algorithm: &Algorithm) -> Option<(Hash, bool)> {
    match algorithm {
        Algorithm::AlgorithmValue(AlgorithmValue::MD5) => Some((Hash::Md5, false)),
        Algorithm::AlgorithmValue(AlgorithmValue::MD5Sess) => Some((Hash::Md5, true)),
        Algorithm::AlgorithmValue(AlgorithmValue::SHA256) => Some((Hash::Sha256, false)),
        Algorithm::AlgorithmValue(AlgorithmValue::SHA256Sess) => Some((Hash::Sha256, true)),
        _ => None,
    }
}

/// Everything a digest response covers.
struct Inputs<'a> {
    username: &'a str,
    realm: &'a str,
    nonce: &'a str,
    method: &'a str,
    uri: &'a str,
    body: &'a [u8],
    qop: Option<&'a str>,
    nc: u32,
    cnonce: &'a str,
    session: bool,
}

fn hex_digest(hash: Hash, data: &[u8]) -> String {
    let bytes: Vec<u8> = match hash {
        Hash::Md5 => Md5::digest(data).to_vec(),
        Hash::Sha256 => Sha256::digest(data).to_vec(),
    };
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The `response` value. `None` when an HA1 is held for a hash other than MD5.
fn compute(hash: Hash, secret: &Secret, inputs: &Inputs<'_>) -> Option<String> {
    let mut ha1 = match secret {
        Secret::Ha1(ha1) if hash == Hash::Md5 => ha1.to_ascii_lowercase(),
        Secret::Ha1(_) => return None,
        Secret::Password(password) => hex_digest(
            hash,
            format!("{}:{}:{password}", inputs.username, inputs.realm).as_bytes(),
        ),
    };
    if inputs.session {
        ha1 = hex_digest(
            hash,
            format!("{ha1}:{}:{}", inputs.nonce, inputs.cnonce).as_bytes(),
        );
    }
    let ha2 = match inputs.qop {
        Some("auth-int") => {
            let body = hex_digest(hash, inputs.body);
            hex_digest(
                hash,
                format!("{}:{}:{body}", inputs.method, inputs.uri).as_bytes(),
            )
        }
        _ => hex_digest(hash, format!("{}:{}", inputs.method, inputs.uri).as_bytes()),
    };
    let data = match inputs.qop {
        Some(qop) => format!(
            "{ha1}:{}:{:08x}:{}:{qop}:{ha2}",
            inputs.nonce, inputs.nc, inputs.cnonce
        ),
        None => format!("{ha1}:{}:{ha2}", inputs.nonce),
    };
    Some(hex_digest(hash, data.as_bytes()))
}

fn quote_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `md5(username:realm:password)` in hex: what a browser computes as the HA1.
pub fn ha1(username: &str, realm: &str, password: &str) -> String {
    hex_digest(
        Hash::Md5,
        format!("{username}:{realm}:{password}").as_bytes(),
    )
}

#[cfg(test)]
mod tests;
