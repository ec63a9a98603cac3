//! Signed seals of the log, kept outside the database.
//!
//! The hash chains show that the log is consistent with itself, but whoever can write the
//! database can also recompute them. A seal is a statement signed with an Ed25519 key that
//! is never on the database host: "the log up to position P held N events whose log digest
//! (see [`aisc_adapters::event_hash`]) was D". An auditor who keeps the seal and trusts the
//! public key can later check that the log still reproduces it.
//!
//! The signature covers these bytes (UTF-8, each line ended by `\n`, numbers in decimal, hex
//! in lower case, `sealed_at` exactly as the seal carries it):
//!
//! ```text
//! aisc-log-seal/1
//! algorithm=ed25519
//! position=<position>
//! event_count=<event_count>
//! digest=<64 hex digits>
//! sealed_at=<RFC 3339 time>
//! public_key=<64 hex digits: the raw 32-byte Ed25519 public key>
//! ```

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use aisc_adapters::event_hash::LogDigestValue;
use aisc_domain::event_store::Position;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, KeypairBytes};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The version of the seal's fields and of the bytes it signs.
pub const SEAL_FORMAT: &str = "aisc-log-seal/1";
pub const SEAL_ALGORITHM: &str = "ed25519";

/// Why a key or seal file cannot be used. `File` is about the file system (missing,
/// unreadable, already there); `Invalid` about what a readable file holds.
#[derive(Debug, thiserror::Error)]
pub enum SealFileError {
    #[error("{0}")]
    File(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    KeyGeneration(String),
}

/// A seal as written by `aisc audit seal` and read back by `aisc audit verify --seal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seal {
    pub format: String,
    pub algorithm: String,
    /// The last position covered: every event at or below it, none above.
    pub position: u64,
    pub event_count: u64,
    /// The log digest, hex.
    pub digest: String,
    pub sealed_at: String,
    /// The raw Ed25519 public key that signed, hex.
    pub public_key: String,
    /// The Ed25519 signature of the signed bytes, hex.
    pub signature: String,
}

/// What a seal states, its fields checked and decoded.
#[derive(Debug, Clone)]
pub struct SealStatement {
    pub position: Position,
    pub event_count: u64,
    pub digest: [u8; 32],
    pub sealed_at: String,
    pub public_key: VerifyingKey,
    signature: Signature,
}

/// Why a well-formed seal is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealRejection {
    #[error(
        "the seal was signed by the key {seal_key}, not by the public key given ({given_key}); it proves nothing about this key's seals"
    )]
    SignedByAnotherKey { seal_key: String, given_key: String },
    #[error(
        "its signature does not verify with the public key given: the seal was altered after it was signed, or forged"
    )]
    BadSignature,
}

/// The bytes the signature covers (see the module documentation).
fn signed_bytes(
    position: Position,
    event_count: u64,
    digest: &[u8; 32],
    sealed_at: &str,
    public_key: &VerifyingKey,
) -> Vec<u8> {
    format!(
        "{SEAL_FORMAT}\nalgorithm={SEAL_ALGORITHM}\nposition={}\nevent_count={event_count}\ndigest={}\nsealed_at={sealed_at}\npublic_key={}\n",
        position.0,
        to_hex(digest),
        to_hex(public_key.as_bytes())
    )
    .into_bytes()
}

/// Seals the log up to `position`, whose digest is `digest`, at `now`.
pub fn sign(key: &SigningKey, position: Position, digest: LogDigestValue, now: DateTime<Utc>) -> Seal {
    let sealed_at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let public_key = key.verifying_key();
    let signature = key.sign(&signed_bytes(position, digest.event_count, &digest.digest, &sealed_at, &public_key));
    Seal {
        format: SEAL_FORMAT.to_string(),
        algorithm: SEAL_ALGORITHM.to_string(),
        position: position.0,
        event_count: digest.event_count,
        digest: to_hex(&digest.digest),
        sealed_at,
        public_key: to_hex(public_key.as_bytes()),
        signature: to_hex(&signature.to_bytes()),
    }
}

