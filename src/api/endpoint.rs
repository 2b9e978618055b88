//! The endpoints and the query parameters each accepts: one table that the router, the
//! parameter parser and the OpenAPI document all read, so they cannot disagree.

/// One endpoint of the analytics API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Endpoint {
    Dashboard,
    Metrics,
    Services,
    Models,
    Providers,
    Platforms,
    Countries,
    TimeSeries,
    LatencySeries,
    TopUsers,
    Export,
    MyUsage,
    Me,
    Live,
    Audit,
    Budgets,
    BudgetStatus,
    PutBudget,
    DeleteBudget,
    Rules,
    PutRule,
    DeleteRule,
    AlertEvents,
    FiringAlerts,
    Webhooks,
    PutWebhook,
    DeleteWebhook,
}

/// A query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Param {
    From,
    To,
    Last,
    User,
    Service,
    Model,
    Provider,
    Outcome,
    StatusClass,
    Platform,
    Country,
    Tz,
    Granularity,
    Split,
    Top,
    By,
    Limit,
    Format,
    Subject,
    Refused,
}

use Param as P;

/// The parameters that narrow the records (and `tz`, which places dates and buckets),
/// on every endpoint but `/my-usage` (which takes them all but `user`) and `/audit`.
const FILTER: &[Param] = Param::ALL.split_at(12).0;

impl Endpoint {
    pub(crate) const ALL: [Endpoint; 27] = [
        Endpoint::Dashboard,
        Endpoint::Metrics,
        Endpoint::Services,
        Endpoint::Models,
        Endpoint::Providers,
        Endpoint::Platforms,
        Endpoint::Countries,
        Endpoint::TimeSeries,
        Endpoint::LatencySeries,
        Endpoint::TopUsers,
        Endpoint::Export,
        Endpoint::MyUsage,
        Endpoint::Me,
        Endpoint::Live,
        Endpoint::Audit,
        Endpoint::Budgets,
        Endpoint::BudgetStatus,
        Endpoint::PutBudget,
        Endpoint::DeleteBudget,
        Endpoint::Rules,
        Endpoint::PutRule,
        Endpoint::DeleteRule,
        Endpoint::AlertEvents,
        Endpoint::FiringAlerts,
        Endpoint::Webhooks,
        Endpoint::PutWebhook,
        Endpoint::DeleteWebhook,
    ];

    /// Its method: `GET` but for the budget changes.
    pub(crate) fn method(self) -> http::Method {
        match self {
            Endpoint::PutBudget | Endpoint::PutRule | Endpoint::PutWebhook => http::Method::PUT,
            Endpoint::DeleteBudget | Endpoint::DeleteRule | Endpoint::DeleteWebhook => {
                http::Method::DELETE
            }
            _ => http::Method::GET,
        }
    }

