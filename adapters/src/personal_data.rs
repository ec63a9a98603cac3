//! Personal data sealed per data subject, so that it can be erased from a log that never
//! forgets (crypto-shredding). Each data subject has a random 256-bit key; each personal field
//! is sealed under it with XChaCha20-Poly1305, bound to its subject and field name; the keys
//! are kept in `data_subject_keys`, sealed under the key-encryption key (KEK) read from the
//! file `AISC_KEK_FILE` names — never stored in the database. Erasing a subject overwrites its
//! key with NULL: the ciphertext stays in the log, its hashes and seals intact, and nothing can
//! open it again. Rotating the KEK re-wraps every key and leaves the log untouched.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use aisc_domain::personal_data::{DataSubjectId, PersonalDataSealer, PersonalText, SealError, ToSeal};
use aisc_domain::subsidy::application::PERSONAL_EVENT_TYPES;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;
use zeroize::Zeroizing;

const NONCE_BYTES: usize = 24;
/// The prefix of a sealed field's text: the format's version.
const SEALED_PREFIX: &str = "xc1.";

#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error(
        "AISC_KEK_FILE names {path}, which does not exist; create the key-encryption key with `aisc privacy keygen --out {path}` (and keep a copy where the database's administrators cannot read it)"
    )]
    Missing { path: PathBuf },
    #[error("cannot read the key-encryption key at {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error(
        "{path} does not hold a key-encryption key: {reason}; it holds 64 hex digits, as `aisc privacy keygen` writes"
    )]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "the key-encryption key in {path} (id {given}) is not the one the data subjects' keys are wrapped with (id {stored}); give the right AISC_KEK_FILE, or finish a rotation with `aisc privacy rotate-kek`"
    )]
    Wrong { path: PathBuf, given: String, stored: String },
    #[error(
        "{path} already exists; a key-encryption key is never overwritten (the keys wrapped with it would be lost)"
    )]
    Exists { path: PathBuf },
}

/// The key-encryption key: 32 bytes from a file the operator keeps.
pub struct KeyEncryptionKey {
    path: PathBuf,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyEncryptionKey(id {}, from {})", self.id(), self.path.display())
    }
}

impl KeyEncryptionKey {
    /// Reads the KEK from `path`: 64 hex digits, surrounding white space ignored.
    pub fn load(path: &Path) -> Result<Self, KekError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => Zeroizing::new(text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(KekError::Missing { path: path.to_path_buf() });
            }
            Err(error) => return Err(KekError::Unreadable { path: path.to_path_buf(), reason: error.to_string() }),
        };
        let malformed = |reason: &str| KekError::Malformed { path: path.to_path_buf(), reason: reason.to_string() };
        let digits = text.trim();
        if digits.len() != 64 {
            return Err(malformed(&format!("{} characters", digits.len())));
        }
        // from_str_radix alone would take a sign ("+f"): only hex digits are a key.
        if !digits.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(malformed("a character that is not a hex digit"));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        for (index, pair) in digits.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(pair).map_err(|_| malformed("a character that is not a hex digit"))?;
            key[index] = u8::from_str_radix(hex, 16).map_err(|_| malformed("a character that is not a hex digit"))?;
        }
        if key.iter().all(|byte| *byte == 0) {
            return Err(malformed("all zeros"));
        }
        Ok(Self { path: path.to_path_buf(), key })
    }

    /// Writes a new random KEK to `path` (mode 0600), never over an existing file.
    pub fn generate(path: &Path) -> Result<Self, KekError> {
        use std::io::Write;
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&key);
        let hex = Zeroizing::new(bytes.iter().map(|byte| format!("{byte:02x}")).collect::<String>());
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|error| match error.kind() {
            std::io::ErrorKind::AlreadyExists => KekError::Exists { path: path.to_path_buf() },
            _ => KekError::Unreadable { path: path.to_path_buf(), reason: error.to_string() },
        })?;
        file.write_all(format!("{}\n", hex.as_str()).as_bytes())
            .map_err(|error| KekError::Unreadable { path: path.to_path_buf(), reason: error.to_string() })?;
        Ok(Self { path: path.to_path_buf(), key: bytes })
    }

    /// Names the KEK without revealing it: 16 hex digits of SHA-256 over a tag and the key.
    pub fn id(&self) -> String {
        let digest = Sha256::new().chain_update(b"aisc-kek-id/1").chain_update(self.key.as_slice()).finalize();
        digest.iter().take(8).map(|byte| format!("{byte:02x}")).collect()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        cipher(&self.key)
    }

    fn wrap(&self, subject: Uuid, key: &[u8; 32]) -> Result<Vec<u8>, VaultError> {
        seal_bytes(&self.cipher(), key, &wrap_context(subject)).ok_or(VaultError::TooLong)
    }

    fn unwrap(&self, subject: Uuid, wrapped: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
        let opened = Zeroizing::new(open_bytes(&self.cipher(), wrapped, &wrap_context(subject))?);
        let mut key = Zeroizing::new([0u8; 32]);
        (opened.len() == 32).then(|| key.copy_from_slice(&opened))?;
        Some(key)
    }
}

fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&Key::from(*key))
}

fn wrap_context(subject: Uuid) -> Vec<u8> {
    format!("aisc-subject-key/1:{subject}").into_bytes()
}

fn field_context(subject: Uuid, field: &str) -> Vec<u8> {
    format!("aisc-personal/1:{subject}:{field}").into_bytes()
}

/// `nonce || ciphertext-and-tag`, with a fresh random nonce; `None` only past the cipher's
/// limit (some 256 GiB of plaintext).
fn seal_bytes(cipher: &XChaCha20Poly1305, plaintext: &[u8], context: &[u8]) -> Option<Vec<u8>> {
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = cipher.encrypt(&nonce, Payload { msg: plaintext, aad: context }).ok()?;
    let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Some(out)
}

fn open_bytes(cipher: &XChaCha20Poly1305, sealed: &[u8], context: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_BYTES + 16 {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE_BYTES);
    let nonce = XNonce::from(<[u8; NONCE_BYTES]>::try_from(nonce).ok()?);
    cipher.decrypt(&nonce, Payload { msg: body, aad: context }).ok()
}

/// Opens `sealed` (the subject's `field`) with the subject's key.
fn open_sealed(key: &[u8; 32], subject: Uuid, field: &str, sealed: &str) -> Result<Opened, VaultError> {
    let tampered = || VaultError::Tampered { subject, field: field.to_string() };
    let bytes =
        sealed.strip_prefix(SEALED_PREFIX).and_then(|text| URL_SAFE_NO_PAD.decode(text).ok()).ok_or_else(tampered)?;
    let opened = open_bytes(&cipher(key), &bytes, &field_context(subject, field)).ok_or_else(tampered)?;
    String::from_utf8(opened).map(Opened::Text).map_err(|_| tampered())
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no data subject {0} is known")]
    UnknownSubject(Uuid),
    #[error("the data subject {0} has been erased; nothing more is sealed under its key")]
    Erased(Uuid),
    #[error("the key of data subject {subject} is wrapped under another key-encryption key (id {stored}, not {given})")]
    OtherKek { subject: Uuid, stored: String, given: String },
    #[error(
        "the key of data subject {0} does not open with the key-encryption key: it was altered, or the KEK is wrong"
    )]
    KeyDoesNotOpen(Uuid),
    #[error("a sealed {field} of data subject {subject} does not open: it was altered or is not sealed text")]
    Tampered { subject: Uuid, field: String },
    #[error("a personal field is too long to seal")]
    TooLong,
    #[error("key store failure: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Kek(#[from] KekError),
}

/// A sealed field, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Text(String),
    /// The subject was erased: the field can never be read again.
    Erased,
}

/// What erasing a subject did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erasure {
    Erased,
    AlreadyErased,
    Unknown,
}

/// The keys of data subjects, opened with the KEK.
pub struct Vault {
    pool: PgPool,
    kek: KeyEncryptionKey,
}

impl Vault {
    pub fn new(pool: PgPool, kek: KeyEncryptionKey) -> Self {
        Self { pool, kek }
    }

