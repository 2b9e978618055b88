//! The body of a `PUT` that creates or replaces something named in its path.

use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The body as a `T` (a `what`: "budget", "rule") named `name`: a `name` in the body
/// must be the same, and may be left out.
pub(crate) fn named_body<T: DeserializeOwned>(
    what: &str,
    name: &str,
    body: &[u8],
) -> Result<T, ApiError> {
    let bad = |why: String| ApiError::BadBody(why);
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| bad(format!("the body must be a JSON object (a {what})")))?;
    match object.get("name") {
        None => {
            object.insert("name".to_owned(), name.into());
        }
        Some(given) if given.as_str() == Some(name) => {}
        Some(given) => {
            return Err(bad(format!(
                "the body names the {what} {given}, the path {name:?}"
            )))
        }
    }
    serde_json::from_value(value).map_err(|e| bad(format!("not a {what}: {e}")))
}
