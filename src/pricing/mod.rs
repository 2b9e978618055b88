//! What tokens cost: a [`PriceTable`] of per-model prices with start dates, applied by
//! the recorder to records that have tokens but no cost.
//!
//! Prices are integers: micro-units of the account's currency (or credits) per million
//! tokens, for plain input, cached input (read from a prompt cache), cache writes and
//! output. Tokens follow the crate's convention ([`TokenUsage`]): cached and cache-write
//! tokens are *part of* the input, so each input token is priced once, at the price of
//! its kind:
//!
//! ```text
//! cost = ((input − cached − cache_write) · input_price + cached · cached_price
//!         + cache_write · cache_write_price + output · output_price) / 1,000,000
//! ```
//!
//! rounded to the nearest micro-unit. A missing cached or cache-write price is the input
//! price.
//!
//! A model name matches an entry exactly, or by prefix when the entry's name ends in `*`
//! (`gpt-4o-*`). The most specific entry wins (an exact name over a prefix, a longer
//! prefix over a shorter), then one for the record's provider over one for any provider,
//! then the latest whose `since` date (UTC) is not after the record's start: a new price
//! applies from its date on and never rewrites older records. A record whose model has
//! no price gets cost 0 and `"unpriced": true` in its metadata — never a guess.
//!
//! ```
//! use tower_usage::pricing::PriceTable;
//! use tower_usage::{TokenUsage, UsageRecord};
//!
//! let table = PriceTable::from_toml_str(r#"
//!     [[price]]
//!     model = "gpt-4o-*"
//!     input = 2_500_000        # per million tokens, in micro-units
//!     cached_input = 1_250_000
//!     output = 10_000_000
//! "#)?;
//! let mut record = UsageRecord::builder()
//!     .model("gpt-4o-2024-08-06")
//!     .tokens(TokenUsage::new(1_000_000, 100_000).with_cached_input(400_000))
//!     .build();
//! table.apply(&mut record);
//! // 600k plain input at 2.5, 400k cached at 1.25, 100k output at 10 (per million).
//! assert_eq!(record.cost_micros, Some(1_500_000 + 500_000 + 1_000_000));
//! # Ok::<(), tower_usage::pricing::PricingError>(())
//! ```

mod file;

use chrono::{DateTime, NaiveDate, Utc};

pub use file::PricingError;

use crate::{TokenUsage, UsageRecord};

/// Prices per million tokens, in micro-units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    /// Plain (uncached) input tokens.
    pub input: i64,
    /// Output tokens.
    pub output: i64,
    /// Input tokens read from a prompt cache; the input price when `None`.
    pub cached_input: Option<i64>,
    /// Input tokens written to a prompt cache; the input price when `None`.
    pub cache_write: Option<i64>,
}

impl Price {
    /// Input and output prices per million tokens; cached tokens at the input price.
    pub const fn per_million(input: i64, output: i64) -> Self {
        Price {
            input,
            output,
            cached_input: None,
            cache_write: None,
        }
    }

    /// Sets the price of cached input tokens.
    pub const fn with_cached_input(mut self, price: i64) -> Self {
        self.cached_input = Some(price);
        self
    }

    /// Sets the price of cache-write input tokens.
    pub const fn with_cache_write(mut self, price: i64) -> Self {
        self.cache_write = Some(price);
        self
    }

    /// What `tokens` cost at this price, in micro-units, rounded to the nearest.
    ///
    /// ```
    /// use tower_usage::pricing::Price;
    /// use tower_usage::TokenUsage;
    /// let price = Price::per_million(3_000_000, 15_000_000);
    /// assert_eq!(price.cost_micros(TokenUsage::new(1_000, 500)), 3_000 + 7_500);
    /// ```
    pub fn cost_micros(&self, tokens: TokenUsage) -> i64 {
        let cached = tokens.cached_input.min(tokens.input);
        let writes = tokens.cache_write_input.min(tokens.input - cached);
        let plain = tokens.input - cached - writes;
        let parts = [
            (plain, self.input),
            (cached, self.cached_input.unwrap_or(self.input)),
            (writes, self.cache_write.unwrap_or(self.input)),
            (tokens.output, self.output),
        ];
        // Saturating: an absurd price times an absurd count must not overflow even i128.
        let total = parts.iter().fold(0i128, |total, &(n, price)| {
            total.saturating_add(i128::from(n).saturating_mul(i128::from(price)))
        });
        // Round half away from zero.
        let micros = total.saturating_add(total.signum() * 500_000) / 1_000_000;
        i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
    }
}

