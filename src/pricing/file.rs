//! Price tables from TOML or JSON.
//!
//! ```toml
//! [[price]]
//! model = "gpt-4o-*"      # an exact name, or a prefix ending in *
//! provider = "openai"     # optional: only records of this provider
//! since = "2024-08-06"    # optional: the first UTC day the price applies
//! input = 2_500_000       # micro-units per million plain input tokens
//! cached_input = 1_250_000  # optional, default: input
//! cache_write = 2_500_000   # optional, default: input
//! output = 10_000_000
//! ```
//!
//! JSON has the same shape: `{"price": [{"model": "gpt-4o-*", "input": 2500000, …}]}`.

use std::collections::HashSet;
use std::path::Path;

use chrono::NaiveDate;
use serde::Deserialize;

use super::{ModelPattern, Price, PriceEntry, PriceTable};

/// Why a price table could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PricingError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is neither `.toml` nor `.json`.
    #[error("{path}: a price table is a .toml or .json file")]
    UnknownFormat {
        /// The file.
        path: String,
    },
    /// The text is not valid TOML or JSON of the expected shape.
    #[error("not a valid price table: {0}")]
    Syntax(String),
    /// An entry is well-formed but wrong.
    #[error("price entry {index} ({model:?}): {reason}")]
    Invalid {
        /// The entry's position, from 1.
        index: usize,
        /// Its model name.
        model: String,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    #[serde(default)]
    price: Vec<EntrySpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntrySpec {
    model: String,
    provider: Option<String>,
    since: Option<String>,
    input: i64,
    output: i64,
    cached_input: Option<i64>,
    cache_write: Option<i64>,
}

impl PriceTable {
    /// Reads a table from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, PricingError> {
        let spec: Spec = toml::from_str(text).map_err(|e| PricingError::Syntax(e.to_string()))?;
        Self::from_spec(spec)
    }

    /// Reads a table from JSON text.
    pub fn from_json_str(text: &str) -> Result<Self, PricingError> {
        let spec: Spec =
            serde_json::from_str(text).map_err(|e| PricingError::Syntax(e.to_string()))?;
        Self::from_spec(spec)
    }

    /// Reads a table from a `.toml` or `.json` file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PricingError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PricingError::Read {
            path: shown.clone(),
            source,
        })?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Self::from_toml_str(&text),
            Some("json") => Self::from_json_str(&text),
            _ => Err(PricingError::UnknownFormat { path: shown }),
        }
    }

    fn from_spec(spec: Spec) -> Result<Self, PricingError> {
        let mut table = PriceTable::new();
        let mut seen = HashSet::new();
        for (i, entry) in spec.price.into_iter().enumerate() {
            let invalid = |reason: String| PricingError::Invalid {
                index: i + 1,
                model: entry.model.clone(),
                reason,
            };
            if entry.model.trim().is_empty() {
                return Err(invalid("the model name is empty".into()));
            }
            if entry
                .provider
                .as_deref()
                .is_some_and(|p| p.trim().is_empty())
            {
                return Err(invalid("the provider is empty".into()));
            }
            let prices = [
                ("input", Some(entry.input)),
                ("output", Some(entry.output)),
                ("cached_input", entry.cached_input),
                ("cache_write", entry.cache_write),
            ];
            if let Some((name, _)) = prices.iter().find(|(_, p)| p.is_some_and(|p| p < 0)) {
                return Err(invalid(format!("the {name} price is negative")));
            }
            let since = entry
                .since
                .as_deref()
                .map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d"))
                .transpose()
                .map_err(|_| invalid("`since` is not a YYYY-MM-DD date".into()))?;
            let key = (entry.model.clone(), entry.provider.clone(), since);
            if !seen.insert(key) {
                return Err(invalid(
                    "another entry has the same model, provider and date".into(),
                ));
            }
            table.add(PriceEntry {
                model: ModelPattern::parse(&entry.model),
                provider: entry.provider,
                since,
                price: Price {
                    input: entry.input,
                    output: entry.output,
                    cached_input: entry.cached_input,
                    cache_write: entry.cache_write,
                },
            });
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_loads() {
        let table = PriceTable::load(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prices.example.toml"),
        )
        .unwrap();
        assert!(table.entries().len() >= 4);
    }

    #[test]
    fn json_and_toml_give_the_same_table() {
        let toml = PriceTable::from_toml_str(
            "[[price]]\nmodel = \"m-*\"\nprovider = \"p\"\nsince = \"2026-01-31\"\ninput = 1\noutput = 2\ncached_input = 0\n",
        )
        .unwrap();
        let json = PriceTable::from_json_str(
            r#"{"price":[{"model":"m-*","provider":"p","since":"2026-01-31","input":1,"output":2,"cached_input":0}]}"#,
        )
        .unwrap();
        assert_eq!(toml, json);
    }

    #[test]
    fn bad_tables_are_refused_with_the_reason() {
        let err = |text: &str| PriceTable::from_toml_str(text).unwrap_err().to_string();
        assert!(err("[[price]]\nmodel = \"m\"\ninput = -1\noutput = 1\n")
            .contains("input price is negative"));
        assert!(
            err("[[price]]\nmodel = \"m\"\nsince = \"31/01/2026\"\ninput = 1\noutput = 1\n")
                .contains("YYYY-MM-DD")
        );
        assert!(err("[[price]]\nmodel = \" \"\ninput = 1\noutput = 1\n").contains("empty"));
        assert!(err("[[price]]\nmodel = \"m\"\ninput = 1\noutput = 1\n[[price]]\nmodel = \"m\"\ninput = 2\noutput = 2\n").contains("same model"));
        assert!(err("[[price]]\nmodel = \"m\"\ninput = 1.5\noutput = 1\n")
            .contains("valid price table"));
        assert!(
            err("[[price]]\nmodel = \"m\"\ninput = 1\noutput = 1\ncurrency = \"usd\"\n")
                .contains("unknown field")
        );
        assert!(matches!(
            PriceTable::load("prices.yaml"),
            Err(PricingError::Read { .. } | PricingError::UnknownFormat { .. })
        ));
    }
}
