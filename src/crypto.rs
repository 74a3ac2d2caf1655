//! The keyring and sealing of secrets at rest.
//!
//! Every secret is sealed with AES-256-GCM under the keyring's primary key, a fresh
//! random 96-bit nonce, and associated data that binds it to its place, so a ciphertext
//! copied to another site or field does not open. Two formats, named by the sealed
//! text's first part:
//! - `v1`: the place is `wpgate/v1/<site id>/<field>` (or `@global` for gateway-wide
//!   secrets);
//! - `v2`: the place also names an origin, `wpgate/v2/<site id>/<field>/<origin>`: a
//!   site's upstream credential opens only for the origin (`scheme://host:port`) it was
//!   sealed for, so it is never sent to a host it was not given for.
//!
//! Sealed text names its format and key: `<format>.<key id>.<nonce>.<ciphertext>`
//! (base64url). A place opens only sealed text of its own format.

use crate::secret::Secret;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The format of places bound to a site or the gateway (`Place::site`, `Place::global`).
const V1: &str = "v1";
/// The format of places that also name an origin (`Place::site_origin`).
const V2: &str = "v2";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("sealed value was sealed with key {0:?}, which is not in the keyring")]
    UnknownKey(String),
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value does not open: wrong place, wrong key or tampered")]
    OpenFailed,
    /// Sealed text of another format than its place takes (e.g. a `v1` upstream
    /// credential, sealed before credentials were bound to their origin).
    #[error("sealed value has format {found}, where format {expected} is required")]
    WrongFormat {
        found: &'static str,
        expected: &'static str,
    },
    #[error("sealing failed")]
    SealFailed,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("cannot read keyring file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write keyring file {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "keyring file {path} is readable by group or others (mode {mode:o}); \
         it holds the master keys: run `chmod 600 {path}`. Where chmod cannot work (a \
         read-only mount such as a Kubernetes Secret volume), give the volume \
         `defaultMode: 0400`, or pass the keyring in WPGATE_KEYRING instead of a file"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("keyring {origin} is invalid: {problem}")]
    Invalid { origin: String, problem: String },
    #[error(
        "the keyring lacks key {key_id:?}, which still seals {count} stored record(s): \
         refusing it (run `wpgate keyring rewrap` with a keyring that has both keys first)"
    )]
    MissingInUse { key_id: String, count: i64 },
}

/// Where a sealed secret lives: bound into the ciphertext as associated data. The
/// format of the sealed text follows from the place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    format: &'static str,
    aad: String,
}

impl Place {
    /// A secret that belongs to one site, e.g. `Place::site("shop", "jwt_hmac_secret")`.
    pub fn site(site_id: &str, field: &str) -> Self {
        Place {
            format: V1,
            aad: format!("wpgate/{V1}/{site_id}/{field}"),
        }
    }

    /// A secret that belongs to one site and may only be used with one origin (the
    /// normalised `scheme://host:port`, see `site::UpstreamTarget::origin`).
    pub fn site_origin(site_id: &str, field: &str, origin: &str) -> Self {
        Place {
            format: V2,
            aad: format!("wpgate/{V2}/{site_id}/{field}/{origin}"),
        }
    }

    /// A gateway-wide secret. `@` cannot occur in a site id, so no site can collide.
    pub fn global(field: &str) -> Self {
        Place {
            format: V1,
            aad: format!("wpgate/{V1}/@global/{field}"),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        self.aad.as_bytes()
    }
}

/// The format (`v1`, `v2`) of sealed text, without opening it.
pub fn sealed_format(sealed: &str) -> Option<&'static str> {
    SealedParts::parse(sealed).ok().map(|p| p.format)
}

/// A named 256-bit key.
struct KeyEntry {
    cipher: Aes256Gcm,
}

/// Several named keys, one primary: seal with the primary, open with whichever key the
/// sealed text names.
pub struct Keyring {
    keys: BTreeMap<String, KeyEntry>,
    primary: String,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("primary", &self.primary)
            .finish()
    }
}

/// The keyring file, as written on disk.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringToml {
    primary: String,
    keys: Vec<KeyToml>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyToml {
    id: String,
    /// 32 bytes, base64url.
    secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
}