    /// The database the keys are kept in.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn kek_id(&self) -> String {
        self.kek.id()
    }

    /// Refuses a KEK that is not the one the stored keys are wrapped with (a clear error at
    /// start-up rather than fields that will not open later).
    pub async fn check(&self) -> Result<(), VaultError> {
        let stored: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT kek_id FROM data_subject_keys WHERE wrapped_key IS NOT NULL ORDER BY kek_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let given = self.kek.id();
        if let Some(other) = stored.into_iter().find(|id| *id != given) {
            return Err(VaultError::Kek(KekError::Wrong { path: self.kek.path.clone(), given, stored: other }));
        }
        let sample: Option<(Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT data_subject_id, wrapped_key FROM data_subject_keys WHERE wrapped_key IS NOT NULL LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        if let Some((subject, wrapped)) = sample
            && self.kek.unwrap(subject, &wrapped).is_none()
        {
            return Err(VaultError::KeyDoesNotOpen(subject));
        }
        Ok(())
    }

    /// A new data subject with a fresh key.
    pub async fn create_subject(&self) -> Result<Uuid, VaultError> {
        let subject = Uuid::new_v4();
        self.ensure_subject(subject).await?;
        Ok(subject)
    }

    /// Gives `subject` a fresh key unless it has one (or had one: an erased subject is never
    /// given a key again).
    pub async fn ensure_subject(&self, subject: Uuid) -> Result<(), VaultError> {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&key);
        sqlx::query(
            "INSERT INTO data_subject_keys (data_subject_id, kek_id, wrapped_key) VALUES ($1, $2, $3) \
             ON CONFLICT (data_subject_id) DO NOTHING",
        )
        .bind(subject)
        .bind(self.kek.id())
        .bind(self.kek.wrap(subject, &bytes)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Opens several fields of one subject with one read of its key: plaintext stored before
    /// sealing as it is, sealed text with the key (each [`Opened::Erased`] once erased).
    pub async fn open_all(
        &self,
        subject: Option<DataSubjectId>,
        fields: &[(&str, &PersonalText)],
    ) -> Result<Vec<Opened>, VaultError> {
        let needs_key = fields.iter().any(|(_, text)| matches!(text, PersonalText::Sealed(_)));
        let key = match (needs_key, subject) {
            (false, _) => None,
            (true, Some(subject)) => Some(self.key(subject.0).await?),
            (true, None) => {
                let field = fields.first().map_or("", |(field, _)| *field);
                return Err(VaultError::Tampered { subject: Uuid::nil(), field: field.to_string() });
            }
        };
        fields
            .iter()
            .map(|(field, text)| match (text, &key, subject) {
                (PersonalText::Unsealed(plain) | PersonalText::Legacy(plain), _, _) => Ok(Opened::Text(plain.clone())),
                (PersonalText::Sealed(_), Some(None), _) => Ok(Opened::Erased),
                (PersonalText::Sealed(sealed), Some(Some(key)), Some(subject)) => {
                    open_sealed(key, subject.0, field, sealed)
                }
                (PersonalText::Sealed(_), _, _) => {
                    Err(VaultError::Tampered { subject: Uuid::nil(), field: (*field).to_string() })
                }
            })
            .collect()
    }

    /// Whether the subject's key was destroyed (false for a subject never given one).
    pub async fn is_erased(&self, subject: Uuid) -> Result<bool, VaultError> {
        let erased: Option<bool> =
            sqlx::query_scalar("SELECT wrapped_key IS NULL FROM data_subject_keys WHERE data_subject_id = $1")
                .bind(subject)
                .fetch_optional(&self.pool)
                .await?;
        Ok(erased.unwrap_or(false))
    }

    /// The subject's key, made and stored with the subject's first sealed field; `None` once
    /// erased (an erased subject is never given a key again). One round trip either way: a
    /// submission's new subject and an amendment's known one.
    async fn key_or_new(&self, subject: Uuid) -> Result<Option<Zeroizing<[u8; 32]>>, VaultError> {
        let fresh = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&fresh);
        // The outer SELECT sees the table as it was before the INSERT: the existing row when the
        // INSERT found one, the inserted one otherwise.
        let row: Option<(String, Option<Vec<u8>>)> = sqlx::query_as(
            "WITH inserted AS ( \
                 INSERT INTO data_subject_keys (data_subject_id, kek_id, wrapped_key) VALUES ($1, $2, $3) \
                 ON CONFLICT (data_subject_id) DO NOTHING RETURNING kek_id, wrapped_key) \
             SELECT kek_id, wrapped_key FROM inserted \
             UNION ALL \
             SELECT kek_id, wrapped_key FROM data_subject_keys WHERE data_subject_id = $1",
        )
        .bind(subject)
        .bind(self.kek.id())
        .bind(self.kek.wrap(subject, &bytes)?)
        .fetch_optional(&self.pool)
        .await?;
        self.unwrapped(subject, row)
    }

    /// The subject's key; `None` once erased.
    async fn key(&self, subject: Uuid) -> Result<Option<Zeroizing<[u8; 32]>>, VaultError> {
        let row: Option<(String, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT kek_id, wrapped_key FROM data_subject_keys WHERE data_subject_id = $1")
                .bind(subject)
                .fetch_optional(&self.pool)
                .await?;
        self.unwrapped(subject, row)
    }

    /// The key in a row of `data_subject_keys` (its KEK id and wrapped key), opened with the KEK;
    /// `None` once erased.
    fn unwrapped(
        &self,
        subject: Uuid,
        row: Option<(String, Option<Vec<u8>>)>,
    ) -> Result<Option<Zeroizing<[u8; 32]>>, VaultError> {
        let Some((kek_id, wrapped)) = row else { return Err(VaultError::UnknownSubject(subject)) };
        let Some(wrapped) = wrapped else { return Ok(None) };
        if kek_id != self.kek.id() {
            return Err(VaultError::OtherKek { subject, stored: kek_id, given: self.kek.id() });
        }
        self.kek.unwrap(subject, &wrapped).map(Some).ok_or(VaultError::KeyDoesNotOpen(subject))
    }

    /// Seals `plaintext` as the subject's `field`: `xc1.` and the nonce and ciphertext in
    /// base64url. The field's name is bound in, so sealed text cannot be moved to another field
    /// or subject.
    pub async fn seal(&self, subject: Uuid, field: &str, plaintext: &str) -> Result<String, VaultError> {
        let key = self.key(subject).await?.ok_or(VaultError::Erased(subject))?;
        let cipher = cipher(&key);
        let sealed =
            seal_bytes(&cipher, plaintext.as_bytes(), &field_context(subject, field)).ok_or(VaultError::TooLong)?;
        Ok(format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed)))
    }

    /// Opens a field sealed by [`Vault::seal`]; [`Opened::Erased`] once the subject is erased.
    pub async fn open(&self, subject: Uuid, field: &str, sealed: &str) -> Result<Opened, VaultError> {
        let Some(key) = self.key(subject).await? else { return Ok(Opened::Erased) };
        open_sealed(&key, subject, field, sealed)
    }

    /// Destroys the subject's key, recording who, when and why (no personal data).
    pub async fn erase(&self, subject: Uuid, erased_by: &str, reason: &str) -> Result<Erasure, VaultError> {
        let updated = sqlx::query(
            "UPDATE data_subject_keys SET wrapped_key = NULL, erased_at = now(), erased_by = $2, erasure_reason = $3 \
             WHERE data_subject_id = $1 AND wrapped_key IS NOT NULL",
        )
        .bind(subject)
        .bind(erased_by)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 1 {
            return Ok(Erasure::Erased);
        }
        let known: Option<Uuid> =
            sqlx::query_scalar("SELECT data_subject_id FROM data_subject_keys WHERE data_subject_id = $1")
                .bind(subject)
                .fetch_optional(&self.pool)
                .await?;
        Ok(if known.is_some() { Erasure::AlreadyErased } else { Erasure::Unknown })
    }
}