/// Which model names an entry prices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelPattern {
    /// This name exactly.
    Exact(String),
    /// Every name that starts with this.
    Prefix(String),
}

impl ModelPattern {
    /// `name`, or a prefix when it ends in `*`.
    pub fn parse(name: &str) -> Self {
        match name.strip_suffix('*') {
            Some(prefix) => ModelPattern::Prefix(prefix.to_owned()),
            None => ModelPattern::Exact(name.to_owned()),
        }
    }

    fn matches(&self, model: &str) -> bool {
        match self {
            ModelPattern::Exact(name) => name == model,
            ModelPattern::Prefix(prefix) => model.starts_with(prefix.as_str()),
        }
    }

    /// Higher is more specific.
    fn specificity(&self) -> (u8, usize) {
        match self {
            ModelPattern::Exact(_) => (1, 0),
            ModelPattern::Prefix(prefix) => (0, prefix.len()),
        }
    }
}

/// One price for a model (pattern), optionally for one provider, from a date on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceEntry {
    /// The models it prices.
    pub model: ModelPattern,
    /// Only records of this provider; any provider when `None`.
    pub provider: Option<String>,
    /// The first UTC day the price applies; always when `None`.
    pub since: Option<NaiveDate>,
    /// The price.
    pub price: Price,
}

/// Prices by model, provider and date; see the [module docs](self).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceTable {
    entries: Vec<PriceEntry>,
}

impl PriceTable {
    /// An empty table: every record with tokens is unpriced.
    pub fn new() -> Self {
        PriceTable::default()
    }

    /// Adds `price` for `model` (a name, or a prefix ending in `*`), any provider, from
    /// always.
    ///
    /// ```
    /// use tower_usage::pricing::{Price, PriceTable};
    /// let table = PriceTable::new()
    ///     .with("claude-sonnet-*", Price::per_million(3_000_000, 15_000_000).with_cached_input(300_000));
    /// assert!(table.price_for("claude-sonnet-4-20250514", None, chrono::Utc::now()).is_some());
    /// ```
    pub fn with(mut self, model: &str, price: Price) -> Self {
        self.add(PriceEntry {
            model: ModelPattern::parse(model),
            provider: None,
            since: None,
            price,
        });
        self
    }

    /// Adds an entry.
    pub fn add(&mut self, entry: PriceEntry) {
        self.entries.push(entry);
    }

    /// The entries, in the order they were added.
    pub fn entries(&self) -> &[PriceEntry] {
        &self.entries
    }

    /// The price of `model` from `provider` for a record started at `at`.
    pub fn price_for(
        &self,
        model: &str,
        provider: Option<&str>,
        at: DateTime<Utc>,
    ) -> Option<&Price> {
        let day = at.date_naive();
        self.entries
            .iter()
            .filter(|e| e.model.matches(model))
            .filter(|e| e.provider.is_none() || e.provider.as_deref() == provider)
            .filter(|e| e.since.is_none_or(|since| since <= day))
            .max_by_key(|e| (e.model.specificity(), e.provider.is_some(), e.since))
            .map(|e| &e.price)
    }