/// How the keyring was obtained at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringSource {
    File(PathBuf),
    Generated(PathBuf),
    Environment,
}

fn valid_key_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

const KEYRING_HEADER: &str =
    "# wpgate keyring: the master keys that seal every secret in the store.\n\
     # Keep it secret (mode 0600) and backed up: without it the sealed data cannot be read.\n";

/// A new random key: its id and its TOML entry.
fn new_key_toml() -> (String, zeroize::Zeroizing<[u8; 32]>, KeyToml) {
    let mut id_bytes = [0u8; 5];
    OsRng.fill_bytes(&mut id_bytes);
    let id = format!("k{}", hex_lower(&id_bytes));
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(secret.as_mut());
    let entry = KeyToml {
        id: id.clone(),
        secret: B64.encode(secret.as_ref()),
        created_at: Some(crate::time::rfc3339(crate::time::now_unix())),
    };
    (id, secret, entry)
}

fn keyring_text(file: &KeyringToml) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(format!(
        "{KEYRING_HEADER}{}",
        toml::to_string(file).unwrap_or_default()
    ))
}

/// Edits of a keyring file (`wpgate keyring add|retire`): the text in, the new text out.
pub mod edit {
    use super::*;

    /// The edited keyring text, or why the edit was refused.
    pub type NewText = Result<zeroize::Zeroizing<String>, KeyringError>;

    fn parse(text: &str, origin: &str) -> Result<KeyringToml, KeyringError> {
        // Validates the whole keyring first (ids, secrets, primary).
        Keyring::parse(text, origin)?;
        toml::from_str(text).map_err(|_| KeyringError::Invalid {
            origin: origin.to_string(),
            problem: "not a keyring TOML document".into(),
        })
    }

    /// Adds a new random key (made primary if asked); returns the new text and its id.
    pub fn add_key(
        text: &str,
        origin: &str,
        make_primary: bool,
    ) -> Result<(zeroize::Zeroizing<String>, String), KeyringError> {
        let mut file = parse(text, origin)?;
        let (id, _secret, entry) = new_key_toml();
        file.keys.push(entry);
        if make_primary {
            file.primary = id.clone();
        }
        Ok((keyring_text(&file), id))
    }

    /// Makes an existing key the primary.
    pub fn set_primary(text: &str, origin: &str, key_id: &str) -> NewText {
        change_key(text, origin, key_id, |file| {
            file.primary = key_id.to_string();
            Ok(())
        })
    }

    /// Removes a key that is not the primary.
    pub fn remove_key(text: &str, origin: &str, key_id: &str) -> NewText {
        change_key(text, origin, key_id, |file| {
            if file.primary == key_id {
                return Err(format!(
                    "key {key_id:?} is the primary: make another key primary first"
                ));
            }
            file.keys.retain(|k| k.id != key_id);
            Ok(())
        })
    }

    /// Applies `change` (which may refuse, saying why) to a keyring that has the key
    /// `key_id`; returns the new text.
    fn change_key(
        text: &str,
        origin: &str,
        key_id: &str,
        change: impl FnOnce(&mut KeyringToml) -> Result<(), String>,
    ) -> NewText {
        let mut file = parse(text, origin)?;
        let invalid = |problem: String| KeyringError::Invalid {
            origin: origin.to_string(),
            problem,
        };
        if !file.keys.iter().any(|k| k.id == key_id) {
            return Err(invalid(format!("there is no key {key_id:?}")));
        }
        change(&mut file).map_err(invalid)?;
        Ok(keyring_text(&file))
    }
}