/// The command service's sealer: every personal field a decision writes is sealed under its
/// subject's key, the key created with the subject's first field.
#[async_trait::async_trait]
impl PersonalDataSealer for Vault {
    async fn seal(&self, fields: &[ToSeal<'_>]) -> Result<Vec<String>, SealError> {
        let unavailable = |error: VaultError| SealError::Unavailable(error.to_string());
        let mut ciphers: HashMap<Uuid, XChaCha20Poly1305> = HashMap::new();
        for field in fields {
            let subject = field.subject.0;
            if ciphers.contains_key(&subject) {
                continue;
            }
            let key = self.key_or_new(subject).await.map_err(unavailable)?.ok_or(SealError::Erased(field.subject))?;
            ciphers.insert(subject, cipher(&key));
        }
        fields
            .iter()
            .map(|field| {
                let cipher = &ciphers[&field.subject.0];
                seal_bytes(cipher, field.plaintext.as_bytes(), &field_context(field.subject.0, field.field))
                    .map(|sealed| format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed)))
                    .ok_or_else(|| unavailable(VaultError::TooLong))
            })
            .collect()
    }
}

/// Wraps every key under `old` again under `new`, in one transaction: either all keys move to
/// the new KEK or none. The log is not touched (the fields stay sealed under the same subject
/// keys). Returns how many keys were re-wrapped; keys under neither KEK stop the rotation.
pub async fn rotate_kek(pool: &PgPool, old: &KeyEncryptionKey, new: &KeyEncryptionKey) -> Result<u64, VaultError> {
    let mut transaction = pool.begin().await?;
    let rows: Vec<(Uuid, String, Vec<u8>)> = sqlx::query_as(
        "SELECT data_subject_id, kek_id, wrapped_key FROM data_subject_keys WHERE wrapped_key IS NOT NULL \
         ORDER BY data_subject_id FOR UPDATE",
    )
    .fetch_all(&mut *transaction)
    .await?;
    let (old_id, new_id) = (old.id(), new.id());
    let mut rewrapped = 0;
    for (subject, kek_id, wrapped) in rows {
        if kek_id == new_id {
            continue;
        }
        if kek_id != old_id {
            return Err(VaultError::OtherKek { subject, stored: kek_id, given: old_id });
        }
        let key = old.unwrap(subject, &wrapped).ok_or(VaultError::KeyDoesNotOpen(subject))?;
        sqlx::query("UPDATE data_subject_keys SET kek_id = $2, wrapped_key = $3 WHERE data_subject_id = $1")
            .bind(subject)
            .bind(&new_id)
            .bind(new.wrap(subject, &key)?)
            .execute(&mut *transaction)
            .await?;
        rewrapped += 1;
    }
    transaction.commit().await?;
    Ok(rewrapped)
}

