//! `bin/1`: a record in a compact binary form, about a third of its JSON and read without
//! a parser.
//!
//! Integers are LEB128 varints (signed ones zigzagged first), text is a varint length
//! and UTF-8 bytes. In order: the id's 16 bytes; the start as seconds (signed) and
//! nanoseconds; a varint of flags naming the optional fields present; the outcome and
//! the client platform by name; the duration as seconds and nanoseconds; the response
//! bytes; the four token counts; then each optional field that is present, in the
//! order of [`FLAGS`]. The metadata travels as JSON text. Nothing may follow; a flag this
//! version does not know makes the message unreadable (a later form is `bin/2`).

use std::time::Duration;

use chrono::DateTime;

use crate::record::{TokenUsage, UsageRecord};

/// The optional fields, each with its flag bit (its position here).
const FLAGS: [&str; 13] = [
    "method",
    "route",
    "status",
    "ttfb",
    "request_bytes",
    "user",
    "service",
    "model",
    "requested_model",
    "provider",
    "country",
    "cost_micros",
    "metadata",
];

fn flag(name: &str) -> u64 {
    let bit = FLAGS.iter().position(|f| *f == name).unwrap_or(63);
    1 << bit
}

struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    fn signed(&mut self, n: i64) {
        self.varint(((n << 1) ^ (n >> 63)) as u64);
    }

    fn text(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn duration(&mut self, d: Duration) {
        self.varint(d.as_secs());
        self.varint(u64::from(d.subsec_nanos()));
    }
}

/// The record in `bin/1`.
pub(crate) fn encode(record: &UsageRecord) -> Result<Vec<u8>, serde_json::Error> {
    let mut w = Writer(Vec::with_capacity(96));
    w.0.extend_from_slice(record.id.as_bytes());
    w.signed(record.started_at.timestamp());
    w.varint(u64::from(record.started_at.timestamp_subsec_nanos()));
    let present = [
        record.method.is_some(),
        record.route.is_some(),
        record.status.is_some(),
        record.ttfb.is_some(),
        record.request_bytes.is_some(),
        record.user.is_some(),
        record.service.is_some(),
        record.model.is_some(),
        record.requested_model.is_some(),
        record.provider.is_some(),
        record.country.is_some(),
        record.cost_micros.is_some(),
        !record.metadata.is_null(),
    ];
    let flags = present
        .iter()
        .enumerate()
        .fold(0u64, |flags, (bit, on)| flags | (u64::from(*on) << bit));
    w.varint(flags);
    w.text(record.outcome.as_str());
    w.text(record.client.as_str());
    w.duration(record.duration);
    w.varint(record.response_bytes);
    let t = &record.tokens;
    for n in [t.input, t.output, t.cached_input, t.cache_write_input] {
        w.varint(n);
    }
    if let Some(method) = &record.method {
        w.text(method.as_str());
    }
    if let Some(route) = &record.route {
        w.text(route);
    }
    if let Some(status) = record.status {
        w.varint(u64::from(status.as_u16()));
    }
    if let Some(ttfb) = record.ttfb {
        w.duration(ttfb);
    }
    if let Some(bytes) = record.request_bytes {
        w.varint(bytes);
    }
    for text in [
        &record.user,
        &record.service,
        &record.model,
        &record.requested_model,
        &record.provider,
        &record.country,
    ]
    .into_iter()
    .flatten()
    {
        w.text(text);
    }
    if let Some(cost) = record.cost_micros {
        w.signed(cost);
    }
    if !record.metadata.is_null() {
        let json = serde_json::to_vec(&record.metadata)?;
        w.varint(json.len() as u64);
        w.0.extend_from_slice(&json);
    }
    Ok(w.0)
}

/// Appends a record's `bin/1` bytes to a `bin-seq/1` payload: their length, then them.
pub(crate) fn frame(payload: &mut Vec<u8>, record: &[u8]) {
    let mut w = Writer(std::mem::take(payload));
    w.varint(record.len() as u64);
    w.0.extend_from_slice(record);
    *payload = w.0;
}

