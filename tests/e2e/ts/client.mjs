// The TypeScript MCP SDK as a client of the gateway: connects to URL over TLS (trusting CA_FILE, dialling
// 127.0.0.1 while keeping the URL's host for SNI, Host and the certificate check), lists the tools and prints
// {"tools": [names]} or {"error": "..."} as one JSON line.
//   node client.mjs URL CA_FILE
import { readFileSync } from "node:fs";
import { Agent, fetch as undiciFetch } from "undici";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, caFile] = process.argv.slice(2);
const host = new URL(url).hostname;
const agent = new Agent({
  connect: {
    ca: readFileSync(caFile),
    servername: host,
    lookup: (_name, opts, cb) =>
      opts && opts.all ? cb(null, [{ address: "127.0.0.1", family: 4 }]) : cb(null, "127.0.0.1", 4),
  },
});
const fetchPinned = (input, init) => undiciFetch(input, { ...init, dispatcher: agent });

const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: "timed out" }));
  process.exit(0);
}, 20000);
try {
  const client = new Client({ name: "e2e-ts", version: "1" });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { fetch: fetchPinned }));
  const { tools } = await client.listTools();
  console.log(JSON.stringify({ tools: tools.map((t) => t.name) }));
  await client.close();
} catch (e) {
  console.log(JSON.stringify({ error: String(e && e.message ? e.message : e) }));
}
clearTimeout(timer);
process.exit(0);
