//! Operator endpoints (redrive, raw dead letters) behind a bearer token.
//!
//! Only the token's SHA-256 is kept, and a presented token is hashed and compared with it in
//! constant time: neither its contents nor its length can be learned from response times, and
//! the token itself is never held where a log, an error body or a debug print could show it.

use std::path::Path;

use hyper::StatusCode;
use hyper::header::AUTHORIZATION;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::env::{Env, EnvError};
use crate::{ApiError, HttpRequest};

/// The shortest token accepted: a guessable token protects nothing.
pub const MIN_TOKEN_CHARS: usize = 16;

/// What an `EnvError` shows instead of a token.
const HIDDEN: &str = "(hidden)";

/// The token operator endpoints ask for.
#[derive(Clone)]
pub struct OperatorToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorToken(hidden)")
    }
}

impl OperatorToken {
    /// `token`, trimmed; at least [`MIN_TOKEN_CHARS`] characters, no whitespace inside.
    pub fn new(token: &str) -> Result<Self, String> {
        let token = token.trim();
        if token.chars().count() < MIN_TOKEN_CHARS {
            return Err(format!(
                "the token must be at least {MIN_TOKEN_CHARS} characters long"
            ));
        }
        if token.chars().any(char::is_whitespace) {
            return Err("the token must not contain whitespace".into());
        }
        Ok(Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// `Ok` if `request` carries `Authorization: Bearer <this token>`; else `401`.
    pub fn check(&self, request: &HttpRequest) -> Result<(), ApiError> {
        self.check_headers(request.headers())
    }

    fn check_headers(&self, headers: &hyper::HeaderMap) -> Result<(), ApiError> {
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        let Some(presented) = presented else {
            return Err(ApiError::unauthorized(
                "this endpoint needs the operator token: send Authorization: Bearer <token>",
            ));
        };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if bool::from(digest.ct_eq(&self.digest)) {
            Ok(())
        } else {
            Err(ApiError::unauthorized("the operator token is not valid"))
        }
    }

    /// `OPERATOR_TOKEN`, or the contents of the file `OPERATOR_TOKEN_FILE` names (not both);
    /// `None` when neither is set. Errors never show the token.
    pub fn from_env(env: &Env) -> Result<Option<Self>, EnvError> {
        let inline = Some(env.text("OPERATOR_TOKEN", "")).filter(|t| !t.is_empty());
        let file = env.text("OPERATOR_TOKEN_FILE", "");
        let hidden = |name, reason: String| EnvError {
            name,
            value: HIDDEN.into(),
            reason,
        };
        match (inline, file.as_str()) {
            (None, "") => Ok(None),
            (Some(_), file) if !file.is_empty() => Err(hidden(
                "OPERATOR_TOKEN",
                "set OPERATOR_TOKEN or OPERATOR_TOKEN_FILE, not both".into(),
            )),
            (Some(token), _) => Self::new(&token)
                .map(Some)
                .map_err(|reason| hidden("OPERATOR_TOKEN", reason)),
            (None, path) => {
                let failed = |reason: String| EnvError {
                    name: "OPERATOR_TOKEN_FILE",
                    value: path.to_owned(),
                    reason,
                };
                let token = std::fs::read_to_string(Path::new(path))
                    .map_err(|e| failed(format!("cannot read it: {e}")))?;
                Self::new(&token).map(Some).map_err(failed)
            }
        }
    }
}

impl ApiError {
    /// `401`: the answer carries `WWW-Authenticate: Bearer`.
    pub fn unauthorized(details: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", details)
    }

    /// `403`.
    pub fn forbidden(details: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    fn request(authorization: Option<&str>) -> hyper::Request<()> {
        let mut builder = hyper::Request::builder().uri("/api/dlq/redrive");
        if let Some(value) = authorization {
            builder = builder.header(AUTHORIZATION, value);
        }
        builder.body(()).unwrap()
    }

    fn check(token: &OperatorToken, authorization: Option<&str>) -> Result<(), ApiError> {
        token.check_headers(request(authorization).headers())
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        let token = OperatorToken::new(TOKEN).unwrap();
        assert!(check(&token, Some(&format!("Bearer {TOKEN}"))).is_ok());
        assert!(check(&token, Some(&format!("bearer  {TOKEN} "))).is_ok());
        for wrong in [
            None,
            Some("Bearer"),
            Some("Bearer wrong-token-0123456789"),
            Some(&format!("Basic {TOKEN}")),
            Some(&format!("Bearer {TOKEN}x")),
        ] {
            let error = check(&token, wrong).unwrap_err();
            assert_eq!(error.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
            assert!(!error.details.contains(TOKEN));
        }
    }

    #[test]
    fn weak_tokens_are_refused_and_errors_hide_the_token() {
        assert!(OperatorToken::new("short").is_err());
        assert!(OperatorToken::new("has a space inside it!").is_err());
        assert_eq!(
            format!("{:?}", OperatorToken::new(TOKEN).unwrap()),
            "OperatorToken(hidden)"
        );
        let error =
            OperatorToken::from_env(&Env::from_pairs(&[("OPERATOR_TOKEN", "tiny")])).unwrap_err();
        assert_eq!(error.name, "OPERATOR_TOKEN");
        assert!(!error.to_string().contains("tiny"), "{error}");
        let both = Env::from_pairs(&[("OPERATOR_TOKEN", TOKEN), ("OPERATOR_TOKEN_FILE", "/x")]);
        let error = OperatorToken::from_env(&both).unwrap_err();
        assert!(!error.to_string().contains(TOKEN), "{error}");
        assert!(
            OperatorToken::from_env(&Env::from_pairs(&[]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_token_can_come_from_a_file() {
        let dir = std::env::temp_dir().join(format!("operator-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
        let path = file.display().to_string();
        let env = Env::from_pairs(&[("OPERATOR_TOKEN_FILE", path.as_str())]);
        let token = OperatorToken::from_env(&env).unwrap().unwrap();
        assert!(check(&token, Some(&format!("Bearer {TOKEN}"))).is_ok());
        let missing = Env::from_pairs(&[("OPERATOR_TOKEN_FILE", "/no/such/token")]);
        let error = OperatorToken::from_env(&missing).unwrap_err();
        assert_eq!(error.name, "OPERATOR_TOKEN_FILE");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
