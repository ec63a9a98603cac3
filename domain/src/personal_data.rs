//! Personal data in events (PDPO): every field that may hold it is stored sealed under the key
//! of its data subject, so that destroying that key erases the field from a log that refuses
//! DELETE, without touching the log's hashes (crypto-shredding).
//!
//! The domain decides on plaintext and never sees a key: a decision writes personal text
//! [`PersonalText::Unsealed`]; the command service hands every unsealed field to the
//! [`PersonalDataSealer`] port before the events are encoded, and encoding refuses unsealed
//! text, so plaintext cannot reach the log by any path.
//!
//! One data subject per application: its contact and the text written by or about the
//! applicant's people (project summary, contribution, progress reports and their reviews).
//! Its id is derived from the application id, so every decision on the application names the
//! same subject without reading anything.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Whose personal data a sealed field is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DataSubjectId(pub Uuid);

/// The name space of data subjects derived from application ids (UUID v5).
const APPLICATION_SUBJECTS: Uuid = Uuid::from_u128(0x6a1c_52b0_5d8e_4f7a_9e3b_2c41_d07f_aa19);

impl DataSubjectId {
    /// The data subject of an application: the same id for every event of the application.
    pub fn of_application(application_id: &str) -> Self {
        Self(Uuid::new_v5(&APPLICATION_SUBJECTS, application_id.as_bytes()))
    }
}

impl std::fmt::Display for DataSubjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for DataSubjectId {
    type Err = uuid::Error;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(text).map(Self)
    }
}

/// A personal field of an event.
#[derive(Clone, Eq)]
pub enum PersonalText {
    /// Written by a decision, not sealed yet. Never stored: encoding refuses it.
    Unsealed(String),
    /// Sealed under the data subject's key (the sealer's text format); stored as a string.
    Sealed(String),
    /// Stored in plaintext by a schema version from before personal data was sealed, read
    /// through an upcaster; stored as `{"legacy_plaintext": …}` and never written by a decision.
    Legacy(String),
}

impl PersonalText {
    pub fn unsealed(text: impl Into<String>) -> Self {
        Self::Unsealed(text.into())
    }

    /// Whether the text is known to be blank. Sealed text never is: only validated, non-blank
    /// text of the fields whose blankness a rule asks about is sealed.
    pub fn is_blank(&self) -> bool {
        match self {
            Self::Unsealed(text) | Self::Legacy(text) => text.trim().is_empty(),
            Self::Sealed(_) => false,
        }
    }
}

impl PartialEq for PersonalText {
    /// Plaintext equals plaintext whether sealed later or stored before sealing; sealed text
    /// equals only the same sealed text (a fresh nonce each time: sealing the same words twice
    /// gives two texts), and never plaintext.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Sealed(a), Self::Sealed(b)) => a == b,
            (Self::Unsealed(a) | Self::Legacy(a), Self::Unsealed(b) | Self::Legacy(b)) => a == b,
            _ => false,
        }
    }
}

impl std::fmt::Debug for PersonalText {
    // Plaintext stays out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unsealed(text) => write!(f, "Unsealed({} bytes)", text.len()),
            Self::Sealed(text) => write!(f, "Sealed({text})"),
            Self::Legacy(text) => write!(f, "Legacy({} bytes)", text.len()),
        }
    }
}

const LEGACY_KEY: &str = "legacy_plaintext";

impl Serialize for PersonalText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Sealed(text) => serializer.serialize_str(text),
            Self::Legacy(text) => {
                use serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(LEGACY_KEY, text)?;
                map.end()
            }
            Self::Unsealed(_) => Err(serde::ser::Error::custom(
                "personal text must be sealed by its data subject's key before it is stored",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for PersonalText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Sealed(String),
            Legacy { legacy_plaintext: String },
        }
        match Stored::deserialize(deserializer)
            .map_err(|_| D::Error::custom("personal text is sealed text or {\"legacy_plaintext\": …}"))?
        {
            Stored::Sealed(text) => Ok(Self::Sealed(text)),
            Stored::Legacy { legacy_plaintext } => Ok(Self::Legacy(legacy_plaintext)),
        }
    }
}

/// A personal field of an event with whose it is and its name (bound into the seal, so sealed
/// text cannot be moved to another field or subject).
#[derive(Debug)]
pub struct PersonalField<'a> {
    pub subject: DataSubjectId,
    pub field: &'static str,
    pub text: &'a mut PersonalText,
}

/// A field to seal, as the port receives it.
#[derive(Debug, Clone, Copy)]
pub struct ToSeal<'a> {
    pub subject: DataSubjectId,
    pub field: &'static str,
    pub plaintext: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The subject's personal data was erased: nothing more is kept of it.
    #[error("the personal data of data subject {0} has been erased; no more personal data is recorded for it")]
    Erased(DataSubjectId),
    /// No key-encryption key, or the key store cannot be reached.
    #[error("personal data cannot be sealed: {0}")]
    Unavailable(String),
}

/// Seals personal text under its data subject's key (creating the subject's key the first
/// time). Implemented outside the domain, where the keys are.
#[async_trait::async_trait]
pub trait PersonalDataSealer: Send + Sync {
    /// The sealed text of each field, in order.
    async fn seal(&self, fields: &[ToSeal<'_>]) -> Result<Vec<String>, SealError>;
}

/// Seals every unsealed field of `fields` in one call to the sealer.
pub async fn seal_fields(sealer: &dyn PersonalDataSealer, mut fields: Vec<PersonalField<'_>>) -> Result<(), SealError> {
    fields.retain(|field| matches!(field.text, PersonalText::Unsealed(_)));
    if fields.is_empty() {
        return Ok(());
    }
    let sealed = {
        let to_seal: Vec<ToSeal<'_>> = fields
            .iter()
            .map(|field| ToSeal {
                subject: field.subject,
                field: field.field,
                plaintext: match &*field.text {
                    PersonalText::Unsealed(text) => text.as_str(),
                    _ => "",
                },
            })
            .collect();
        sealer.seal(&to_seal).await?
    };
    if sealed.len() != fields.len() {
        return Err(SealError::Unavailable(format!("asked to seal {} fields, sealed {}", fields.len(), sealed.len())));
    }
    for (field, sealed) in fields.into_iter().zip(sealed) {
        *field.text = PersonalText::Sealed(sealed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsealed_text_cannot_be_encoded_and_stored_forms_read_back() {
        assert!(serde_json::to_value(PersonalText::unsealed("Chan Tai Man")).is_err());
        let sealed = PersonalText::Sealed("xc1.AAAA".into());
        assert_eq!(serde_json::to_value(&sealed).ok(), Some(serde_json::json!("xc1.AAAA")));
        let legacy = PersonalText::Legacy("Chan Tai Man".into());
        let stored = serde_json::json!({"legacy_plaintext": "Chan Tai Man"});
        assert_eq!(serde_json::to_value(&legacy).ok(), Some(stored.clone()));
        assert_eq!(serde_json::from_value::<PersonalText>(stored).ok(), Some(legacy));
        assert_eq!(serde_json::from_value::<PersonalText>(serde_json::json!("xc1.AAAA")).ok(), Some(sealed));
        assert!(serde_json::from_value::<PersonalText>(serde_json::json!(7)).is_err());
        assert!(!format!("{:?}", PersonalText::unsealed("Chan Tai Man")).contains("Chan"));
    }

    #[test]
    fn an_application_always_names_the_same_data_subject() {
        assert_eq!(DataSubjectId::of_application("a1"), DataSubjectId::of_application("a1"));
        assert_ne!(DataSubjectId::of_application("a1"), DataSubjectId::of_application("a2"));
    }
}