/// Replaces a private file atomically: a new file at mode 0600 beside it, synced, then
/// renamed over it, so a crash leaves either the old or the new content.
pub fn replace_private_file(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    write_new_private_file(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    if let Some(dir) = crate::config::model::parent_dir(path) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

impl Keyring {
    /// A new keyring with one random primary key.
    pub fn generate() -> (Keyring, String) {
        let (id, secret, entry) = new_key_toml();
        let file = KeyringToml {
            primary: id.clone(),
            keys: vec![entry],
        };
        let text = keyring_text(&file).to_string();
        let mut keys = BTreeMap::new();
        keys.insert(
            id.clone(),
            KeyEntry {
                cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(secret.as_ref())),
            },
        );
        (Keyring { keys, primary: id }, text)
    }

    /// Parses keyring text. `origin` names it in errors (a file path or the variable).
    pub fn parse(text: &str, origin: &str) -> Result<Keyring, KeyringError> {
        let invalid = |problem: String| KeyringError::Invalid {
            origin: origin.to_string(),
            problem,
        };
        // toml's message may quote the offending line, which can hold a key: keep only its kind.
        let file: KeyringToml = toml::from_str(text).map_err(|e| {
            invalid(format!(
                "not a keyring TOML document ({})",
                e.message().lines().next().unwrap_or("parse error")
            ))
        })?;
        let mut keys = BTreeMap::new();
        for k in &file.keys {
            if !valid_key_id(&k.id) {
                return Err(invalid(format!(
                    "key id {:?} must be 1-32 characters [A-Za-z0-9_-]",
                    k.id
                )));
            }
            let bytes = zeroize::Zeroizing::new(
                B64.decode(k.secret.trim())
                    .map_err(|_| invalid(format!("key {:?}: secret is not base64url", k.id)))?,
            );
            if bytes.len() != 32 {
                return Err(invalid(format!(
                    "key {:?}: secret must be 32 bytes, found {}",
                    k.id,
                    bytes.len()
                )));
            }
            let entry = KeyEntry {
                cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
            };
            if keys.insert(k.id.clone(), entry).is_some() {
                return Err(invalid(format!("key id {:?} appears twice", k.id)));
            }
        }
        if !keys.contains_key(&file.primary) {
            return Err(invalid(format!(
                "primary {:?} is not one of the keys",
                file.primary
            )));
        }
        Ok(Keyring {
            keys,
            primary: file.primary,
        })
    }

    /// Loads the keyring: from `env_text` (the `WPGATE_KEYRING` variable) if given, else
    /// from `path`, generating the file (mode 0600) if it does not exist yet.
    pub fn load_or_create(
        path: &Path,
        env_text: Option<&str>,
    ) -> Result<(Keyring, KeyringSource), KeyringError> {
        if let Some(text) = env_text {
            return Ok((
                Keyring::parse(text, "from WPGATE_KEYRING")?,
                KeyringSource::Environment,
            ));
        }
        match Keyring::load_file(path) {
            Err(KeyringError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let (keyring, text) = Keyring::generate();
                write_new_private_file(path, &text).map_err(|source| KeyringError::Write {
                    path: path.to_path_buf(),
                    source,
                })?;
                Ok((keyring, KeyringSource::Generated(path.to_path_buf())))
            }
            Err(e) => Err(e),
            Ok(k) => Ok((k, KeyringSource::File(path.to_path_buf()))),
        }
    }

    /// Loads an existing keyring file, refusing one that group or others can read.
    pub fn load_file(path: &Path) -> Result<Keyring, KeyringError> {
        let read_err = |source| KeyringError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyringError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(read_err)?);
        Keyring::parse(&text, &format!("file {}", path.display()))
    }

    pub fn primary_id(&self) -> &str {
        &self.primary
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    pub fn contains(&self, key_id: &str) -> bool {
        self.keys.contains_key(key_id)
    }

    /// Seals `plaintext` for `place` with the primary key.
    pub fn seal(&self, place: &Place, plaintext: &[u8]) -> Result<String, CryptoError> {
        let entry = self
            .keys
            .get(&self.primary)
            .ok_or(CryptoError::SealFailed)?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = entry
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: place.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::SealFailed)?;
        Ok(format!(
            "{}.{}.{}.{}",
            place.format,
            self.primary,
            B64.encode(nonce),
            B64.encode(ct)
        ))
    }

    /// Opens sealed text that was sealed for `place`.
    pub fn open(&self, place: &Place, sealed: &str) -> Result<Secret, CryptoError> {
        let parts = SealedParts::parse(sealed)?;
        if parts.format != place.format {
            return Err(CryptoError::WrongFormat {
                found: parts.format,
                expected: place.format,
            });
        }
        let entry = self
            .keys
            .get(parts.key_id)
            .ok_or_else(|| CryptoError::UnknownKey(parts.key_id.to_string()))?;
        let nonce_bytes = B64
            .decode(parts.nonce)
            .map_err(|_| CryptoError::Malformed)?;
        if nonce_bytes.len() != 12 {
            return Err(CryptoError::Malformed);
        }
        let ct = B64
            .decode(parts.ciphertext)
            .map_err(|_| CryptoError::Malformed)?;
        let pt = entry
            .cipher
            .decrypt(
                Nonce::from_slice(&nonce_bytes),
                Payload {
                    msg: &ct,
                    aad: place.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::OpenFailed)?;
        Ok(Secret::new(pt))
    }
}

/// The id of the key that sealed `sealed`, without opening it.
pub fn sealed_key_id(sealed: &str) -> Option<&str> {
    SealedParts::parse(sealed).ok().map(|p| p.key_id)
}

struct SealedParts<'a> {
    format: &'static str,
    key_id: &'a str,
    nonce: &'a str,
    ciphertext: &'a str,
}

