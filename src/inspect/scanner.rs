//! Finds `"usage"` objects and `"model"` strings in a JSON or server-sent-events body as
//! it streams by, whatever the frame boundaries, in bounded memory.
//!
//! The bytes are searched for the two keys with a SIMD substring search; only the value
//! after a hit is copied and parsed. A key preceded by a backslash is inside a string
//! (an escaped quote) and is passed over; so is a value that is not an object (for
//! `usage`) or a string (for `model`), or one longer than its cap.

use memchr::memmem::Finder;

use super::usage::Seen;

const USAGE_KEY: &[u8] = b"\"usage\"";
const MODEL_KEY: &[u8] = b"\"model\"";
/// Both keys have this length.
const KEY_LEN: usize = 7;
/// The largest `usage` object kept: real ones are a few hundred bytes.
const USAGE_CAP: usize = 8 * 1024;
/// The largest model name kept, in bytes of JSON.
const MODEL_CAP: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Usage,
    Model,
}

/// Where a value being copied stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// After the key: white space, then a colon.
    BeforeColon,
    /// After the colon: white space, then the value's first byte.
    BeforeValue,
    /// Inside the value.
    Value {
        depth: u32,
        in_string: bool,
        escaped: bool,
    },
}

#[derive(Debug)]
struct Capture {
    kind: Kind,
    state: State,
    buf: Vec<u8>,
}

/// Feeds on a body's bytes; see the module docs.
#[derive(Debug)]
pub(crate) struct Scanner {
    usage_key: Finder<'static>,
    model_key: Finder<'static>,
    /// The last bytes of the previous chunk (a key may straddle two chunks), with the
    /// byte before them to tell an escaped quote.
    carry: [u8; KEY_LEN],
    carry_len: usize,
    capture: Option<Capture>,
    pub(crate) seen: Seen,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            usage_key: Finder::new(USAGE_KEY),
            model_key: Finder::new(MODEL_KEY),
            carry: [0; KEY_LEN],
            carry_len: 0,
            capture: None,
            seen: Seen::default(),
        }
    }
}

