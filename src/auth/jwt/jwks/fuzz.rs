//! What [`parse_jwks`] keeps of a document, for the fuzzer (`crate::fuzzing::jwks`).

use super::{parse_jwks, SetKey};
use jsonwebtoken::Algorithm;

/// One key a document yielded.
pub(crate) struct KeptKey(SetKey);

impl KeptKey {
    pub(crate) fn alg(&self) -> Option<Algorithm> {
        self.0.alg
    }

    /// Whether the key is of a type that can verify `alg`.
    pub(crate) fn fits(&self, alg: Algorithm) -> bool {
        self.0.key.shape().fits(alg)
    }

    /// Whether the key verifies the compact JWS `token` under `alg`.
    pub(crate) fn verifies(&self, alg: Algorithm, token: &str) -> bool {
        let Some((message, signature)) = token.rsplit_once('.') else {
            return false;
        };
        super::super::keys::check_signature(signature, |sig| {
            self.0.key.verify(alg, message.as_bytes(), sig)
        })
        .is_ok()
    }
}

/// The keys `parse_jwks` keeps of `body`, or why it refuses the document.
pub(crate) fn parse(body: &[u8]) -> Result<Vec<KeptKey>, String> {
    parse_jwks(body, "https://issuer.example/jwks.json")
        .map(|keys| keys.into_iter().map(KeptKey).collect())
}
