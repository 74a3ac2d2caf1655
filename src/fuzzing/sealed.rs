//! Sealed secrets and the keyring: `Keyring::open` and `sealed_key_id` on arbitrary
//! text and on tampered seals (`sealed`), `Keyring::parse` and the `wpgate keyring`
//! edits on arbitrary keyring text (`keyring`).

use super::input::Input;
use crate::crypto::{edit, sealed_key_id, CryptoError, Keyring, KeyringError, Place};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use std::sync::OnceLock;

/// Two keys, `k1` primary.
const KEYRING: &str = r#"primary = "k1"

[[keys]]
id = "k1"
secret = "GfxIXxYl8Zfouf4hf6j3QA5LOJiCZFzRIWc5e2KCrL4"

[[keys]]
id = "old-key_2"
secret = "LbsQI8Igs_NXtztK_B2jxHGHG7th1TyA7VYbPeMUP4Y"
"#;

/// The same key ids with another secret for `k1`: nothing the first seals opens here.
const OTHER_KEYRING: &str = r#"primary = "k1"

[[keys]]
id = "k1"
secret = "f_Wg_Yxzmkz4EcAcLvGt7OEbxwtnE9go5XYtxMmA61s"
"#;

const FIELDS: &[&str] = &["upstream_credential", "jwt_secret", "pepper"];

/// Sealed texts made with [`KEYRING`] once (the seed corpus holds them): the only texts
/// that may open, each only at its place.
/// (sealed text, site or "" for global, field, plaintext)
const KNOWN: &[(&str, &str, &str, &[u8])] = &[
    (
        "v1.k1.5ocRQDKc_gxOtTip.Tz_vZvetjMWu6QPUsTSfCiLQUC3_iDl574A9hKpnjtVUqFiVMY5KTc5kzJY",
        "shop",
        "upstream_credential",
        b"api:abcd efgh ijkl mnop qrst",
    ),
    (
        "v1.k1.bvT-1BEFqKfEdqNV.8FFZKgPda9FzZqs2Ra8z4VFNJh-jyMWqPVsu-8APq7l_6adIAvIW2lAzGw_jyqif",
        "",
        "pepper",
        b"0123456789abcdef0123456789abcdef",
    ),
    (
        "v1.old-key_2.j2bauYjwBacX0pAh.EmwY8IGLcRHPHlVm3BKrVp4Z0joDr_OJS-vMinsbXnM4Bz24Jkp9bsC9ktwnja3-vA",
        "blog",
        "jwt_secret",
        b"jwt secret of the blog, 32+ bytes",
    ),
];

fn place(site: &str, field: &str) -> Place {
    if site.is_empty() {
        Place::global(field)
    } else {
        Place::site(site, field)
    }
}

struct Rings {
    main: Keyring,
    other: Keyring,
    places: Vec<(&'static str, &'static str, Place)>,
}

fn rings() -> &'static Rings {
    static RINGS: OnceLock<Rings> = OnceLock::new();
    RINGS.get_or_init(|| {
        let parse = |text| match Keyring::parse(text, "fuzz fixture") {
            Ok(k) => k,
            Err(e) => panic!("{e}"),
        };
        let mut places = Vec::new();
        for site in ["shop", "blog", ""] {
            for &field in FIELDS {
                places.push((site, field, place(site, field)));
            }
        }
        Rings {
            main: parse(KEYRING),
            other: parse(OTHER_KEYRING),
            places,
        }
    })
}

/// `v1.<key id>.<nonce>.<ciphertext>` read the plain way: the key id if the text has
/// that shape and the id is 1-32 of `[A-Za-z0-9_-]`.
fn key_id_by_the_format(text: &str) -> Option<&str> {
    let parts: Vec<&str> = text.split('.').collect();
    let [version, id, _, _] = parts.as_slice() else {
        return None;
    };
    let id_ok = (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (*version == "v1" && id_ok).then_some(*id)
}

pub fn sealed(data: &[u8]) {
    arbitrary_text(&String::from_utf8_lossy(data));
    tampered_seal(&mut Input::new(data));
}

fn arbitrary_text(text: &str) {
    let r = rings();
    let id = sealed_key_id(text);
    assert_eq!(id, key_id_by_the_format(text), "{text:?}");
    for (site, field, place) in &r.places {
        match r.main.open(place, text) {
            Ok(plaintext) => assert!(
                KNOWN.iter().any(|&(k, s, f, p)| {
                    (k, s, f, p) == (text, *site, *field, plaintext.expose())
                }),
                "opened {text:?} at {place:?}"
            ),
            Err(CryptoError::UnknownKey(unknown)) => {
                assert_eq!(id, Some(unknown.as_str()));
                assert!(!r.main.contains(&unknown));
            }
            Err(CryptoError::Malformed | CryptoError::OpenFailed) => {
                if let Some(id) = id {
                    assert!(r.main.contains(id), "{text:?}: {id} is not in the keyring");
                }
            }
            // Text of the other sealed format than the place takes (v1 / v2).
            Err(CryptoError::WrongFormat { .. }) => {}
            Err(CryptoError::SealFailed) => panic!("open answered SealFailed"),
        }
        assert!(
            r.other.open(place, text).is_err(),
            "another keyring opened {text:?}"
        );
    }
}

/// How a fresh seal is changed before it is opened.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    None,
    FlipNonceBit,
    FlipCiphertextBit,
    OtherKeyId,
    OtherVersion,
    OtherPlace,
    TruncateCiphertext,
    ExtendCiphertext,
    OtherKeyring,
    OtherSealsNonce,
}