/// Of `streams` (application streams), those holding personal fields stored in plaintext
/// before sealing: an event of a personal type that names no data subject. Erasing a key cannot
/// reach that text; the log must first move to a new generation (`aisc privacy reencrypt-log`).
pub async fn streams_holding_plaintext(pool: &PgPool, streams: &[String]) -> Result<HashSet<String>, sqlx::Error> {
    if streams.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT stream_id FROM events \
          WHERE stream_id = ANY($1) AND event_type = ANY($2) AND data->>'data_subject_id' IS NULL",
    )
    .bind(streams)
    .bind(PERSONAL_EVENT_TYPES.as_slice())
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The stream whose events name `subject` (its application's), if any event does.
pub async fn stream_of_subject(pool: &PgPool, subject: DataSubjectId) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT stream_id FROM events WHERE event_type = ANY($1) AND data->>'data_subject_id' = $2 LIMIT 1",
    )
    .bind(PERSONAL_EVENT_TYPES.as_slice())
    .bind(subject.0.to_string())
    .fetch_optional(pool)
    .await
}

/// A data subject's key as a data access request reports it: whether it is held (or was
/// erased), when it was made, and who erased it, when and why.
pub type KeyRecord = (bool, DateTime<Utc>, Option<DateTime<Utc>>, Option<String>, Option<String>);

/// The record of `subject`'s key, if one was ever made.
pub async fn key_record(pool: &PgPool, subject: DataSubjectId) -> Result<Option<KeyRecord>, sqlx::Error> {
    sqlx::query_as(
        "SELECT wrapped_key IS NOT NULL, created_at, erased_at, erased_by, erasure_reason \
         FROM data_subject_keys WHERE data_subject_id = $1",
    )
    .bind(subject.0)
    .fetch_optional(pool)
    .await
}

/// An event carrying personal fields: position, stream, version, id, type, schema version,
/// data and recorded time.
pub type PersonalEventRow = (i64, String, i64, Uuid, String, i32, serde_json::Value, DateTime<Utc>);

/// Every event naming `subject`, with the events of the same application stored in plaintext
/// before sealing (they name no subject, but hold the same person's data), in log order. No
/// index serves `data->>'data_subject_id'`: a request is rare and answered from one scan of the
/// personal event types.
pub async fn personal_events_of(pool: &PgPool, subject: DataSubjectId) -> Result<Vec<PersonalEventRow>, sqlx::Error> {
    let mut rows: Vec<PersonalEventRow> = sqlx::query_as(
        "SELECT global_position, stream_id, stream_version, event_id, event_type, schema_version, data, recorded_at \
         FROM events WHERE event_type = ANY($1) AND data->>'data_subject_id' = $2 ORDER BY global_position",
    )
    .bind(PERSONAL_EVENT_TYPES.as_slice())
    .bind(subject.0.to_string())
    .fetch_all(pool)
    .await?;
    if let Some(stream) = rows.first().map(|row| row.1.clone()) {
        let legacy: Vec<PersonalEventRow> = sqlx::query_as(
            "SELECT global_position, stream_id, stream_version, event_id, event_type, schema_version, data, recorded_at \
             FROM events WHERE stream_id = $1 AND event_type = ANY($2) AND data->>'data_subject_id' IS NULL",
        )
        .bind(&stream)
        .bind(PERSONAL_EVENT_TYPES.as_slice())
        .fetch_all(pool)
        .await?;
        rows.extend(legacy);
        rows.sort_by_key(|row| row.0);
    }
    Ok(rows)
}

