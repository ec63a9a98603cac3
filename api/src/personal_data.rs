//! Personal data as staff read it: the sealed fields of an application opened with its data
//! subject's key, or null once the subject is erased. Only the one-application view opens
//! them; lists, exports, the event feed and the audit export carry no plaintext (the feed and
//! the export keep the ciphertext the log's hashes cover).

use aisc_adapters::personal_data::{Opened, Vault};
use aisc_domain::subsidy::application::ApplicationState;
use serde_json::Value;

use crate::problem::ApiError;

/// `state` as JSON with its personal fields opened (null once erased), naming its data
/// subject and whether it was erased.
pub async fn opened_application(state: &ApplicationState, vault: &Vault) -> Result<Value, ApiError> {
    let mut json = serde_json::to_value(state).map_err(ApiError::internal)?;
    let mut erased = false;
    if let Some(details) = &state.submission {
        let texts = details.personal_texts();
        let opened = vault.open_all(state.data_subject_id, &texts).await.map_err(ApiError::internal)?;
        for ((field, _), opened) in texts.iter().zip(opened) {
            let value = match opened {
                Opened::Text(text) => Value::String(text),
                Opened::Erased => {
                    erased = true;
                    Value::Null
                }
            };
            if let Some(slot) = field_mut(&mut json["submission"], field) {
                *slot = value;
            }
        }
    }
    if let Some(object) = json.as_object_mut() {
        object.insert("personal_data_erased".into(), Value::Bool(erased));
    }
    Ok(json)
}

/// The value at a dotted path (`contact.name`) of a JSON object.
fn field_mut<'a>(value: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    path.split('.').try_fold(value, |value, key| value.get_mut(key))
}
