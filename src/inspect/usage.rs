//! What a response said it used, normalised to the crate's token convention: cached
//! input tokens are *included* in the input.
//!
//! | shape | input | cached | output |
//! |---|---|---|---|
//! | OpenAI chat, completions, embeddings | `prompt_tokens` (cached included) | `prompt_tokens_details.cached_tokens` | `completion_tokens` |
//! | OpenAI Responses API | `input_tokens` (cached included) | `input_tokens_details.cached_tokens` | `output_tokens` |
//! | Anthropic | `input_tokens + cache_read_input_tokens + cache_creation_input_tokens` | `cache_read_input_tokens` | `output_tokens` |
//!
//! A stream may report usage several times (Anthropic's `message_start` and
//! `message_delta`): each field keeps the last value reported, and fields a later report
//! leaves out keep the earlier one. A count that is not a whole number from 0 to 2^53 is
//! ignored.

use serde_json::{Map, Value};

use crate::TokenUsage;

/// The longest model name kept, in characters.
const MODEL_CHARS: usize = 128;

/// Usage and model found so far in one response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The first model name the response gave.
    pub(crate) model: Option<String>,
    input: Option<u64>,
    output: Option<u64>,
    cached: Option<u64>,
    /// Anthropic's cache writes, part of `input`.
    cache_write: Option<u64>,
}

fn count(object: &Map<String, Value>, key: &str) -> Option<u64> {
    const MAX: u64 = 1 << 53;
    object.get(key)?.as_u64().filter(|&n| n <= MAX)
}

fn nested(object: &Map<String, Value>, outer: &str, key: &str) -> Option<u64> {
    count(object.get(outer)?.as_object()?, key)
}

impl Seen {
    /// Adds what one `usage` object says.
    pub(crate) fn merge_usage(&mut self, json: &[u8]) {
        let Ok(Value::Object(u)) = serde_json::from_slice::<Value>(json) else {
            return;
        };
        let (input, output, cached, cache_write);
        if u.contains_key("prompt_tokens") || u.contains_key("completion_tokens") {
            input = count(&u, "prompt_tokens");
            output = count(&u, "completion_tokens");
            cached = nested(&u, "prompt_tokens_details", "cached_tokens");
            cache_write = None;
        } else if u.contains_key("cache_read_input_tokens")
            || u.contains_key("cache_creation_input_tokens")
        {
            let read = count(&u, "cache_read_input_tokens");
            let write = count(&u, "cache_creation_input_tokens");
            input = count(&u, "input_tokens").map(|n| {
                n.saturating_add(read.unwrap_or(0))
                    .saturating_add(write.unwrap_or(0))
            });
            output = count(&u, "output_tokens");
            cached = read;
            cache_write = write;
        } else {
            input = count(&u, "input_tokens");
            output = count(&u, "output_tokens");
            cached = nested(&u, "input_tokens_details", "cached_tokens");
            cache_write = None;
        }
        for (mine, theirs) in [
            (&mut self.input, input),
            (&mut self.output, output),
            (&mut self.cached, cached),
            (&mut self.cache_write, cache_write),
        ] {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
    }

    /// Keeps the model name, if it is a non-empty JSON string and none was found yet.
    pub(crate) fn set_model(&mut self, json: &[u8]) {
        if self.model.is_some() {
            return;
        }
        if let Ok(name) = serde_json::from_slice::<String>(json) {
            let name: String = name.trim().chars().take(MODEL_CHARS).collect();
            if !name.is_empty() {
                self.model = Some(name);
            }
        }
    }

    /// Whether any token count was found.
    pub(crate) fn has_usage(&self) -> bool {
        self.input.is_some() || self.output.is_some()
    }

    /// Whether nothing at all was found.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        !self.has_usage() && self.model.is_none() && self.cached.is_none()
    }

    /// The counts found, missing ones as zero; the cached part never exceeds the input.
    pub(crate) fn usage_tokens(&self) -> TokenUsage {
        let input = self.input.unwrap_or(0);
        let cached = self.cached.unwrap_or(0).min(input);
        TokenUsage::new(input, self.output.unwrap_or(0))
            .with_cached_input(cached)
            .with_cache_write_input(self.cache_write.unwrap_or(0).min(input - cached))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(json: &str) -> TokenUsage {
        let mut seen = Seen::default();
        seen.merge_usage(json.as_bytes());
        seen.usage_tokens()
    }

    #[test]
    fn openai_counts_cached_tokens_inside_the_prompt() {
        let u = usage(
            r#"{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120,"prompt_tokens_details":{"cached_tokens":64}}"#,
        );
        assert_eq!(u, TokenUsage::new(100, 20).with_cached_input(64));
    }

    #[test]
    fn anthropic_cache_reads_and_writes_are_added_to_the_input() {
        let u = usage(
            r#"{"input_tokens":10,"cache_read_input_tokens":500,"cache_creation_input_tokens":40,"output_tokens":7}"#,
        );
        assert_eq!(
            u,
            TokenUsage::new(550, 7)
                .with_cached_input(500)
                .with_cache_write_input(40)
        );
    }

    #[test]
    fn the_responses_api_keeps_its_details() {
        let u = usage(
            r#"{"input_tokens":80,"input_tokens_details":{"cached_tokens":16},"output_tokens":5,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":85}"#,
        );
        assert_eq!(u, TokenUsage::new(80, 5).with_cached_input(16));
    }

    #[test]
    fn absurd_or_mistyped_counts_are_ignored() {
        assert_eq!(
            usage(r#"{"prompt_tokens":-5,"completion_tokens":"7"}"#),
            TokenUsage::default()
        );
        assert_eq!(
            usage(r#"{"prompt_tokens":9007199254740993,"completion_tokens":2.5}"#),
            TokenUsage::default()
        );
        assert_eq!(
            usage(r#"{"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":99}}"#),
            TokenUsage::new(3, 0).with_cached_input(3)
        );
    }

    #[test]
    fn later_reports_override_field_by_field() {
        let mut seen = Seen::default();
        seen.merge_usage(br#"{"input_tokens":25,"cache_read_input_tokens":0,"output_tokens":1}"#);
        seen.merge_usage(br#"{"output_tokens":15}"#);
        assert_eq!(seen.usage_tokens(), TokenUsage::new(25, 15));
    }
}