    /// Prices `record` if it has tokens and no cost yet: sets its cost, or 0 and
    /// `"unpriced": true` in its metadata when no entry prices its model. Returns whether
    /// a price was found.
    pub fn apply(&self, record: &mut UsageRecord) -> bool {
        if record.cost_micros.is_some() || record.tokens.is_empty() {
            return true;
        }
        let price = record
            .model
            .as_deref()
            .and_then(|model| self.price_for(model, record.provider.as_deref(), record.started_at));
        match price {
            Some(price) => {
                record.cost_micros = Some(price.cost_micros(record.tokens));
                true
            }
            None => {
                record.cost_micros = Some(0);
                record.insert_metadata("unpriced", serde_json::Value::Bool(true));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
    }

    #[test]
    fn absurd_prices_and_counts_saturate() {
        let all = TokenUsage::new(u64::MAX, u64::MAX)
            .with_cached_input(u64::MAX / 3)
            .with_cache_write_input(u64::MAX / 3);
        let huge = Price::per_million(i64::MAX, i64::MAX)
            .with_cached_input(i64::MAX)
            .with_cache_write(i64::MAX);
        assert_eq!(huge.cost_micros(all), i64::MAX);
        let negative = Price::per_million(i64::MIN, i64::MIN)
            .with_cached_input(i64::MIN)
            .with_cache_write(i64::MIN);
        assert_eq!(negative.cost_micros(all), i64::MIN);
        assert_eq!(
            Price::per_million(i64::MAX, 0).cost_micros(TokenUsage::new(1, 0)),
            9_223_372_036_855
        );
    }

    #[test]
    fn the_most_specific_entry_wins() {
        let table = PriceTable::new()
            .with("gpt-*", Price::per_million(1, 1))
            .with("gpt-4o-*", Price::per_million(2, 2))
            .with("gpt-4o-mini", Price::per_million(3, 3));
        let price = |m| table.price_for(m, None, at(2026, 1, 1)).map(|p| p.input);
        assert_eq!(price("gpt-4o-mini"), Some(3));
        assert_eq!(price("gpt-4o-2024-08-06"), Some(2));
        assert_eq!(price("gpt-3.5-turbo"), Some(1));
        assert_eq!(price("claude"), None);
    }

    #[test]
    fn a_provider_price_beats_a_general_one_and_dates_pick_the_version() {
        let mut table = PriceTable::new().with("llama-70b", Price::per_million(5, 5));
        table.add(PriceEntry {
            model: ModelPattern::parse("llama-70b"),
            provider: Some("groq".into()),
            since: NaiveDate::from_ymd_opt(2025, 1, 1),
            price: Price::per_million(7, 7),
        });
        table.add(PriceEntry {
            model: ModelPattern::parse("llama-70b"),
            provider: Some("groq".into()),
            since: NaiveDate::from_ymd_opt(2026, 1, 1),
            price: Price::per_million(6, 6),
        });
        let price = |p, t| table.price_for("llama-70b", p, t).map(|p| p.input);
        assert_eq!(
            price(Some("groq"), at(2024, 6, 1)),
            Some(5),
            "before any groq price"
        );
        assert_eq!(price(Some("groq"), at(2025, 6, 1)), Some(7));
        assert_eq!(
            price(Some("groq"), at(2026, 6, 1)),
            Some(6),
            "the new price from its date"
        );
        assert_eq!(price(Some("together"), at(2026, 6, 1)), Some(5));
    }

    #[test]
    fn each_input_token_is_priced_once_at_its_kind() {
        let price = Price::per_million(3_000_000, 15_000_000)
            .with_cached_input(300_000)
            .with_cache_write(3_750_000);
        let tokens = TokenUsage::new(2_112, 6)
            .with_cached_input(2_000)
            .with_cache_write_input(100);
        // 12 plain · 3 + 2000 cached · 0.3 + 100 written · 3.75 + 6 out · 15 (µ per token)
        assert_eq!(price.cost_micros(tokens), 36 + 600 + 375 + 90);
        // Half a micro-unit rounds up; counts that do not add up are capped, not negative.
        assert_eq!(
            Price::per_million(500_000, 0).cost_micros(TokenUsage::new(1, 0)),
            1
        );
        let odd = TokenUsage::new(10, 0)
            .with_cached_input(50)
            .with_cache_write_input(50);
        assert_eq!(
            Price::per_million(1_000_000, 0)
                .with_cached_input(0)
                .cost_micros(odd),
            0
        );
    }

    #[test]
    fn unknown_models_are_unpriced_not_guessed() {
        let table = PriceTable::new().with("gpt-4o", Price::per_million(1, 1));
        let mut record = UsageRecord::builder()
            .model("mystery")
            .tokens(TokenUsage::new(10, 10))
            .build();
        assert!(!table.apply(&mut record));
        assert_eq!(record.cost_micros, Some(0));
        assert_eq!(record.metadata["unpriced"], true);
        // A cost already set is kept; a record without tokens is left alone.
        let mut set = UsageRecord::builder()
            .model("gpt-4o")
            .tokens(TokenUsage::new(1, 1))
            .cost_micros(9)
            .build();
        table.apply(&mut set);
        assert_eq!(set.cost_micros, Some(9));
        let mut empty = UsageRecord::builder().model("gpt-4o").build();
        table.apply(&mut empty);
        assert_eq!(empty.cost_micros, None);
    }
}