impl<'a> SealedParts<'a> {
    fn parse(sealed: &'a str) -> Result<Self, CryptoError> {
        let mut it = sealed.split('.');
        let format = match it.next() {
            Some(V1) => V1,
            Some(V2) => V2,
            _ => return Err(CryptoError::Malformed),
        };
        match (it.next(), it.next(), it.next(), it.next()) {
            (Some(key_id), Some(nonce), Some(ciphertext), None) if valid_key_id(key_id) => {
                Ok(SealedParts {
                    format,
                    key_id,
                    nonce,
                    ciphertext,
                })
            }
            _ => Err(CryptoError::Malformed),
        }
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Creates `path` (and its directory) with mode 0600; fails if it already exists.
pub fn write_new_private_file(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = crate::config::model::parent_dir(path) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let (k, _) = Keyring::generate();
        let place = Place::site("shop", "upstream_credential");
        let sealed = k.seal(&place, b"abcd efgh ijkl").unwrap();
        assert!(sealed.starts_with(&format!("v1.{}.", k.primary_id())));
        assert_eq!(k.open(&place, &sealed).unwrap().expose(), b"abcd efgh ijkl");
        // A fresh nonce each time: sealing twice never gives the same text.
        assert_ne!(sealed, k.seal(&place, b"abcd efgh ijkl").unwrap());
    }

    #[test]
    fn wrong_site_or_field_fails() {
        let (k, _) = Keyring::generate();
        let sealed = k
            .seal(&Place::site("shop", "upstream_credential"), b"s")
            .unwrap();
        assert!(matches!(
            k.open(&Place::site("blog", "upstream_credential"), &sealed),
            Err(CryptoError::OpenFailed)
        ));
        assert!(matches!(
            k.open(&Place::site("shop", "jwt_secret"), &sealed),
            Err(CryptoError::OpenFailed)
        ));
        assert!(matches!(
            k.open(&Place::global("upstream_credential"), &sealed),
            Err(CryptoError::OpenFailed)
        ));
    }

    #[test]
    fn origin_bound_places_open_only_for_their_site_field_and_origin() {
        let (k, _) = Keyring::generate();
        let place = Place::site_origin("shop", "upstream_credential", "https://shop.example:443");
        let sealed = k.seal(&place, b"app password").unwrap();
        assert!(sealed.starts_with(&format!("v2.{}.", k.primary_id())));
        assert_eq!(sealed_format(&sealed), Some("v2"));
        assert_eq!(sealed_key_id(&sealed), Some(k.primary_id()));
        assert_eq!(k.open(&place, &sealed).unwrap().expose(), b"app password");
        for other in [
            Place::site_origin("shop", "upstream_credential", "https://evil.example:443"),
            Place::site_origin("shop", "upstream_credential", "http://shop.example:443"),
            Place::site_origin("shop", "upstream_credential", "https://shop.example:8443"),
            Place::site_origin("blog", "upstream_credential", "https://shop.example:443"),
            Place::site_origin("shop", "jwt_hmac_secret", "https://shop.example:443"),
        ] {
            assert!(
                matches!(k.open(&other, &sealed), Err(CryptoError::OpenFailed)),
                "{other:?}"
            );
        }
        // A place of the other format never opens it, and the error says why.
        let v1 = Place::site("shop", "upstream_credential");
        assert!(matches!(
            k.open(&v1, &sealed),
            Err(CryptoError::WrongFormat {
                found: "v2",
                expected: "v1"
            })
        ));
        let old = k.seal(&v1, b"app password").unwrap();
        assert!(old.starts_with("v1."));
        let err = k.open(&place, &old).unwrap_err();
        assert!(
            matches!(
                err,
                CryptoError::WrongFormat {
                    found: "v1",
                    expected: "v2"
                }
            ),
            "{err}"
        );
        // The same ciphertext relabelled as the other format does not open either.
        let relabelled = format!("v2{}", &old[2..]);
        assert!(matches!(
            k.open(&place, &relabelled),
            Err(CryptoError::OpenFailed)
        ));
    }

    #[test]
    fn one_flipped_bit_fails() {
        let (k, _) = Keyring::generate();
        let place = Place::site("shop", "f");
        let sealed = k.seal(&place, b"secret value").unwrap();
        let (head, ct) = sealed.rsplit_once('.').unwrap();
        let mut bytes = B64.decode(ct).unwrap();
        for i in 0..bytes.len() * 8 {
            bytes[i / 8] ^= 1 << (i % 8);
            let tampered = format!("{head}.{}", B64.encode(&bytes));
            assert!(k.open(&place, &tampered).is_err(), "bit {i}");
            bytes[i / 8] ^= 1 << (i % 8);
        }
        // Tampering with the nonce fails too.
        let parts: Vec<&str> = sealed.split('.').collect();
        let mut nonce = B64.decode(parts[2]).unwrap();
        nonce[0] ^= 1;
        let tampered = format!("v1.{}.{}.{}", parts[1], B64.encode(&nonce), parts[3]);
        assert!(k.open(&place, &tampered).is_err());
    }

    #[test]
    fn unknown_key_id_is_named() {
        let (a, _) = Keyring::generate();
        let (b, _) = Keyring::generate();
        let sealed = a.seal(&Place::global("pepper"), b"x").unwrap();
        let err = b.open(&Place::global("pepper"), &sealed).unwrap_err();
        assert!(err.to_string().contains(a.primary_id()), "{err}");
        assert_eq!(sealed_key_id(&sealed), Some(a.primary_id()));
    }

    #[test]
    fn malformed_sealed_text() {
        let (k, _) = Keyring::generate();
        let place = Place::global("f");
        for bad in [
            "",
            "v1",
            "v2.k.a.b",
            "v3.k.AAAA.AAAA",
            "v1.k.a",
            "v1.k.!!.b",
            "v1.bad id.AAAA.AAAA",
        ] {
            assert!(k.open(&place, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_text_parses_back() {
        let (k, text) = Keyring::generate();
        let k2 = Keyring::parse(&text, "test").unwrap();
        let sealed = k.seal(&Place::global("x"), b"v").unwrap();
        assert_eq!(
            k2.open(&Place::global("x"), &sealed).unwrap().expose(),
            b"v"
        );
    }

    #[test]
    fn invalid_keyrings_are_refused_without_echoing_secrets() {
        let short = "primary = \"a\"\n[[keys]]\nid = \"a\"\nsecret = \"c2hvcnQ\"\n";
        let err = Keyring::parse(short, "test").unwrap_err().to_string();
        assert!(err.contains("32 bytes"), "{err}");
        assert!(!err.contains("c2hvcnQ"), "{err}");
        let no_primary = "primary = \"b\"\nkeys = []\n";
        assert!(Keyring::parse(no_primary, "test").is_err());
    }

    #[test]
    fn file_is_created_private_and_loose_modes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/keyring.toml");
        let (_, src) = Keyring::load_or_create(&path, None).unwrap();
        assert_eq!(src, KeyringSource::Generated(path.clone()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (_, src) = Keyring::load_or_create(&path, None).unwrap();
        assert_eq!(src, KeyringSource::File(path.clone()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Keyring::load_or_create(&path, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