impl Seal {
    /// Checks the fields' form (not the signature); `source` names the seal in messages.
    pub fn statement(&self, source: &str) -> Result<SealStatement, SealFileError> {
        let invalid = |what: String| SealFileError::Invalid(format!("{source} is not a seal of this version: {what}"));
        if self.format != SEAL_FORMAT {
            return Err(invalid(format!("its format is {:?}, this version reads {SEAL_FORMAT:?}", self.format)));
        }
        if self.algorithm != SEAL_ALGORITHM {
            return Err(invalid(format!("its algorithm is {:?}, not {SEAL_ALGORITHM:?}", self.algorithm)));
        }
        let digest: [u8; 32] = from_hex(&self.digest).ok_or_else(|| invalid("digest is not 64 hex digits".into()))?;
        // Parsed only to be sure it is a time: the signed bytes carry the text as it is.
        DateTime::parse_from_rfc3339(&self.sealed_at)
            .map_err(|error| invalid(format!("sealed_at {:?} is not an RFC 3339 time: {error}", self.sealed_at)))?;
        let key_bytes: [u8; 32] =
            from_hex(&self.public_key).ok_or_else(|| invalid("public_key is not 64 hex digits".into()))?;
        let public_key = VerifyingKey::from_bytes(&key_bytes)
            .map_err(|error| invalid(format!("public_key is not an Ed25519 key: {error}")))?;
        let signature: [u8; 64] =
            from_hex(&self.signature).ok_or_else(|| invalid("signature is not 128 hex digits".into()))?;
        Ok(SealStatement {
            position: Position(self.position),
            event_count: self.event_count,
            digest,
            sealed_at: self.sealed_at.clone(),
            public_key,
            signature: Signature::from_bytes(&signature),
        })
    }
}

impl SealStatement {
    /// Accepts the statement only when `trusted` — the auditor's copy of the public key, not
    /// the one the seal carries — signed exactly these fields.
    pub fn check_signature(&self, trusted: &VerifyingKey) -> Result<(), SealRejection> {
        if self.public_key != *trusted {
            return Err(SealRejection::SignedByAnotherKey {
                seal_key: to_hex(self.public_key.as_bytes()),
                given_key: to_hex(trusted.as_bytes()),
            });
        }
        let message = signed_bytes(self.position, self.event_count, &self.digest, &self.sealed_at, trusted);
        // Strict: refuses the malleable and small-order forms plain verification lets pass.
        trusted.verify_strict(&message, &self.signature).map_err(|_| SealRejection::BadSignature)
    }
}

/// Where the public key of the private key at `private_key` is written: beside it, `.pub`.
pub fn public_key_path_beside(private_key: &Path) -> Result<PathBuf, SealFileError> {
    if private_key.file_name().is_none() {
        return Err(SealFileError::Invalid(format!("{} does not name a file", private_key.display())));
    }
    let public_key = private_key.with_extension("pub");
    if public_key == private_key {
        return Err(SealFileError::Invalid(format!(
            "{} ends in .pub, the name of the public key written beside the private key; name the private key otherwise (seal-key.pem)",
            private_key.display()
        )));
    }
    Ok(public_key)
}

/// The two files `aisc audit keygen` wrote.
#[derive(Debug)]
pub struct KeyFiles {
    pub private_key: PathBuf,
    pub public_key: PathBuf,
    pub public_key_hex: String,
}

