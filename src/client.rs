//! What kind of client made a request, told from its `User-Agent`.

use serde::{Deserialize, Serialize};

/// The kind of client that made a request.
///
/// Decided from the `User-Agent` header by a few case-insensitive string checks (no user
/// agent database): enough to tell a dashboard's browsers from SDK traffic and scripts.
///
/// ```
/// use tower_usage::ClientPlatform;
///
/// assert_eq!(ClientPlatform::from_user_agent("curl/8.5.0"), ClientPlatform::Cli);
/// assert_eq!(ClientPlatform::from_user_agent("OpenAI/Python 1.54.0"), ClientPlatform::Sdk);
/// assert_eq!(
///     ClientPlatform::from_user_agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"),
///     ClientPlatform::Mobile,
/// );
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientPlatform {
    /// A desktop web browser.
    Browser,
    /// A phone or tablet: a mobile browser or an app's HTTP stack.
    Mobile,
    /// An AI or API vendor's SDK (OpenAI, Anthropic, MCP, LangChain, …).
    Sdk,
    /// A command-line tool (curl, wget, HTTPie, …).
    Cli,
    /// A general-purpose HTTP library called from a server or script.
    Server,
    /// No `User-Agent`, or one not recognised.
    #[default]
    Unknown,
}

/// Markers of a phone or tablet inside a browser's first `(...)` comment.
const MOBILE_MARKERS: &[&[u8]] = &[
    b"iphone",
    b"ipad",
    b"ipod",
    b"android",
    b"mobile",
    b"windows phone",
];
/// Markers of an automated client that still calls itself `Mozilla/`.
const BOT_MARKERS: &[&[u8]] = &[b"bot", b"crawler", b"spider"];
/// Words in an SDK's product token.
const SDK_PRODUCTS: &[&[u8]] = &[
    b"openai",
    b"anthropic",
    b"google-genai",
    b"langchain",
    b"llamaindex",
    b"llama-index",
    b"mcp",
    b"stainless",
    b"litellm",
    b"cohere",
    b"mistral",
];
const CLI_PRODUCTS: &[&[u8]] = &[
    b"curl",
    b"wget",
    b"httpie",
    b"xh",
    b"powershell",
    b"insomnia",
    b"postmanruntime",
];
/// App HTTP stacks that are (almost) only found on phones.
const MOBILE_STACKS: &[&[u8]] = &[b"okhttp", b"cfnetwork", b"dalvik", b"alamofire"];
/// Words in a general-purpose HTTP library's product token.
const SERVER_PRODUCTS: &[&[u8]] = &[
    b"python",
    b"aiohttp",
    b"go-http-client",
    b"axios",
    b"node",
    b"undici",
    b"java",
    b"apache-httpclient",
    b"reqwest",
    b"hyper",
    b"ruby",
    b"guzzle",
    b"dotnet",
    b"libwww-perl",
    b"bot",
    b"spider",
    b"crawler",
];

/// Only the start of a `User-Agent` is looked at: it holds every marker used here, and it
/// bounds the work on the request path whatever the header's size.
const SCAN_LIMIT: usize = 256;

impl ClientPlatform {
    /// Classifies a `User-Agent` value.
    ///
    /// The first product token decides (`curl/…` is a CLI, `OpenAI/…` an SDK); for
    /// `Mozilla/…` the first comment tells a phone from a desktop.
    pub fn from_user_agent(user_agent: &str) -> Self {
        let mut buf = [0u8; SCAN_LIMIT];
        let src = user_agent.trim().as_bytes();
        let len = src.len().min(SCAN_LIMIT);
        for (dst, src) in buf.iter_mut().zip(&src[..len]) {
            *dst = src.to_ascii_lowercase();
        }
        let ua = &buf[..len];
        if ua.is_empty() {
            return ClientPlatform::Unknown;
        }
        let product_end = ua
            .iter()
            .position(|&b| matches!(b, b'/' | b' ' | b'(' | b';'))
            .unwrap_or(len);
        let product = &ua[..product_end];

        if product == b"mozilla" || product == b"opera" {
            let comment = first_comment(ua);
            if contains_any(comment, BOT_MARKERS) {
                ClientPlatform::Server
            } else if contains_any(comment, MOBILE_MARKERS) {
                ClientPlatform::Mobile
            } else {
                ClientPlatform::Browser
            }
        } else if contains_any(product, SDK_PRODUCTS) {
            ClientPlatform::Sdk
        } else if CLI_PRODUCTS.contains(&product) {
            ClientPlatform::Cli
        } else if contains_any(ua, MOBILE_STACKS) {
            ClientPlatform::Mobile
        } else if contains_any(product, SERVER_PRODUCTS) {
            ClientPlatform::Server
        } else {
            ClientPlatform::Unknown
        }
    }

