//! The spill's on-disk format: a segment file is a header, then frames, one per batch.
//!
//! ```text
//! header  b"TUSPILL" + version (1 = a frame's payload is a JSON array of records)
//! frame   payload length (u32, little-endian) │ CRC-32 of the payload (u32, LE) │ payload
//! ```
//!
//! A frame is appended whole and fsynced before the batch counts as spilled, so only the
//! last frame of a segment can be torn (by a crash or a full disk). Reading stops at the
//! first frame that is short, fails its checksum or does not decode: what follows it
//! cannot be framed with certainty, and is reported as damaged, never guessed at.

use crate::record::UsageRecord;

/// The first bytes of every segment: the format's name and version.
pub(crate) const HEADER: &[u8; 8] = b"TUSPILL\x01";

/// A frame's length and checksum, before its payload.
const FRAME_HEAD: usize = 8;

/// Encodes one batch as a frame.
pub(crate) fn encode(records: &[UsageRecord]) -> Result<Vec<u8>, serde_json::Error> {
    let mut frame = vec![0; FRAME_HEAD];
    serde_json::to_writer(&mut frame, records)?;
    let payload = &frame[FRAME_HEAD..];
    let len = u32::try_from(payload.len()).map_err(|_| {
        <serde_json::Error as serde::ser::Error>::custom("a spilled batch is over 4 GiB")
    })?;
    let crc = crc32fast::hash(payload);
    frame[..4].copy_from_slice(&len.to_le_bytes());
    frame[4..FRAME_HEAD].copy_from_slice(&crc.to_le_bytes());
    Ok(frame)
}

/// What a segment held: its batches in order, and whether its end was damaged.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub(crate) batches: Vec<Vec<UsageRecord>>,
    /// Why reading stopped before the end of the file, if it did.
    pub(crate) damage: Option<Damage>,
}

/// Why a segment could not be read to its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Damage {
    #[error("the segment does not start with a known header")]
    Header,
    #[error("a frame at byte {0} is cut short")]
    Torn(usize),
    #[error("a frame at byte {0} fails its checksum")]
    Checksum(usize),
    #[error("a frame at byte {0} does not decode: {1}")]
    Payload(usize, String),
}

/// Reads a whole segment's bytes.
pub(crate) fn decode(bytes: &[u8]) -> Decoded {
    let mut decoded = Decoded::default();
    let Some(mut rest) = bytes.strip_prefix(HEADER.as_slice()) else {
        // An empty file is a segment whose header never reached the disk: nothing lost.
        if !bytes.is_empty() {
            decoded.damage = Some(Damage::Header);
        }
        return decoded;
    };
    while !rest.is_empty() {
        let at = bytes.len() - rest.len();
        let Some((head, body)) = rest.split_at_checked(FRAME_HEAD) else {
            decoded.damage = Some(Damage::Torn(at));
            break;
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let Some((payload, next)) = body.split_at_checked(len) else {
            decoded.damage = Some(Damage::Torn(at));
            break;
        };
        if crc32fast::hash(payload) != crc {
            decoded.damage = Some(Damage::Checksum(at));
            break;
        }
        match serde_json::from_slice(payload) {
            Ok(batch) => decoded.batches.push(batch),
            Err(e) => {
                decoded.damage = Some(Damage::Payload(at, e.to_string()));
                break;
            }
        }
        rest = next;
    }
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(users: &[&str]) -> Vec<UsageRecord> {
        users
            .iter()
            .map(|u| UsageRecord::builder().user(*u).service("chat").build())
            .collect()
    }

    fn segment(batches: &[Vec<UsageRecord>]) -> Vec<u8> {
        let mut bytes = HEADER.to_vec();
        for b in batches {
            bytes.extend(encode(b).unwrap());
        }
        bytes
    }

    #[test]
    fn batches_come_back_as_they_went_in() {
        let batches = vec![batch(&["a", "b"]), batch(&["c"])];
        let decoded = decode(&segment(&batches));
        assert_eq!(decoded.damage, None);
        assert_eq!(decoded.batches, batches);
    }

    #[test]
    fn a_torn_tail_keeps_the_whole_frames_before_it() {
        let batches = vec![batch(&["a"]), batch(&["b", "c"])];
        let whole = segment(&batches);
        let first_end = HEADER.len() + encode(&batches[0]).unwrap().len();
        for cut in [first_end + 3, first_end + FRAME_HEAD + 5, whole.len() - 1] {
            let decoded = decode(&whole[..cut]);
            assert_eq!(decoded.batches, batches[..1], "cut at {cut}");
            assert_eq!(
                decoded.damage,
                Some(Damage::Torn(first_end)),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_flipped_bit_is_caught_by_the_checksum() {
        let batches = vec![batch(&["a"]), batch(&["b"])];
        let mut bytes = segment(&batches);
        let last = bytes.len() - 3;
        bytes[last] ^= 0x10;
        let decoded = decode(&bytes);
        assert_eq!(decoded.batches, batches[..1]);
        assert!(matches!(decoded.damage, Some(Damage::Checksum(_))));
    }

    #[test]
    fn an_empty_file_is_an_empty_segment_and_a_foreign_one_is_damaged() {
        let empty = decode(&[]);
        assert!(empty.batches.is_empty() && empty.damage.is_none());
        assert_eq!(decode(b"not a spill").damage, Some(Damage::Header));
    }
}