/// Creates a new Ed25519 key pair: the private key (PEM, PKCS#8) at `private_key`, readable by
/// its owner only, and the public key (PEM, SPKI) beside it. Neither file may exist already:
/// overwriting a sealing key would orphan every seal it made.
pub fn generate_key_files(private_key: &Path) -> Result<KeyFiles, SealFileError> {
    let public_key = public_key_path_beside(private_key)?;
    let mut seed = Zeroizing::new([0_u8; 32]);
    getrandom::fill(seed.as_mut_slice()).map_err(|error| {
        SealFileError::KeyGeneration(format!("the system's random number generator failed: {error}"))
    })?;
    let signing_key = SigningKey::from_bytes(&seed);
    // PKCS#8 version 1 (RFC 8410), without the public key version 2 may add: the form OpenSSL
    // 3.0 and most other tools read, so the key can be inspected and used with them too.
    let private_pem = KeypairBytes { secret_key: *seed, public_key: None }
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|error| SealFileError::KeyGeneration(format!("cannot encode the private key: {error}")))?;
    let verifying_key = signing_key.verifying_key();
    let public_pem = verifying_key
        .to_public_key_pem(LineEnding::LF)
        .map_err(|error| SealFileError::KeyGeneration(format!("cannot encode the public key: {error}")))?;

    // Claim both names before writing either, so that a refusal leaves nothing behind.
    let mut private_file = create_new(private_key, 0o600)?;
    let mut public_file = match create_new(&public_key, 0o644) {
        Ok(file) => file,
        Err(error) => {
            drop(private_file);
            let _ = std::fs::remove_file(private_key);
            return Err(error);
        }
    };
    let written = write_and_sync(&mut private_file, private_pem.as_bytes(), private_key)
        .and_then(|()| write_and_sync(&mut public_file, public_pem.as_bytes(), &public_key));
    if let Err(error) = written {
        let _ = std::fs::remove_file(private_key);
        let _ = std::fs::remove_file(&public_key);
        return Err(error);
    }
    Ok(KeyFiles {
        private_key: private_key.to_path_buf(),
        public_key,
        public_key_hex: to_hex(verifying_key.as_bytes()),
    })
}

fn create_new(path: &Path, mode: u32) -> Result<File, SealFileError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::AlreadyExists => SealFileError::File(format!(
            "{} already exists; refusing to overwrite a key (move it away or choose another --out)",
            path.display()
        )),
        _ => SealFileError::File(format!("cannot create {}: {error}", path.display())),
    })
}

fn write_and_sync(file: &mut File, bytes: &[u8], path: &Path) -> Result<(), SealFileError> {
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|error| SealFileError::File(format!("cannot write {}: {error}", path.display())))
}

/// The text of the file at `path`; `what` names it in messages.
fn read_text(path: &Path, what: &str) -> Result<Zeroizing<String>, SealFileError> {
    std::fs::read_to_string(path).map(Zeroizing::new).map_err(|error| match error.kind() {
        std::io::ErrorKind::InvalidData => SealFileError::Invalid(format!("{what} {} is not text", path.display())),
        _ => SealFileError::File(format!("cannot read the {what} {}: {error}", path.display())),
    })
}

/// The private key `aisc audit keygen` wrote at `path`.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, SealFileError> {
    let text = read_text(path, "private key file")?;
    if text.contains("PUBLIC KEY-----") {
        return Err(SealFileError::Invalid(format!(
            "{} holds a public key; sealing needs the private key (the file --out of `aisc audit keygen` named)",
            path.display()
        )));
    }
    let key = SigningKey::from_pkcs8_pem(&text).map_err(|error| {
        SealFileError::Invalid(format!(
            "{} is not an Ed25519 private key in PEM (PKCS#8) as `aisc audit keygen` writes it: {error}",
            path.display()
        ))
    })?;
    warn_if_others_can_read(path);
    Ok(key)
}

/// Whoever can read the private key can sign seals; said, not refused, since a secret store
/// may mount it otherwise.
fn warn_if_others_can_read(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path) {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "others than its owner can read the sealing key, and so sign seals; chmod 600 it"
                );
            }
        }
    }
}

/// The public key at `path`, as `aisc audit keygen` wrote it beside the private key.
pub fn read_verifying_key(path: &Path) -> Result<VerifyingKey, SealFileError> {
    let text = read_text(path, "public key file")?;
    if text.contains("PRIVATE KEY-----") {
        return Err(SealFileError::Invalid(format!(
            "{} holds a private key; verifying needs only the public key (the .pub file), and the private key belongs with whoever seals",
            path.display()
        )));
    }
    VerifyingKey::from_public_key_pem(&text).map_err(|error| {
        SealFileError::Invalid(format!(
            "{} is not an Ed25519 public key in PEM (SPKI) as `aisc audit keygen` writes it: {error}",
            path.display()
        ))
    })
}