fn flip(segment: &str, input: &mut Input<'_>) -> String {
    let mut bytes = B64.decode(segment).unwrap_or_default();
    if !bytes.is_empty() {
        let bit = usize::from(input.u16()) % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
    }
    B64.encode(bytes)
}

fn tampered_seal(input: &mut Input<'_>) {
    let r = rings();
    let site = match input.choice(4) {
        0 => input.text(8),
        n => ["shop", "blog", ""][n - 1].to_string(),
    };
    let place = place(&site, input.pick(FIELDS));
    let plaintext = input.bytes(64);
    let Ok(sealed) = r.main.seal(&place, plaintext) else {
        panic!("sealing failed")
    };
    assert_eq!(sealed_key_id(&sealed), Some(r.main.primary_id()));
    match r.main.open(&place, &sealed) {
        Ok(opened) => assert_eq!(opened.expose(), plaintext),
        Err(e) => panic!("a fresh seal does not open: {e}"),
    }
    let parts: Vec<&str> = sealed.split('.').collect();
    let [_, id, nonce, ct] = parts.as_slice() else {
        panic!("seal {sealed:?} is not four parts")
    };
    let how = input.pick(&[
        Tamper::None,
        Tamper::FlipNonceBit,
        Tamper::FlipCiphertextBit,
        Tamper::OtherKeyId,
        Tamper::OtherVersion,
        Tamper::OtherPlace,
        Tamper::TruncateCiphertext,
        Tamper::ExtendCiphertext,
        Tamper::OtherKeyring,
        Tamper::OtherSealsNonce,
    ]);
    let mut ring = &r.main;
    let mut at = place.clone();
    let text = match how {
        Tamper::None => sealed.clone(),
        Tamper::FlipNonceBit => format!("v1.{id}.{}.{ct}", flip(nonce, input)),
        Tamper::FlipCiphertextBit => format!("v1.{id}.{nonce}.{}", flip(ct, input)),
        Tamper::OtherKeyId => format!("v1.old-key_2.{nonce}.{ct}"),
        Tamper::OtherVersion => format!("v2.{id}.{nonce}.{ct}"),
        Tamper::OtherPlace => {
            let (s, f, p) = &r.places[input.choice(r.places.len())];
            if p == &place {
                return;
            }
            at = self::place(s, f);
            sealed.clone()
        }
        Tamper::TruncateCiphertext => {
            let mut bytes = B64.decode(ct).unwrap_or_default();
            bytes.truncate(input.choice(bytes.len().max(1)));
            format!("v1.{id}.{nonce}.{}", B64.encode(bytes))
        }
        Tamper::ExtendCiphertext => {
            let mut bytes = B64.decode(ct).unwrap_or_default();
            bytes.extend_from_slice(input.bytes(8));
            bytes.push(input.byte());
            format!("v1.{id}.{nonce}.{}", B64.encode(bytes))
        }
        Tamper::OtherKeyring => {
            ring = &r.other;
            sealed.clone()
        }
        Tamper::OtherSealsNonce => {
            let Ok(again) = r.main.seal(&place, plaintext) else {
                panic!("sealing failed")
            };
            let other_nonce = again.split('.').nth(2).unwrap_or_default();
            format!("v1.{id}.{other_nonce}.{ct}")
        }
    };
    let genuine = matches!(how, Tamper::None);
    match ring.open(&at, &text) {
        Ok(opened) => {
            assert!(genuine, "{how:?}: {text:?} opened at {at:?}");
            assert_eq!(opened.expose(), plaintext);
        }
        Err(e) => assert!(!genuine, "a fresh seal does not open: {e}"),
    }
}