    pub(crate) fn path(self) -> &'static str {
        match self {
            Endpoint::Dashboard => "/dashboard",
            Endpoint::Metrics => "/metrics",
            Endpoint::Services => "/services",
            Endpoint::Models => "/models",
            Endpoint::Providers => "/providers",
            Endpoint::Platforms => "/platforms",
            Endpoint::Countries => "/countries",
            Endpoint::TimeSeries => "/timeseries",
            Endpoint::LatencySeries => "/latency",
            Endpoint::TopUsers => "/users/top",
            Endpoint::Export => "/export",
            Endpoint::MyUsage => "/my-usage",
            Endpoint::Me => "/me",
            Endpoint::Live => "/live",
            Endpoint::Audit => "/audit",
            Endpoint::Budgets => "/budgets",
            Endpoint::BudgetStatus => "/budgets/status",
            Endpoint::PutBudget | Endpoint::DeleteBudget => "/budgets/{name}",
            Endpoint::Rules => "/alerts/rules",
            Endpoint::PutRule | Endpoint::DeleteRule => "/alerts/rules/{name}",
            Endpoint::AlertEvents => "/alerts/events",
            Endpoint::FiringAlerts => "/alerts/firing",
            Endpoint::Webhooks => "/webhooks",
            Endpoint::PutWebhook | Endpoint::DeleteWebhook => "/webhooks/{name}",
        }
    }

    /// Whether only admins may call it; `/my-usage`, `/me` and `/live` are for every
    /// role (a user's `/live` is about their own records).
    pub(crate) fn admin_only(self) -> bool {
        !matches!(self, Endpoint::MyUsage | Endpoint::Me | Endpoint::Live)
    }

    /// Whether it answers from the usage records and rollups: the endpoints that take the
    /// usage filter.
    pub(crate) fn reads_usage(self) -> bool {
        self.accepts(P::Service)
    }

    /// The parameters it accepts; any other is refused.
    pub(crate) fn accepts(self, param: Param) -> bool {
        let own: &[Param] = match self {
            Endpoint::Dashboard => &[],
            Endpoint::Metrics => &[],
            Endpoint::Services
            | Endpoint::Models
            | Endpoint::Providers
            | Endpoint::Platforms
            | Endpoint::Countries => &[P::Limit],
            Endpoint::TimeSeries => &[P::Granularity, P::Split, P::Top],
            Endpoint::LatencySeries => &[P::Granularity],
            Endpoint::TopUsers => &[P::By, P::Limit],
            Endpoint::Export => &[P::Format],
            Endpoint::MyUsage => &[],
            Endpoint::Me => return false,
            Endpoint::Live => &[],
            Endpoint::Audit => {
                return matches!(
                    param,
                    P::From | P::To | P::Last | P::Subject | P::Refused | P::Limit
                )
            }
            Endpoint::AlertEvents => return matches!(param, P::From | P::To | P::Last | P::Limit),
            Endpoint::Budgets
            | Endpoint::BudgetStatus
            | Endpoint::PutBudget
            | Endpoint::DeleteBudget
            | Endpoint::Rules
            | Endpoint::PutRule
            | Endpoint::DeleteRule
            | Endpoint::FiringAlerts
            | Endpoint::Webhooks
            | Endpoint::PutWebhook
            | Endpoint::DeleteWebhook => return false,
        };
        let filter = FILTER.contains(&param) && !(self == Endpoint::MyUsage && param == P::User);
        filter || own.contains(&param)
    }

    pub(crate) fn params(self) -> impl Iterator<Item = Param> {
        Param::ALL.into_iter().filter(move |p| self.accepts(*p))
    }

    pub(crate) fn summary(self) -> &'static str {
        match self {
            Endpoint::Dashboard => {
                "Metrics, top services, models and users, a daily series and peak hours"
            }
            Endpoint::Metrics => {
                "Totals, error rate and latency percentiles of the selected records"
            }
            Endpoint::Services => "The records grouped by service, largest first",
            Endpoint::Models => "The records grouped by model, largest first",
            Endpoint::Providers => "The records grouped by provider, with error rates",
            Endpoint::Platforms => "The records grouped by client platform (from `User-Agent`)",
            Endpoint::Countries => "The records grouped by country",
            Endpoint::TimeSeries => {
                "The records per hour, day, week or month of a time zone, optionally split"
            }
            Endpoint::LatencySeries => {
                "Latency and time-to-first-byte mean and percentiles per hour, day, week or \
                 month of a time zone"
            }
            Endpoint::TopUsers => "The users with the most requests, tokens or cost",
            Endpoint::Export => "Every selected record, streamed as CSV or JSON lines",
            Endpoint::MyUsage => {
                "The caller's own usage: metrics, a daily series, services and models"
            }
            Endpoint::Me => "Who the credentials name, and their role",
            Endpoint::Live => {
                "Server-sent events with the selected records' metrics, at most once a \
                 second while records are written"
            }
            Endpoint::Audit => "The audit trail of this API: who asked for what, and the answer",
            Endpoint::Budgets => "Every budget",
            Endpoint::BudgetStatus => {
                "What each budget's scope has spent in its current window, by the stored records"
            }
            Endpoint::PutBudget => {
                "Creates or replaces the budget of this name (the body is a `Budget`; its \
                 `name` may be left out)"
            }
            Endpoint::DeleteBudget => "Deletes the budget of this name",
            Endpoint::Rules => "Every alert rule",
            Endpoint::PutRule => {
                "Creates or replaces the alert rule of this name (the body is a `Rule`; its \
                 `name` may be left out)"
            }
            Endpoint::DeleteRule => "Deletes the alert rule of this name (its events stay)",
            Endpoint::AlertEvents => "Alert events (fired and resolved), newest first",
            Endpoint::FiringAlerts => "The rules firing now, with the event that fired each",
            Endpoint::Webhooks => "Every webhook endpoint (without its secret)",
            Endpoint::PutWebhook => {
                "Creates or replaces the webhook endpoint of this name (`url` and `secret`, \
                 at least 16 bytes); it receives the alert events written from then on"
            }
            Endpoint::DeleteWebhook => {
                "Deletes the webhook endpoint of this name; its pending deliveries are not made"
            }
        }
    }

    /// The name of the schema its 200 answer has (`None`: not JSON).
    pub(crate) fn schema(self) -> Option<&'static str> {
        Some(match self {
            Endpoint::Dashboard => "Dashboard",
            Endpoint::Metrics => "Metrics",
            Endpoint::Services
            | Endpoint::Models
            | Endpoint::Providers
            | Endpoint::Platforms
            | Endpoint::Countries => "Breakdown",
            Endpoint::TimeSeries => "TimeSeries",
            Endpoint::LatencySeries => "LatencySeries",
            Endpoint::TopUsers => "UserRank",
            Endpoint::Export | Endpoint::Live => return None,
            Endpoint::MyUsage => "MyUsage",
            Endpoint::Me => "Principal",
            Endpoint::Audit => "AuditEntry",
            Endpoint::Budgets | Endpoint::PutBudget => "Budget",
            Endpoint::BudgetStatus => "BudgetStatus",
            Endpoint::Rules | Endpoint::PutRule => "Rule",
            Endpoint::AlertEvents | Endpoint::FiringAlerts => "AlertEvent",
            Endpoint::Webhooks | Endpoint::PutWebhook => "WebhookView",
            Endpoint::DeleteBudget | Endpoint::DeleteRule | Endpoint::DeleteWebhook => return None,
        })
    }

    /// The name of the schema of the body a `PUT` takes: what it answers, but for a
    /// webhook, whose secret goes in and never comes out.
    pub(crate) fn body_schema(self) -> Option<&'static str> {
        match self {
            Endpoint::PutWebhook => Some("Webhook"),
            _ => self.schema(),
        }
    }

    /// Whether the answer is a JSON array of [`schema`](Self::schema).
    pub(crate) fn is_list(self) -> bool {
        matches!(
            self,
            Endpoint::TopUsers
                | Endpoint::Audit
                | Endpoint::Budgets
                | Endpoint::BudgetStatus
                | Endpoint::Rules
                | Endpoint::AlertEvents
                | Endpoint::FiringAlerts
                | Endpoint::Webhooks
        )
    }
}