impl Scanner {
    /// Scans the next bytes of the body.
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        let mut pos = 0;
        if self.capture.is_none() {
            pos = self.straddling(chunk);
        }
        while pos < chunk.len() {
            if self.capture.is_some() {
                pos += self.copy(&chunk[pos..]);
                continue;
            }
            let Some((start, kind)) = self.next_key(&chunk[pos..]) else {
                break;
            };
            let at = pos + start;
            let escaped = match at {
                0 => self.carry_len > 0 && self.carry[self.carry_len - 1] == b'\\',
                _ => chunk[at - 1] == b'\\',
            };
            pos = at + KEY_LEN;
            if !escaped {
                self.start(kind);
            }
        }
        self.keep_tail(chunk);
    }

    /// A key that starts in the carried bytes and ends in `chunk`: returns where in
    /// `chunk` scanning goes on.
    fn straddling(&mut self, chunk: &[u8]) -> usize {
        // No quote among the carried bytes, no key can start there: the common case.
        if memchr::memchr(b'"', &self.carry[..self.carry_len]).is_none() {
            return 0;
        }
        // The carry's first byte only tells whether the key's quote is escaped.
        let mut joined = [0u8; 2 * KEY_LEN];
        let carry = self.carry;
        let carried = &carry[..self.carry_len];
        let head = &chunk[..chunk.len().min(KEY_LEN - 1)];
        joined[..carried.len()].copy_from_slice(carried);
        joined[carried.len()..carried.len() + head.len()].copy_from_slice(head);
        let joined = &joined[..carried.len() + head.len()];
        // A full carry's first byte is only there to tell an escaped quote.
        let first = usize::from(carried.len() == KEY_LEN);
        for start in first..carried.len() {
            let end = start + KEY_LEN;
            if end <= carried.len() || end > joined.len() {
                continue;
            }
            let kind = match &joined[start..end] {
                key if key == USAGE_KEY => Kind::Usage,
                key if key == MODEL_KEY => Kind::Model,
                _ => continue,
            };
            if start == 0 || joined[start - 1] != b'\\' {
                self.start(kind);
            }
            return end - carried.len();
        }
        0
    }

    fn next_key(&self, haystack: &[u8]) -> Option<(usize, Kind)> {
        let usage = self.usage_key.find(haystack).map(|i| (i, Kind::Usage));
        // Only the first model counts: once found, only usage is searched for.
        if self.seen.model.is_some() {
            return usage;
        }
        let model = self.model_key.find(haystack).map(|i| (i, Kind::Model));
        match (usage, model) {
            (Some(u), Some(m)) => Some(if u.0 < m.0 { u } else { m }),
            (u, m) => u.or(m),
        }
    }

    fn keep_tail(&mut self, chunk: &[u8]) {
        if self.capture.is_some() {
            self.carry_len = 0;
            return;
        }
        if chunk.len() >= KEY_LEN {
            self.carry.copy_from_slice(&chunk[chunk.len() - KEY_LEN..]);
            self.carry_len = KEY_LEN;
        } else {
            // Shift what is kept and append the short chunk.
            let keep = (KEY_LEN - chunk.len()).min(self.carry_len);
            let old = self.carry;
            let from = self.carry_len - keep;
            self.carry[..keep].copy_from_slice(&old[from..self.carry_len]);
            self.carry[keep..keep + chunk.len()].copy_from_slice(chunk);
            self.carry_len = keep + chunk.len();
        }
    }

    fn start(&mut self, kind: Kind) {
        // Skip values of the kind already found where only the first counts.
        if kind == Kind::Model && self.seen.model.is_some() {
            return;
        }
        self.capture = Some(Capture {
            kind,
            state: State::BeforeColon,
            buf: Vec::new(),
        });
    }

    /// Copies the value being captured from `bytes`; returns how many bytes it used.
    fn copy(&mut self, bytes: &[u8]) -> usize {
        let Some(capture) = &mut self.capture else {
            return 0;
        };
        let cap = match capture.kind {
            Kind::Usage => USAGE_CAP,
            Kind::Model => MODEL_CAP,
        };
        for (i, &b) in bytes.iter().enumerate() {
            match capture.state {
                State::BeforeColon => match b {
                    b' ' | b'\t' | b'\r' | b'\n' => {}
                    b':' => capture.state = State::BeforeValue,
                    // Not a key after all (`"usage"` as a value, say).
                    _ => return self.abandon(i),
                },
                State::BeforeValue => match (b, capture.kind) {
                    (b' ' | b'\t' | b'\r' | b'\n', _) => {}
                    (b'{', Kind::Usage) => {
                        capture.buf.push(b);
                        capture.state = State::Value {
                            depth: 1,
                            in_string: false,
                            escaped: false,
                        };
                    }
                    (b'"', Kind::Model) => {
                        capture.buf.push(b);
                        capture.state = State::Value {
                            depth: 0,
                            in_string: true,
                            escaped: false,
                        };
                    }
                    // `null`, a number, an array: nothing to take.
                    _ => return self.abandon(i),
                },
                State::Value {
                    ref mut depth,
                    ref mut in_string,
                    ref mut escaped,
                } => {
                    capture.buf.push(b);
                    if capture.buf.len() > cap {
                        return self.abandon(i + 1);
                    }
                    if *in_string {
                        if *escaped {
                            *escaped = false;
                        } else if b == b'\\' {
                            *escaped = true;
                        } else if b == b'"' {
                            *in_string = false;
                            if *depth == 0 {
                                return self.complete(i + 1);
                            }
                        }
                    } else {
                        match b {
                            b'"' => *in_string = true,
                            b'{' | b'[' => *depth += 1,
                            b'}' | b']' => {
                                *depth -= 1;
                                if *depth == 0 {
                                    return self.complete(i + 1);
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        bytes.len()
    }

    /// Drops the capture; the byte at `used` is scanned again for keys.
    fn abandon(&mut self, used: usize) -> usize {
        self.capture = None;
        used
    }

    fn complete(&mut self, used: usize) -> usize {
        if let Some(capture) = self.capture.take() {
            match capture.kind {
                Kind::Usage => self.seen.merge_usage(&capture.buf),
                Kind::Model => self.seen.set_model(&capture.buf),
            }
        }
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_in(pieces: &[&[u8]]) -> Seen {
        let mut scanner = Scanner::default();
        for piece in pieces {
            scanner.feed(piece);
        }
        scanner.seen
    }

    #[test]
    fn keys_split_across_chunks_are_found() {
        let body = br#"{"model":"gpt-4o","usage":{"prompt_tokens":12,"completion_tokens":3}}"#;
        let whole = scan_in(&[body]);
        assert_eq!(whole.model.as_deref(), Some("gpt-4o"));
        for cut in 0..body.len() {
            let (a, b) = body.split_at(cut);
            assert_eq!(scan_in(&[a, b]), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(scan_in(&bytes), whole);
    }

    #[test]
    fn escaped_keys_inside_strings_are_ignored() {
        let body =
            br#"{"content":"say \"usage\": {\"prompt_tokens\": 999}","usage":{"prompt_tokens":1}}"#;
        assert_eq!(scan_in(&[body]).usage_tokens().input, 1);
    }

    #[test]
    fn a_key_used_as_a_value_is_not_a_key() {
        let body = br#"{"object":"usage","x":{"prompt_tokens":5}}"#;
        assert!(scan_in(&[body]).is_empty());
    }
}
