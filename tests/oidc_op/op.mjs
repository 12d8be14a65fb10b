// A real OpenID Provider for rssp's tests: panva's certified oidc-provider on a loopback port.
//
// Configured by the JSON in OP_CONFIG: {"port", "issuer", "clients": [{client_id, client_secret,
// redirect_uris}]}. Accounts need no password: the login page takes a name, which becomes the
// subject.
//
// It can misbehave on purpose, for one sign-in, when a test asks for it (POST /test/mode
// {"mode": ...}): "stale" records the sign-in as an hour old (auth_time), "wrong-aud" re-signs the
// ID token with another audience, "foreign-key" signs it with a key that is not in the JWKS (same
// kid), "replay" returns the previous ID token again instead of the new one. rssp must refuse
// each; the OP itself stays the real library doing real flows.
import http from "node:http";
import * as jose from "jose";
import Provider from "oidc-provider";

const cfg = JSON.parse(process.env.OP_CONFIG);
const KID = "rssp-test-op-1";
const { privateKey } = await jose.generateKeyPair("ES256", { extractable: true });
const signingJwk = { ...(await jose.exportJWK(privateKey)), kid: KID, alg: "ES256", use: "sig" };

const provider = new Provider(cfg.issuer, {
  clients: cfg.clients.map((c) => ({
    ...c, grant_types: ["authorization_code"], response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic", id_token_signed_response_alg: "ES256",
  })),
  jwks: { keys: [signingJwk] },
  cookies: { keys: ["rssp test op cookie key, not a secret"] },
  pkce: { required: () => true },
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  loadExistingGrant: async (ctx) => {  // first-party test clients: consent is implied
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId,
                                                accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope("openid");
    await grant.save();
    return grant;
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: { devInteractions: { enabled: false } },
  ttl: { Session: 600, Interaction: 600, Grant: 600 },
});
provider.proxy = false;

let mode = "normal";
let previousIdToken = null;

async function resign(token, change, key) {
  const claims = { ...jose.decodeJwt(token), ...change };
  return new jose.SignJWT(claims).setProtectedHeader({ alg: "ES256", kid: KID, typ: "JWT" }).sign(key);
}

provider.use(async (ctx, next) => {
  if (ctx.path === "/test/mode" && ctx.method === "POST") {
    let body = "";
    for await (const chunk of ctx.req) { body += chunk; }
    mode = JSON.parse(body).mode;
    ctx.status = 204;
    return;
  }
  await next();
  if (ctx.path !== "/token" || ctx.status !== 200 || !ctx.body || !ctx.body.id_token) { return; }
  const issued = ctx.body.id_token;
  if (mode === "wrong-aud") {
    ctx.body = { ...ctx.body, id_token: await resign(issued, { aud: "someone-else" }, privateKey) };
  } else if (mode === "foreign-key") {
    const other = (await jose.generateKeyPair("ES256")).privateKey;
    ctx.body = { ...ctx.body, id_token: await resign(issued, {}, other) };
  } else if (mode === "replay" && previousIdToken) {
    ctx.body = { ...ctx.body, id_token: previousIdToken };
  }
  if (mode === "normal") { previousIdToken = issued; }
  mode = "normal";
});

function page(res, status, html) {
  res.writeHead(status, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
  res.end(html);
}

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (req.method === "GET") {
    return page(res, 200, `<!DOCTYPE html><html><body><h1>Test OP sign-in</h1>
      <form method="post"><label for="login">Account</label><input id="login" name="login">
      <button id="op-signin" type="submit">Sign in</button></form></body></html>`);
  }
  let body = "";
  for await (const chunk of req) { body += chunk; }
  const login = new URLSearchParams(body).get("login") || "";
  const now = Math.floor(Date.now() / 1000);
  const ts = mode === "stale" ? now - 3600 : now;
  return provider.interactionFinished(req, res, { login: { accountId: login, ts } },
                                      { mergeWithLastSubmission: false });
}

const callback = provider.callback();
http.createServer((req, res) => {
  if (req.url.startsWith("/interaction/")) {
    interaction(req, res).catch((err) => page(res, 500, String(err)));
  } else {
    callback(req, res);
  }
}).listen(cfg.port, "127.0.0.1", () => { console.log(`test OP listening on ${cfg.issuer}`); });
