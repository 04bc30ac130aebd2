// A real OpenID Connect provider for the OIDC login test: the npm `oidc-provider` package (the
// certified reference implementation), pinned in package.json. Its development interactions
// serve the login and consent forms; any password is accepted, the login names the account.
//
//   node tests/support/oidc_provider.mjs <port> <redirect_uri> <client_id> <client_secret>
//
// Accounts: "alice" (groups sw-operators, sw-viewers) and "mallory" (groups sw-strangers).
// Prints "ready <issuer>" on stdout once it listens.
import Provider from "oidc-provider";

const [port, redirectUri, clientId, clientSecret] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

const ACCOUNTS = {
  alice: { email: "alice@example.com", groups: ["sw-viewers", "sw-operators"] },
  mallory: { email: "mallory@example.com", groups: ["sw-strangers"] },
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      response_types: ["code"],
      grant_types: ["authorization_code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["preferred_username"],
    groups: ["groups"],
  },
  scopes: ["openid", "email", "profile", "groups"],
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const account = ACCOUNTS[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: account.email, email_verified: true, preferred_username: id, groups: account.groups };
      },
    };
  },
});
// Plain HTTP on 127.0.0.1: the test has no certificates, and the provider must not insist.
provider.proxy = false;

provider.listen(Number(port), "127.0.0.1", () => {
  console.log(`ready ${issuer}`);
});
