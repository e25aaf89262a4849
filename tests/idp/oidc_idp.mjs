// A real OpenID Provider (the `oidc-provider` package) for the SSO tests, on 127.0.0.1 only.
//
// Configured by one JSON argument: {port, client: {client_id, client_secret, redirect_uris},
// accounts: {<login>: {<claim>: value}}}. Prints "READY <issuer>" once it listens. The dev
// interactions (any password is accepted; the login names an account) and the consent screen
// are the package's own. Its cookies get names of their own: the gateway shares the host.
import Provider from 'oidc-provider';

const config = JSON.parse(process.argv[2]);
const issuer = `http://127.0.0.1:${config.port}`;

const provider = new Provider(issuer, {
  clients: [{
    ...config.client,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
  }],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'groups'],
  },
  cookies: {
    names: { session: 'idp_session', interaction: 'idp_interaction', resume: 'idp_resume' },
    keys: ['test-only-cookie-key-0123456789'],
  },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const claims = config.accounts[id];
    if (!claims) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
});

provider.listen(config.port, '127.0.0.1', () => {
  console.log(`READY ${issuer}`);
});
