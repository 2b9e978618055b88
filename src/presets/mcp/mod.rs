//! [`McpLayer`]: the JSON-RPC method, the tool called, and JSON-RPC errors of MCP's
//! streamable HTTP transport. The layer, its service, its future and the two bodies'
//! observers each have a file.

mod future;
mod layer;
mod request;
mod response;
mod service;

pub use future::McpFuture;
pub use layer::McpLayer;
pub use request::{McpRequestBody, McpRequestRead};
pub use response::{McpResponseBody, McpResponseRead};
pub use service::Mcp;