/// The records of a `bin-seq/1` payload (`bin/1` records, each after its length), or why
/// it cannot be read: a message is read whole or not at all.
pub(crate) fn decode_framed(payload: &[u8]) -> Result<Vec<UsageRecord>, String> {
    let mut r = Reader(payload);
    let mut records = Vec::new();
    while !r.0.is_empty() {
        let what = "a record's length";
        let len = usize::try_from(r.varint(what)?).map_err(|_| format!("{what} too long"))?;
        records.push(decode(r.bytes(len, "a record")?)?);
    }
    if records.is_empty() {
        return Err("no record".to_owned());
    }
    Ok(records)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("cut short in {what}"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn varint(&mut self, what: &str) -> Result<u64, String> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.bytes(1, what)?[0];
            let part = u64::from(byte & 0x7f);
            if shift == 63 && part > 1 {
                return Err(format!("{what} overflows"));
            }
            n |= part << shift;
            if byte & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(format!("{what} overflows"))
    }

    fn signed(&mut self, what: &str) -> Result<i64, String> {
        let n = self.varint(what)?;
        Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    fn nanos(&mut self, what: &str) -> Result<u32, String> {
        u32::try_from(self.varint(what)?)
            .ok()
            .filter(|n| *n < 1_000_000_000)
            .ok_or_else(|| format!("{what} has nanoseconds past a second"))
    }

    fn text(&mut self, what: &str) -> Result<&'a str, String> {
        let len = usize::try_from(self.varint(what)?).map_err(|_| format!("{what} too long"))?;
        let bytes = self.bytes(len, what)?;
        std::str::from_utf8(bytes).map_err(|_| format!("{what} is not UTF-8"))
    }

    fn duration(&mut self, what: &str) -> Result<Duration, String> {
        let secs = self.varint(what)?;
        Ok(Duration::new(secs, self.nanos(what)?))
    }
}

