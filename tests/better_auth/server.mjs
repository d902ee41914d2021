// A real Better Auth server for the Todo API tests: email/password sign-in plus the `jwt`
// plugin, over plain node:http, with an in-memory database (no native modules).
//
//   PORT=3999 node tests/better_auth/server.mjs      -> prints "READY 3999" when listening
//
// Environment: PORT (required, or 0 for any free port), BETTER_AUTH_SECRET (a fixed test value
// by default), JWT_ALG (EdDSA by default; ES256, ES512, RS256 or PS256).
import { createServer } from "node:http";

import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { toNodeHandler } from "better-auth/node";
import { jwt } from "better-auth/plugins/jwt";

const host = "127.0.0.1";
const requestedPort = Number.parseInt(process.env.PORT ?? "", 10);
if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
  console.error("server.mjs: set PORT to the port to listen on");
  process.exit(2);
}
const secret =
  process.env.BETTER_AUTH_SECRET ?? "better-auth-test-secret-0123456789-abcdefghijklmnop";
const alg = process.env.JWT_ALG || "EdDSA";

// The memory adapter needs every table the configured plugins use to exist up front.
const database = { user: [], session: [], account: [], verification: [], jwks: [] };

function makeAuth(port) {
  const baseURL = `http://${host}:${port}`;
  return betterAuth({
    baseURL,
    secret,
    database: memoryAdapter(database),
    emailAndPassword: { enabled: true },
    // Tests sign up many users from one address in a burst.
    rateLimit: { enabled: false },
    telemetry: { enabled: false },
    plugins: [jwt({ jwks: { keyPairConfig: { alg } } })],
  });
}

let handler = null;
const server = createServer((req, res) => {
  if (handler === null) {
    res.writeHead(503).end();
    return;
  }
  handler(req, res).catch((error) => {
    console.error(error);
    if (!res.headersSent) res.writeHead(500);
    res.end();
  });
});

server.listen(requestedPort, host, () => {
  const { port } = server.address();
  handler = toNodeHandler(makeAuth(port));
  console.log(`READY ${port}`);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
