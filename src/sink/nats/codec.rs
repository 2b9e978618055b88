//! How records travel in a message: the encoding is named in a header, so that a later
//! version can change it without an ingester misreading what an older producer sent.
//!
//! A message holds one record (`json/1`, `bin/1`) or several packed together
//! (`json-lines/1`, `bin-seq/1`), with their number in a second header.

use async_nats::HeaderMap;

use super::binary;
use super::config::Encoding;
use crate::record::UsageRecord;

/// The header naming a message's encoding.
pub(crate) const ENCODING_HEADER: &str = "Tower-Usage-Encoding";
/// The header giving the number of records a packed message holds.
pub(crate) const RECORDS_HEADER: &str = "Tower-Usage-Records";
/// A record as JSON, the crate's own serde form.
pub(crate) const JSON_V1: &str = "json/1";
/// A record in the compact binary form of the `binary` module.
pub(crate) const BIN_V1: &str = "bin/1";
/// Records as `json/1`, one a line (serde's JSON never holds a raw line break).
pub(crate) const JSON_LINES_V1: &str = "json-lines/1";
/// Records as `bin/1`, each after its length as a varint.
pub(crate) const BIN_SEQ_V1: &str = "bin-seq/1";

/// The name a message of `records` records in `encoding` goes by in the header.
pub(crate) fn name(encoding: Encoding, records: usize) -> &'static str {
    match (encoding, records > 1) {
        (Encoding::Json, false) => JSON_V1,
        (Encoding::Binary, false) => BIN_V1,
        (Encoding::Json, true) => JSON_LINES_V1,
        (Encoding::Binary, true) => BIN_SEQ_V1,
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

/// The payload and headers of one message holding `encoded` (records as [`encode`]
/// wrote them in `encoding`; at least one). A lone record's bytes are taken, not copied.
pub(crate) fn message(encoded: &mut [Vec<u8>], encoding: Encoding) -> (Vec<u8>, HeaderMap) {
    let mut headers = HeaderMap::new();
    headers.insert(ENCODING_HEADER, name(encoding, encoded.len()));
    if let [one] = encoded {
        return (std::mem::take(one), headers);
    }
    headers.insert(RECORDS_HEADER, encoded.len().to_string().as_str());
    let mut payload = Vec::with_capacity(encoded.iter().map(|e| e.len() + 3).sum());
    for record in encoded.iter() {
        match encoding {
            Encoding::Json => {
                payload.extend_from_slice(record);
                payload.push(b'\n');
            }
            Encoding::Binary => binary::frame(&mut payload, record),
        }
    }
    (payload, headers)
}

/// The records a message holds, or why it cannot be read: a message is read whole or
/// not at all.
pub(crate) fn decode(
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<Vec<UsageRecord>, String> {
    let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
    let records = match header(ENCODING_HEADER) {
        Some(JSON_V1) => {
            return serde_json::from_slice(payload)
                .map(|record| vec![record])
                .map_err(|e| format!("bad json/1 record: {e}"));
        }
        Some(BIN_V1) => {
            return binary::decode(payload)
                .map(|record| vec![record])
                .map_err(|e| format!("bad bin/1 record: {e}"));
        }
        Some(JSON_LINES_V1) => payload
            .strip_suffix(b"\n")
            .unwrap_or(payload)
            .split(|b| *b == b'\n')
            .map(serde_json::from_slice)
            .collect::<Result<Vec<UsageRecord>, _>>()
            .map_err(|e| format!("bad json-lines/1 record: {e}"))?,
        Some(BIN_SEQ_V1) => {
            binary::decode_framed(payload).map_err(|e| format!("bad bin-seq/1 message: {e}"))?
        }
        Some(other) => return Err(format!("unknown encoding {other:?}")),
        None => return Err(format!("no {ENCODING_HEADER} header")),
    };
    // The count guards against a payload cut between two records.
    let count = header(RECORDS_HEADER).and_then(|n| n.parse::<usize>().ok());
    if count != Some(records.len()) {
        return Err(format!(
            "{} records where the {RECORDS_HEADER} header says {count:?}",
            records.len()
        ));
    }
    Ok(records)
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
            headers.insert(ENCODING_HEADER, name(encoding, 1));
            let payload = encode(&record, encoding).unwrap();
            assert_eq!(
                decode(Some(&headers), &payload).unwrap(),
                std::slice::from_ref(&record)
            );
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

    #[test]
    fn packed_records_come_back_and_a_wrong_count_is_refused() {
        let records: Vec<UsageRecord> = (0..3)
            .map(|i| {
                UsageRecord::builder()
                    .user(format!("user {i}\nwith a line break"))
                    .build()
            })
            .collect();
        for encoding in [Encoding::Json, Encoding::Binary] {
            let mut encoded: Vec<Vec<u8>> = records
                .iter()
                .map(|r| encode(r, encoding).unwrap())
                .collect();
            let first = encoded[0].clone();
            let (payload, headers) = message(&mut encoded, encoding);
            assert_eq!(decode(Some(&headers), &payload).unwrap(), records);
            let (one, single) = message(&mut encoded[..1], encoding);
            assert_eq!(one, first);
            assert_eq!(decode(Some(&single), &one).unwrap(), records[..1]);

            let mut wrong = headers.clone();
            wrong.insert(RECORDS_HEADER, "2");
            assert!(decode(Some(&wrong), &payload)
                .unwrap_err()
                .contains("header says Some(2)"));
            let mut missing = HeaderMap::new();
            missing.insert(ENCODING_HEADER, name(encoding, 3));
            assert!(decode(Some(&missing), &payload).is_err());
            // Cut anywhere: refused, never fewer records (the last line break of
            // `json-lines/1` may be left out).
            let whole = payload.len() - usize::from(encoding == Encoding::Json);
            for len in 0..whole {
                assert!(
                    decode(Some(&headers), &payload[..len]).is_err(),
                    "cut at {len}"
                );
            }
        }
    }
}
