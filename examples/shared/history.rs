//! Generated demo records, so that a new database shows something on the dashboard page
//! before any traffic: `DEMO_DAYS=30` fills an empty database with 30 days of made-up
//! usage by a few users of three services and five models, busier in the working hours
//! of a weekday, with occasional failures. Requests to the example are recorded on top.
//! A database that already holds records is left as it is.

use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};
use tower_usage::store::DieselStore;
use tower_usage::{ClientPlatform, TokenUsage, UsageRecord, UsageSink};

/// A service, the models it calls (with their provider, price per million input and
/// output tokens in micro-dollars, and tokens per call), and its typical latency.
struct Service {
    name: &'static str,
    models: &'static [(&'static str, &'static str, i64, i64)],
    tokens: (u64, u64),
    millis: u64,
}

const SERVICES: &[Service] = &[
    Service {
        name: "chat",
        models: &[
            ("gpt-4o", "openai", 2_500_000, 10_000_000),
            ("gpt-4o-mini", "openai", 150_000, 600_000),
            ("claude-sonnet-4", "anthropic", 3_000_000, 15_000_000),
        ],
        tokens: (900, 350),
        millis: 1_400,
    },
    Service {
        name: "embeddings",
        models: &[("text-embedding-3-small", "openai", 20_000, 0)],
        tokens: (600, 0),
        millis: 90,
    },
    Service {
        name: "search",
        models: &[("mistral-small", "mistral", 200_000, 600_000)],
        tokens: (1_500, 200),
        millis: 700,
    },
];

/// Users, with how much each one uses (relative), their country and client.
const USERS: &[(&str, u64, &str, ClientPlatform)] = &[
    ("alice", 9, "DE", ClientPlatform::Sdk),
    ("bob", 5, "US", ClientPlatform::Browser),
    ("carol", 4, "FR", ClientPlatform::Sdk),
    ("dave", 3, "US", ClientPlatform::Cli),
    ("erin", 2, "IN", ClientPlatform::Mobile),
    ("frank", 2, "GB", ClientPlatform::Server),
    ("grace", 1, "BR", ClientPlatform::Browser),
];

/// Fills `store` with `days` of demo records ending now, if it holds none yet; returns
/// how many it wrote.
pub(crate) async fn fill(
    store: &DieselStore,
    days: u32,
) -> Result<u64, Box<dyn std::error::Error>> {
    if store.count().await? > 0 {
        eprintln!("DEMO_DAYS: the database already holds records; none generated");
        return Ok(0);
    }
    let now = Utc::now();
    let mut random = Random(0x9e37_79b9_7f4a_7c15 ^ now.timestamp() as u64);
    let mut written = 0;
    let mut batch = Vec::new();
    let weight: u64 = USERS.iter().map(|u| u.1).sum();
    for hour in (0..i64::from(days) * 24).rev() {
        let start = now - chrono::Duration::hours(hour + 1);
        for _ in 0..calls_in(start, &mut random) {
            let at = start + chrono::Duration::seconds(random.below(3_600) as i64);
            let mut pick = random.below(weight);
            let user = USERS
                .iter()
                .find(|u| match pick.checked_sub(u.1) {
                    Some(rest) => {
                        pick = rest;
                        false
                    }
                    None => true,
                })
                .unwrap_or(&USERS[0]);
            batch.push(record(at, user, &mut random));
        }
        if batch.len() >= 2_000 || hour == 0 {
            store.write_batch(&batch).await?;
            written += batch.len() as u64;
            batch.clear();
        }
    }
    eprintln!("DEMO_DAYS: wrote {written} generated records over {days} days");
    Ok(written)
}

/// Calls in the hour from `start` (UTC): busy on weekday afternoons, quiet at night.
fn calls_in(start: DateTime<Utc>, random: &mut Random) -> u64 {
    let hour = u64::from(start.hour());
    let daytime = match hour {
        8..=18 => 10 + (hour - 8).min(18 - hour) * 3,
        6 | 7 | 19..=22 => 6,
        _ => 2,
    };
    let weekday = if start.weekday().number_from_monday() >= 6 {
        2
    } else {
        5
    };
    daytime * weekday / 2 + random.below(6)
}

fn record(
    at: DateTime<Utc>,
    user: &(&str, u64, &str, ClientPlatform),
    random: &mut Random,
) -> UsageRecord {
    let service = &SERVICES[match random.below(10) {
        0..=5 => 0,
        6..=8 => 1,
        _ => 2,
    }];
    let (model, provider, input_price, output_price) =
        service.models[random.below(service.models.len() as u64) as usize];
    // Roughly log-normal: most calls near the typical size, a few far above.
    let spread = |typical: u64, random: &mut Random| {
        let factor = [1, 1, 1, 2, 2, 3, 5][random.below(7) as usize];
        typical / 2 + random.below(typical.max(1)) * factor / 2
    };
    let failed = random.below(100) < 3;
    let status = if failed {
        [429, 500, 502][random.below(3) as usize]
    } else {
        200
    };
    let input = spread(service.tokens.0, random);
    let output = if failed {
        0
    } else {
        spread(service.tokens.1, random)
    };
    let millis = spread(service.millis, random).max(5);
    let cost = (input as i64 * input_price + output as i64 * output_price) / 1_000_000;
    let mut builder = UsageRecord::builder()
        .started_at(at)
        .user(user.0)
        .country(user.2)
        .client(user.3)
        .service(service.name)
        .route(format!("/{}", service.name))
        .model(model)
        .provider(provider)
        .status(http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK))
        .duration(Duration::from_millis(millis))
        .tokens(TokenUsage::new(input, output))
        .cost_micros(cost);
    if service.name == "chat" && !failed {
        builder = builder.ttfb(Duration::from_millis(millis / 5 + 80));
    }
    builder.build()
}

/// A small xorshift generator: demo data needs variety, not quality.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 {
            0
        } else {
            self.0 % n
        }
    }
}
