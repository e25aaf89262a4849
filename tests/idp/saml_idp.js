// A real SAML 2.0 IdP (the `saml-idp` package) for the SSO tests, on 127.0.0.1 only.
//
// Configured by one JSON argument: {port, cert, key (PEM file paths), acsUrl, audience,
// issuer, user: {userName, email, ...}}. It signs responses and assertions with the key; the
// user form it shows lets the browser (or a test) post the attributes to sign in.
const { runServer } = require('saml-idp');

const config = JSON.parse(process.argv[2]);
const metadata = [
  { id: 'email', optional: false, displayName: 'E-Mail Address', multiValue: false },
  { id: 'displayName', optional: true, displayName: 'Display Name', multiValue: false },
  { id: 'groups', optional: true, displayName: 'Groups', multiValue: true },
];

runServer({
  host: '127.0.0.1',
  port: config.port,
  cert: config.cert,
  key: config.key,
  issuer: config.issuer,
  acsUrl: config.acsUrl,
  audience: config.audience,
  signResponse: true,
  config: { user: config.user, metadata },
});
