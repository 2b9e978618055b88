//! How a record travels in a message: its encoding is named in a header, so that a later
//! version can change it without an ingester misreading what an older producer sent.

use async_nats::HeaderMap;

use super::binary;
use super::config::Encoding;
use crate::record::UsageRecord;

/// The header naming a message's encoding.
pub(crate) const ENCODING_HEADER: &str = "Tower-Usage-Encoding";
/// A record as JSON, the crate's own serde form.
pub(crate) const JSON_V1: &str = "json/1";
/// A record in the compact binary form of the `binary` module.
pub(crate) const BIN_V1: &str = "bin/1";

/// The name `encoding` goes by in the header.
pub(crate) fn name(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Json => JSON_V1,
        Encoding::Binary => BIN_V1,
    }
}

/// The record as `encoding` writes it.
pub(crate) fn encode(
    record: &UsageRecord,
    encoding: Encoding,
) -> Result<Vec<u8>, serde_json::Error> {
    match encoding {
        Encoding::Json => serde_json::to_vec(record),
        Encoding::Binary => binary::encode(record),
    }
}

/// The record a message holds, or why it cannot be read.
pub(crate) fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<UsageRecord, String> {
    let encoding = headers
        .and_then(|h| h.get(ENCODING_HEADER))
        .map(|v| v.as_str().to_owned());
    match encoding.as_deref() {
        Some(JSON_V1) => {
            serde_json::from_slice(payload).map_err(|e| format!("bad json/1 record: {e}"))
        }
        Some(BIN_V1) => binary::decode(payload).map_err(|e| format!("bad bin/1 record: {e}")),
        Some(other) => Err(format!("unknown encoding {other:?}")),
        None => Err(format!("no {ENCODING_HEADER} header")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_comes_back_and_a_foreign_message_is_refused() {
        let record = UsageRecord::builder()
            .user("alice")
            .service("chat")
            .metadata(serde_json::json!({"ratio": 0.1 + 0.2}))
            .build();
        for encoding in [Encoding::Json, Encoding::Binary] {
            let mut headers = HeaderMap::new();
            headers.insert(ENCODING_HEADER, name(encoding));
            let payload = encode(&record, encoding).unwrap();
            assert_eq!(decode(Some(&headers), &payload).unwrap(), record);
        }
        let mut headers = HeaderMap::new();
        headers.insert(ENCODING_HEADER, JSON_V1);
        let payload = encode(&record, Encoding::Json).unwrap();
        let mut binary = HeaderMap::new();
        binary.insert(ENCODING_HEADER, BIN_V1);
        assert!(decode(Some(&binary), &payload)
            .unwrap_err()
            .contains("bad bin/1"));

        assert!(decode(None, &payload)
            .unwrap_err()
            .contains("no Tower-Usage-Encoding"));
        let mut other = HeaderMap::new();
        other.insert(ENCODING_HEADER, "cbor/9");
        assert!(decode(Some(&other), &payload)
            .unwrap_err()
            .contains("unknown encoding"));
        assert!(decode(Some(&headers), b"{")
            .unwrap_err()
            .contains("bad json/1"));
    }
}