impl Param {
    /// Every parameter; the first twelve are the filter's.
    pub(crate) const ALL: [Param; 20] = [
        P::From,
        P::To,
        P::Last,
        P::User,
        P::Service,
        P::Model,
        P::Provider,
        P::Outcome,
        P::StatusClass,
        P::Platform,
        P::Country,
        P::Tz,
        P::Granularity,
        P::Split,
        P::Top,
        P::By,
        P::Limit,
        P::Format,
        P::Subject,
        P::Refused,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            P::From => "from",
            P::To => "to",
            P::Last => "last",
            P::User => "user",
            P::Service => "service",
            P::Model => "model",
            P::Provider => "provider",
            P::Outcome => "outcome",
            P::StatusClass => "status_class",
            P::Platform => "platform",
            P::Country => "country",
            P::Tz => "tz",
            P::Granularity => "granularity",
            P::Split => "split",
            P::Top => "top",
            P::By => "by",
            P::Limit => "limit",
            P::Format => "format",
            P::Subject => "subject",
            P::Refused => "refused",
        }
    }

    pub(crate) fn named(name: &str) -> Option<Param> {
        Param::ALL.into_iter().find(|p| p.name() == name)
    }

    pub(crate) fn description(self) -> &'static str {
        match self {
            P::From => "Start of the range, inclusive: RFC 3339 (`2026-11-01T00:00:00Z`), a date (`2026-11-01`, midnight in `tz`) or Unix seconds. Default: 30 days before `to`.",
            P::To => "End of the range, exclusive; same forms as `from`. Default: now.",
            P::Last => "The range ending now, instead of `from`/`to`: a whole number and a unit, `m`, `h` or `d` (`15m`, `24h`, `30d`).",
            P::User => "Only this user's records (admins only).",
            P::Service => "Only this service's records.",
            P::Model => "Only this model's records.",
            P::Provider => "Only this provider's records.",
            P::Outcome => "Only records with this outcome.",
            P::StatusClass => "Only records whose status is of this class.",
            P::Platform => "Only records from this client platform.",
            P::Country => "Only records from this country.",
            P::Tz => "IANA time zone of dates in `from`/`to`, and of the buckets of series and peak hours. Default: UTC.",
            P::Granularity => "Bucket width. Default: `day`.",
            P::Split => "Split the series by this dimension into the `top` values, `missing` and `other`.",
            P::Top => "How many values a split keeps (1 to 20). Default: 5.",
            P::By => "What users are ranked by. Default: `requests`.",
            P::Limit => "How many rows (from 1 to the configured maximum). Default: 10 (100 for the audit trail).",
            P::Format => "Export format. Default: `csv`.",
            P::Subject => "Only this subject's accesses.",
            P::Refused => "`true`: only refused accesses (status 400 or more).",
        }
    }

    /// The values an enumerated parameter takes.
    pub(crate) fn choices(self) -> Option<&'static [&'static str]> {
        Some(match self {
            P::Outcome => &[
                "success",
                "client_error",
                "server_error",
                "service_error",
                "body_error",
                "cancelled",
                "refused",
            ],
            P::StatusClass => &[
                "informational",
                "success",
                "redirection",
                "client_error",
                "server_error",
                "none",
            ],
            P::Platform => &["browser", "mobile", "sdk", "cli", "server", "unknown"],
            P::Granularity => &["hour", "day", "week", "month"],
            P::Split => &["service", "model", "provider", "user"],
            P::By => &["requests", "tokens", "cost"],
            P::Format => &["csv", "jsonl"],
            P::Refused => &["true", "false"],
            _ => return None,
        })
    }

    pub(crate) fn is_integer(self) -> bool {
        matches!(self, P::Top | P::Limit)
    }
}
