// Connects the official MCP TypeScript SDK to `cargo run --example mcp_server`:
// initialize, list tools, call a tool, get a tool error and a protocol error.
//   npm install @modelcontextprotocol/sdk@1 && node examples/mcp_client_check.mjs
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
const transport = new StreamableHTTPClientTransport(new URL(process.env.MCP_URL ?? "http://127.0.0.1:3001/mcp"), { requestInit: { headers: { "x-user-id": "sdk-user" } } });
const client = new Client({ name: "check", version: "1.0.0" });
await client.connect(transport);
console.log("server:", JSON.stringify(client.getServerVersion()), "protocol ok");
const tools = await client.listTools();
console.log("tools:", tools.tools.map(t => t.name).join(","));
const sum = await client.callTool({ name: "add", arguments: { a: 2, b: 3 } });
console.log("add:", JSON.stringify(sum.content));
const zero = await client.callTool({ name: "divide", arguments: { a: 1, b: 0 } });
console.log("divide by zero isError:", zero.isError, JSON.stringify(zero.content));
try { await client.callTool({ name: "nope", arguments: {a: 1, b: 1} }); } catch (e) { console.log("unknown tool error:", e.code, e.message); }
await client.close();