/// The `secret` strings of a keyring document's keys, where the text parses as TOML and
/// the secret is long and written once, and no other string or key of the document holds
/// it (so that an error naming it can only be an echo of the secret).
fn secrets_in(text: &str) -> Vec<String> {
    let Ok(mut doc) = toml::from_str::<toml::Table>(text) else {
        return Vec::new();
    };
    let mut secrets = Vec::new();
    if let Some(toml::Value::Array(keys)) = doc.get_mut("keys") {
        for key in keys {
            if let Some(toml::Value::String(s)) =
                key.as_table_mut().and_then(|k| k.remove("secret"))
            {
                secrets.push(s);
            }
        }
    }
    let mut others = Vec::new();
    super::config::strings_of(&toml::Value::Table(doc), &mut others);
    secrets.retain(|s| {
        s.len() >= 8
            && text.matches(s.as_str()).count() == 1
            && !others.iter().any(|o| o.contains(s.as_str()))
    });
    secrets
}

fn parse_edit(result: Result<zeroize::Zeroizing<String>, KeyringError>, what: &str) -> Keyring {
    let text = match result {
        Ok(text) => text,
        Err(e) => panic!("{what} refused: {e}"),
    };
    match Keyring::parse(&text, "edited") {
        Ok(k) => k,
        Err(e) => panic!("{what} wrote a keyring that does not parse: {e}"),
    }
}

/// Every key of `before` is in `after` with the same secret: what one seals, the
/// other opens.
fn keeps_keys(before: &Keyring, after: &Keyring, what: &str, except: Option<&str>) {
    let place = Place::global("fuzz");
    for id in before.key_ids().filter(|&id| Some(id) != except) {
        assert!(after.contains(id), "{what} lost key {id:?}");
    }
    if except != Some(before.primary_id()) {
        let Ok(sealed) = before.seal(&place, b"kept") else {
            panic!("sealing failed")
        };
        assert!(
            after.open(&place, &sealed).is_ok(),
            "{what} changed a key's secret"
        );
    }
}

pub fn keyring(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let k = match Keyring::parse(&text, "fuzz") {
        Ok(k) => k,
        Err(e) => {
            let message = e.to_string();
            for secret in secrets_in(&text) {
                assert!(
                    !message.contains(&secret),
                    "the error names a secret: {message}"
                );
            }
            return;
        }
    };
    assert!(k.contains(k.primary_id()));
    let ids: Vec<String> = k.key_ids().map(str::to_string).collect();
    for id in &ids {
        let sealed_like = format!("v1.{id}.AAAA.AAAA");
        assert_eq!(
            sealed_key_id(&sealed_like),
            Some(id.as_str()),
            "key id {id:?}"
        );
    }
    let place = Place::global("fuzz");
    let Ok(sealed) = k.seal(&place, b"round trip") else {
        panic!("sealing failed")
    };
    assert!(matches!(k.open(&place, &sealed), Ok(p) if p.expose() == b"round trip"));

    let make_primary = data.first().is_some_and(|b| b & 1 == 1);
    let (added, new_id) = match edit::add_key(&text, "fuzz", make_primary) {
        Ok(added) => added,
        Err(e) => panic!("add_key refused a keyring that parses: {e}"),
    };
    let added = parse_edit(Ok(added), "add_key");
    keeps_keys(&k, &added, "add_key", None);
    assert_eq!(added.key_ids().count(), ids.len() + 1);
    let primary = if make_primary {
        &new_id
    } else {
        k.primary_id()
    };
    assert_eq!(added.primary_id(), primary);

    for id in &ids {
        let switched = parse_edit(edit::set_primary(&text, "fuzz", id), "set_primary");
        assert_eq!(switched.primary_id(), id);
        keeps_keys(&k, &switched, "set_primary", None);
        let removed = edit::remove_key(&text, "fuzz", id);
        if id == k.primary_id() {
            assert!(removed.is_err(), "remove_key removed the primary");
        } else {
            let removed = parse_edit(removed, "remove_key");
            assert!(!removed.contains(id));
            assert_eq!(removed.key_ids().count(), ids.len() - 1);
            keeps_keys(&k, &removed, "remove_key", Some(id));
        }
    }
    assert!(
        edit::set_primary(&text, "fuzz", "no-such-key").is_err()
            || ids.iter().any(|i| i == "no-such-key")
    );
}