/// Seals `plaintext` as the subject's `field` under a fresh random key that is dropped at
/// once, so the text can never be read again: for plaintext that must be stored in sealed form
/// but belongs to an erased subject (met when a log written before sealing is copied into a
/// new generation, `aisc privacy reencrypt-log`). The subject's own key, erased, is not touched.
pub fn shred(subject: Uuid, field: &str, plaintext: &str) -> Result<String, VaultError> {
    let generated = XChaCha20Poly1305::generate_key(&mut OsRng);
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&generated);
    let sealed =
        seal_bytes(&cipher(&key), plaintext.as_bytes(), &field_context(subject, field)).ok_or(VaultError::TooLong)?;
    Ok(format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(byte: u8) -> KeyEncryptionKey {
        KeyEncryptionKey { path: PathBuf::from("test"), key: Zeroizing::new([byte; 32]) }
    }

    #[test]
    fn keys_wrap_and_open_only_with_their_kek_and_subject() {
        let (first, second) = (kek(1), kek(2));
        let subject = Uuid::new_v4();
        let key = [7u8; 32];
        let wrapped = first.wrap(subject, &key).expect("wrap");
        assert_eq!(wrapped.len(), 24 + 32 + 16);
        assert_eq!(first.unwrap(subject, &wrapped).as_deref().map(|k| k.to_vec()), Some(key.to_vec()));
        assert!(second.unwrap(subject, &wrapped).is_none(), "another KEK");
        assert!(first.unwrap(Uuid::new_v4(), &wrapped).is_none(), "another subject's row");
        assert_ne!(first.wrap(subject, &key).expect("wrap"), wrapped, "a fresh nonce each time");
        assert_ne!(first.id(), second.id());
        assert_eq!(first.id().len(), 16);
    }

    #[test]
    fn fields_open_only_as_the_field_and_subject_they_were_sealed_for() {
        let cipher = cipher(&[9u8; 32]);
        let subject = Uuid::new_v4();
        let sealed = seal_bytes(&cipher, b"Chan Tai Man", &field_context(subject, "contact.name")).expect("seal");
        assert_eq!(
            open_bytes(&cipher, &sealed, &field_context(subject, "contact.name")),
            Some(b"Chan Tai Man".to_vec())
        );
        assert_eq!(open_bytes(&cipher, &sealed, &field_context(subject, "contact.email")), None);
        let mut altered = sealed.clone();
        if let Some(last) = altered.last_mut() {
            *last ^= 1;
        }
        assert_eq!(open_bytes(&cipher, &altered, &field_context(subject, "contact.name")), None);
        assert_eq!(open_bytes(&cipher, &sealed[..10], &field_context(subject, "contact.name")), None);
    }

    #[test]
    fn a_kek_file_holds_64_hex_digits_and_is_never_overwritten() {
        let directory = std::env::temp_dir().join(format!("aisc-kek-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&directory).expect("directory");
        let path = directory.join("kek");
        assert!(matches!(KeyEncryptionKey::load(&path), Err(KekError::Missing { .. })));
        let written = KeyEncryptionKey::generate(&path).expect("generate");
        assert_eq!(KeyEncryptionKey::load(&path).expect("load").id(), written.id());
        assert!(matches!(KeyEncryptionKey::generate(&path), Err(KekError::Exists { .. })));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let short = directory.join("short");
        std::fs::write(&short, "abcd").expect("write");
        let error = KeyEncryptionKey::load(&short).expect_err("too short").to_string();
        assert!(error.contains("64 hex digits"), "{error}");
        std::fs::write(&short, "zz".repeat(32)).expect("write");
        assert!(matches!(KeyEncryptionKey::load(&short), Err(KekError::Malformed { .. })));
        std::fs::write(&short, "+f".repeat(32)).expect("write");
        assert!(matches!(KeyEncryptionKey::load(&short), Err(KekError::Malformed { .. })), "a sign is not a digit");
        std::fs::write(&short, "00".repeat(32)).expect("write");
        assert!(matches!(KeyEncryptionKey::load(&short), Err(KekError::Malformed { .. })));
        let _ = std::fs::remove_dir_all(&directory);
    }
}