    /// Classifies the `User-Agent` of a request head; `Unknown` when it is missing or not text.
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map_or(ClientPlatform::Unknown, Self::from_user_agent)
    }

    /// The platform's name as it is serialized (`"browser"`, `"sdk"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ClientPlatform::Browser => "browser",
            ClientPlatform::Mobile => "mobile",
            ClientPlatform::Sdk => "sdk",
            ClientPlatform::Cli => "cli",
            ClientPlatform::Server => "server",
            ClientPlatform::Unknown => "unknown",
        }
    }
}

impl std::str::FromStr for ClientPlatform {
    type Err = crate::unknown_name::UnknownName;

    /// Parses the serialized name (`"browser"`, `"sdk"`, …).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        use ClientPlatform::*;
        [Browser, Mobile, Sdk, Cli, Server, Unknown]
            .into_iter()
            .find(|c| c.as_str() == name)
            .ok_or_else(|| crate::unknown_name::UnknownName::new("client platform", name))
    }
}

/// The text inside the first `( … )`, or nothing.
fn first_comment(ua: &[u8]) -> &[u8] {
    let Some(open) = ua.iter().position(|&b| b == b'(') else {
        return &[];
    };
    let rest = &ua[open + 1..];
    let close = rest.iter().position(|&b| b == b')').unwrap_or(rest.len());
    &rest[..close]
}

fn contains_any(haystack: &[u8], needles: &[&[u8]]) -> bool {
    needles.iter().any(|needle| {
        haystack
            .windows(needle.len())
            .any(|window| window == *needle)
    })
}

#[cfg(test)]
mod tests {
    use super::ClientPlatform::{self, *};

    #[test]
    fn common_user_agents() {
        let cases = [
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36", Browser),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) Gecko/20100101 Firefox/121.0", Browser),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Mobile Safari/537.36", Mobile),
            ("MyApp/3.1 CFNetwork/1485 Darwin/23.1.0", Mobile),
            ("okhttp/4.12.0", Mobile),
            ("OpenAI/Python 1.54.0", Sdk),
            ("AsyncOpenAI/Python 1.54.0", Sdk),
            ("OpenAI/JS 4.67.0", Sdk),
            ("anthropic-typescript/0.30.0", Sdk),
            ("mcp-client/1.0 node", Sdk),
            ("PostmanRuntime/7.36.0", Cli),
            ("MyApp/1.0 Alamofire/5.8", Mobile),
            ("curl/8.5.0", Cli),
            ("Wget/1.21.4", Cli),
            ("HTTPie/3.2.2", Cli),
            ("python-requests/2.31.0", Server),
            ("Go-http-client/1.1", Server),
            ("axios/1.6.0", Server),
            ("reqwest/0.12", Server),
            ("Googlebot/2.1 (+http://www.google.com/bot.html)", Server),
            ("", Unknown),
            ("   ", Unknown),
            ("something-else", Unknown),
        ];
        for (ua, expected) in cases {
            assert_eq!(ClientPlatform::from_user_agent(ua), expected, "{ua}");
        }
    }

    #[test]
    fn headers_without_or_with_binary_user_agent() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(ClientPlatform::from_headers(&headers), Unknown);
        headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_bytes(b"\xffcurl/8").unwrap(),
        );
        assert_eq!(ClientPlatform::from_headers(&headers), Unknown);
    }

    #[test]
    fn huge_user_agent_is_fine() {
        let ua = "x".repeat(100_000);
        assert_eq!(ClientPlatform::from_user_agent(&ua), Unknown);
    }
}