/// The seal at `path`, its fields checked (not its signature).
pub fn read_seal(path: &Path) -> Result<SealStatement, SealFileError> {
    let text = read_text(path, "seal file")?;
    let seal: Seal = serde_json::from_str(&text).map_err(|error| {
        SealFileError::Invalid(format!("{} is not a seal written by `aisc audit seal`: {error}", path.display()))
    })?;
    seal.statement(&path.display().to_string())
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Exactly `N` bytes from hex (either case), or `None`.
fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut bytes = [0_u8; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from(high * 16 + low).ok()?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn sample_seal(signer: &SigningKey) -> Seal {
        let now = DateTime::parse_from_rfc3339("2026-11-26T08:00:00Z").expect("time").with_timezone(&Utc);
        sign(signer, Position(42 << 20), LogDigestValue { event_count: 7, digest: [9; 32] }, now)
    }

    #[test]
    fn the_signed_bytes_are_the_documented_lines() {
        let signer = key(1);
        let bytes = signed_bytes(Position(5), 3, &[0xab; 32], "2026-11-26T08:00:00Z", &signer.verifying_key());
        let expected = format!(
            "aisc-log-seal/1\nalgorithm=ed25519\nposition=5\nevent_count=3\ndigest={}\nsealed_at=2026-11-26T08:00:00Z\npublic_key={}\n",
            "ab".repeat(32),
            to_hex(signer.verifying_key().as_bytes())
        );
        assert_eq!(String::from_utf8(bytes).expect("utf-8"), expected);
    }

    #[test]
    fn a_seal_verifies_with_its_key_and_no_field_can_change() {
        let signer = key(1);
        let seal = sample_seal(&signer);
        assert_eq!(seal.sealed_at, "2026-11-26T08:00:00Z");
        let statement = seal.statement("seal").expect("well formed");
        assert_eq!(statement.check_signature(&signer.verifying_key()), Ok(()));

        let changed = [
            Seal { position: seal.position - 1, ..seal.clone() },
            Seal { event_count: 6, ..seal.clone() },
            Seal { digest: "0".repeat(64), ..seal.clone() },
            Seal { sealed_at: "2026-11-27T08:00:00Z".into(), ..seal.clone() },
        ];
        for forged in changed {
            let statement = forged.statement("seal").expect("well formed");
            assert_eq!(statement.check_signature(&signer.verifying_key()), Err(SealRejection::BadSignature));
        }
        let other = key(2);
        let rejection = seal.statement("seal").expect("well formed").check_signature(&other.verifying_key());
        assert!(matches!(rejection, Err(SealRejection::SignedByAnotherKey { .. })), "{rejection:?}");
        // A seal re-signed by another key and carrying that key still fails against the trusted one.
        let resigned = sample_seal(&other).statement("seal").expect("well formed");
        assert!(resigned.check_signature(&signer.verifying_key()).is_err());
    }

    #[test]
    fn malformed_seals_are_refused_before_any_signature_check() {
        let seal = sample_seal(&key(1));
        for malformed in [
            Seal { format: "aisc-log-seal/9".into(), ..seal.clone() },
            Seal { algorithm: "rsa".into(), ..seal.clone() },
            Seal { digest: "xy".repeat(32), ..seal.clone() },
            Seal { signature: "00".into(), ..seal.clone() },
            Seal { sealed_at: "yesterday\nposition=1".into(), ..seal.clone() },
        ] {
            assert!(matches!(malformed.statement("seal"), Err(SealFileError::Invalid(_))), "{malformed:?}");
        }
    }

    #[test]
    fn hex_round_trips_and_refuses_wrong_lengths() {
        let bytes: [u8; 4] = [0, 0x0f, 0xa0, 0xff];
        assert_eq!(to_hex(&bytes), "000fa0ff");
        assert_eq!(from_hex::<4>("000fa0ff"), Some(bytes));
        assert_eq!(from_hex::<4>("000FA0FF"), Some(bytes));
        assert_eq!(from_hex::<4>("000fa0f"), None);
        assert_eq!(from_hex::<4>("000fa0fg"), None);
        assert_eq!(from_hex::<2>("é1"), None);
    }

    #[test]
    fn the_public_key_goes_beside_the_private_key() {
        assert_eq!(
            public_key_path_beside(Path::new("keys/seal-key.pem")).expect("path"),
            Path::new("keys/seal-key.pub")
        );
        assert_eq!(public_key_path_beside(Path::new("seal-key")).expect("path"), Path::new("seal-key.pub"));
        assert!(public_key_path_beside(Path::new("seal-key.pub")).is_err());
    }
}