/// The record a `bin/1` payload holds, or why it cannot be read.
pub(crate) fn decode(payload: &[u8]) -> Result<UsageRecord, String> {
    let mut r = Reader(payload);
    let id = uuid::Uuid::from_slice(r.bytes(16, "the id")?).map_err(|e| e.to_string())?;
    let secs = r.signed("the start")?;
    let nanos = r.nanos("the start")?;
    let started_at =
        DateTime::from_timestamp(secs, nanos).ok_or("the start is out of range".to_owned())?;
    let flags = r.varint("the flags")?;
    if flags >> FLAGS.len() != 0 {
        return Err(format!("unknown flags {flags:#x}"));
    }
    let has = |name: &str| flags & flag(name) != 0;
    let mut record = UsageRecord::starting_at(started_at);
    record.id = id;
    record.outcome = r
        .text("the outcome")?
        .parse()
        .map_err(|_| "an unknown outcome".to_owned())?;
    record.client = r
        .text("the client")?
        .parse()
        .map_err(|_| "an unknown client platform".to_owned())?;
    record.duration = r.duration("the duration")?;
    record.response_bytes = r.varint("the response bytes")?;
    let mut tokens = [0u64; 4];
    for n in &mut tokens {
        *n = r.varint("the tokens")?;
    }
    record.tokens = TokenUsage::new(tokens[0], tokens[1])
        .with_cached_input(tokens[2])
        .with_cache_write_input(tokens[3]);
    if has("method") {
        let method = r.text("the method")?;
        record.method =
            Some(http::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?);
    }
    if has("route") {
        record.route = Some(r.text("the route")?.to_owned());
    }
    if has("status") {
        let status = u16::try_from(r.varint("the status")?).map_err(|e| e.to_string())?;
        record.status = Some(http::StatusCode::from_u16(status).map_err(|e| e.to_string())?);
    }
    if has("ttfb") {
        record.ttfb = Some(r.duration("the time to first byte")?);
    }
    if has("request_bytes") {
        record.request_bytes = Some(r.varint("the request bytes")?);
    }
    for (name, field) in [
        ("user", &mut record.user),
        ("service", &mut record.service),
        ("model", &mut record.model),
        ("requested_model", &mut record.requested_model),
        ("provider", &mut record.provider),
        ("country", &mut record.country),
    ] {
        if has(name) {
            *field = Some(r.text(name)?.to_owned());
        }
    }
    if has("cost_micros") {
        record.cost_micros = Some(r.signed("the cost")?);
    }
    if has("metadata") {
        let json = r.text("the metadata")?;
        record.metadata = serde_json::from_str(json).map_err(|e| format!("bad metadata: {e}"))?;
    }
    if !r.0.is_empty() {
        return Err(format!("{} bytes past the record", r.0.len()));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientPlatform, Outcome};

    fn full() -> UsageRecord {
        let mut record = UsageRecord::builder()
            .method(http::Method::PATCH)
            .route("/v1/chat/{id}")
            .status(http::StatusCode::IM_A_TEAPOT)
            .outcome(Outcome::ClientError)
            .ttfb(Duration::new(1, 999_999_999))
            .duration(Duration::from_micros(u64::MAX >> 11))
            .request_bytes(0)
            .response_bytes(u64::MAX)
            .user("ünïcode ✓")
            .service("")
            .model("gpt-4o")
            .requested_model("gpt-4o-latest")
            .provider("openai")
            .client(ClientPlatform::Cli)
            .country("FR")
            .tokens(
                TokenUsage::new(1, u64::MAX)
                    .with_cached_input(3)
                    .with_cache_write_input(4),
            )
            .cost_micros(-123_456_789)
            .metadata(serde_json::json!({"ratio": 0.1 + 0.2, "nested": [1, null, "x"]}))
            .build();
        record.started_at = DateTime::from_timestamp(-86_400 * 365, 123_456_789).unwrap();
        record
    }

    #[test]
    fn every_field_comes_back_exactly() {
        for record in [full(), UsageRecord::builder().build()] {
            let payload = encode(&record).unwrap();
            assert_eq!(decode(&payload).unwrap(), record);
            let json = serde_json::to_vec(&record).unwrap();
            assert!(
                payload.len() < json.len() / 2,
                "{} vs {}",
                payload.len(),
                json.len()
            );
        }
    }

    #[test]
    fn framed_records_come_back_in_order_and_a_cut_frame_is_refused() {
        let records = [full(), UsageRecord::builder().build(), full()];
        let mut payload = Vec::new();
        for record in &records {
            frame(&mut payload, &encode(record).unwrap());
        }
        assert_eq!(decode_framed(&payload).unwrap(), records);
        let mut boundaries = vec![0];
        for record in &records {
            let mut one = Vec::new();
            frame(&mut one, &encode(record).unwrap());
            boundaries.push(boundaries.last().unwrap() + one.len());
        }
        // A cut between records leaves the records before it (the message's record count
        // header catches that); a cut inside one is refused.
        for len in 0..payload.len() {
            match boundaries.iter().position(|b| *b == len) {
                Some(0) => assert!(decode_framed(&payload[..len]).is_err()),
                Some(n) => assert_eq!(decode_framed(&payload[..len]).unwrap(), records[..n]),
                None => assert!(decode_framed(&payload[..len]).is_err(), "cut at {len}"),
            }
        }
        assert!(decode_framed(&[]).unwrap_err().contains("no record"));
    }

    #[test]
    fn a_cut_or_damaged_payload_is_refused_never_a_panic() {
        let payload = encode(&full()).unwrap();
        for len in 0..payload.len() {
            assert!(decode(&payload[..len]).is_err(), "cut at {len}");
        }
        let mut longer = payload.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().contains("past the record"));
        // Every byte flipped in turn: an error or another record, never a panic.
        for i in 0..payload.len() {
            let mut damaged = payload.clone();
            damaged[i] ^= 0xff;
            let _ = decode(&damaged);
        }
        // At the epoch the start takes a byte for its seconds and one for its
        // nanoseconds: the flags are at 18.
        let mut bare = UsageRecord::builder().build();
        bare.started_at = DateTime::UNIX_EPOCH;
        let mut unknown = encode(&bare).unwrap();
        assert_eq!(unknown[18], 0);
        unknown[18] = 0x80; // a varint continued ...
        unknown.insert(19, 0x40); // ... to bit 13, which no field has
        assert!(decode(&unknown).unwrap_err().contains("unknown flags"));
        assert!(decode(&[0xff; 40]).is_err());
    }
}
