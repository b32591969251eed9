// An independent, certified OpenID Connect relying party (panva's openid-client v6) driving
// Bascule's OpenID Provider end to end: discovery, authorization code + PKCE through the HTML
// login form, ID token validation, UserInfo, refresh-token rotation and reuse detection,
// revocation, RP-initiated logout.
//
// Run by tests/interop/test_openid_client.py, which asserts on what this prints. Configured by
// environment variables:
//   ISSUER                    the OP's issuer URL, e.g. http://127.0.0.1:PORT
//   CLIENT_ID, CLIENT_SECRET  a confidential client registered at the OP
//   REDIRECT_URI              registered redirect URI (never fetched; it need not exist)
//   POST_LOGOUT_REDIRECT_URI  registered post-logout redirect URI (never fetched either)
//   EMAIL, PASSWORD           a user who signs in with a password only (no second factor)
//   TOKEN_ENDPOINT_AUTH       optional: client_secret_basic (default) or client_secret_post
//
// Output: one JSON object per line on stdout, {"step": "...", ...}. Steps whose outcome is an
// expectation carry "ok"; the last line is {"step": "done", "ok": ..., "failed": [...]}. An
// unexpected exception prints {"step": "error", "message": ...}. The exit code is 0 only when
// every expectation held.

import * as client from 'openid-client';
import * as jose from 'jose';

const REQUIRED = [
  'ISSUER',
  'CLIENT_ID',
  'CLIENT_SECRET',
  'REDIRECT_URI',
  'POST_LOGOUT_REDIRECT_URI',
  'EMAIL',
  'PASSWORD',
];
const SCOPE = 'openid profile email offline_access';
const HTTP_TIMEOUT_MS = 30_000;
const MAX_HOPS = 20; // redirects and pages in one browser navigation

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

const failed = [];
let phase = 'start'; // what main() is doing, named in an error report

function emit(step, fields = {}) {
  process.stdout.write(JSON.stringify({ step, ...fields }) + '\n');
}

// A step whose outcome is an expectation: remembered when it does not hold.
function expect(step, ok, fields = {}) {
  if (!ok) failed.push(step);
  emit(step, { ok: Boolean(ok), ...fields });
}

// What an openid-client / oauth4webapi error tells about the HTTP answer behind it.
function describeError(err) {
  const status = err?.status ?? err?.response?.status ?? err?.cause?.status;
  const out = { name: err?.name, message: String(err?.message ?? err) };
  if (err?.code) out.code = err.code;
  // openid-client wraps lower-level failures (a bad signature, a claim mismatch): say which.
  if (err?.cause instanceof Error) {
    out.cause = String(err.cause.message);
    if (err.cause.cause instanceof Error) out.cause += `: ${err.cause.cause.message}`;
  }
  if (status !== undefined) out.status = status;
  // ResponseBodyError (token, revocation endpoints): the OAuth error from the JSON body.
  if (typeof err?.error === 'string') out.error = err.error;
  if (err?.error_description) out.error_description = err.error_description;
  // WWWAuthenticateChallengeError (UserInfo): the Bearer challenge, RFC 6750 section 3.
  if (Array.isArray(err?.cause) && err.cause.length && err.cause[0]?.scheme) {
    out.challenges = err.cause.map((c) => ({ scheme: c.scheme, ...c.parameters }));
    const bearerError = err.cause.find((c) => c.parameters?.error)?.parameters.error;
    if (bearerError && !out.error) out.error = bearerError;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// A tiny browser: a cookie jar and manual redirects, so every hop is seen and checked
// ---------------------------------------------------------------------------------------------

class CookieJar {
  #cookies = new Map(); // "host name path" -> {host, name, value, path, expires}

  store(url, response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq < 1) continue;
      const cookie = {
        host: url.hostname,
        name: pair.slice(0, eq).trim(),
        value: pair.slice(eq + 1).trim(),
        path: defaultPath(url),
        expires: Infinity,
      };
      for (const attribute of attributes) {
        const [rawKey, ...rest] = attribute.split('=');
        const key = rawKey.trim().toLowerCase();
        const value = rest.join('=').trim();
        if (key === 'path' && value.startsWith('/')) cookie.path = value;
        else if (key === 'max-age') cookie.expires = Date.now() + Number(value) * 1000;
        else if (key === 'expires' && cookie.expires === Infinity) {
          const when = Date.parse(value);
          if (!Number.isNaN(when)) cookie.expires = when;
        }
        // Domain, Secure, HttpOnly, SameSite: one loopback host over plain http, so ignored.
      }
      const key = `${cookie.host} ${cookie.name} ${cookie.path}`;
      if (cookie.expires <= Date.now()) this.#cookies.delete(key);
      else this.#cookies.set(key, cookie);
    }
  }

  header(url) {
    const now = Date.now();
    return [...this.#cookies.values()]
      .filter((c) => c.host === url.hostname && c.expires > now)
      .filter((c) => pathMatches(url.pathname, c.path))
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }
}

function defaultPath(url) {
  const path = url.pathname;
  return path.lastIndexOf('/') > 0 ? path.slice(0, path.lastIndexOf('/')) : '/';
}

function pathMatches(requestPath, cookiePath) {
  return (
    requestPath === cookiePath ||
    (requestPath.startsWith(cookiePath) &&
      (cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/'))
  );
}

const jar = new CookieJar();

// One HTTP request as a browser makes it, never following redirects by itself.
async function browserRequest(url, { method = 'GET', form } = {}) {
  const headers = { Accept: 'text/html,application/xhtml+xml' };
  const cookie = jar.header(url);
  if (cookie) headers.Cookie = cookie;
  let body;
  if (form) {
    headers['Content-Type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(form).toString();
  }
  const response = await fetch(url, {
    method,
    headers,
    body,
    redirect: 'manual',
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  });
  jar.store(url, response);
  return response;
}

// ---------------------------------------------------------------------------------------------
// Just enough HTML: forms, their inputs and buttons (attribute values entity-decoded)
// ---------------------------------------------------------------------------------------------

const NAMED_ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };

function decodeEntities(text) {
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (whole, entity) => {
    if (entity[0] === '#') {
      const code =
        entity[1] === 'x' || entity[1] === 'X'
          ? parseInt(entity.slice(2), 16)
          : parseInt(entity.slice(1), 10);
      return String.fromCodePoint(code);
    }
    return NAMED_ENTITIES[entity.toLowerCase()] ?? whole;
  });
}

function parseAttributes(tag) {
  const attributes = {};
  const pattern = /([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  // Skip the tag name itself.
  const inner = tag.replace(/^<\s*[a-z]+/i, '').replace(/\/?>$/, '');
  for (const m of inner.matchAll(pattern)) {
    attributes[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attributes;
}

// Every <form> on the page: {action (absolute URL), method, inputs: [...], buttons: [...]}.
function parseForms(html, pageUrl) {
  const forms = [];
  for (const m of html.matchAll(/<form\b[^>]*>([\s\S]*?)<\/form>/gi)) {
    const attributes = parseAttributes(m[0].slice(0, m[0].indexOf('>') + 1));
    const inputs = [...m[1].matchAll(/<input\b[^>]*>/gi)].map((i) => parseAttributes(i[0]));
    const buttons = [...m[1].matchAll(/<button\b[^>]*>([\s\S]*?)<\/button>/gi)].map((b) => ({
      ...parseAttributes(b[0].slice(0, b[0].indexOf('>') + 1)),
      text: decodeEntities(b[1].replace(/<[^>]*>/g, '').trim()),
    }));
    // An absent or empty action posts back to the page's own URL (query string included).
    const action = new URL(attributes.action || pageUrl.href, pageUrl);
    forms.push({ action, method: (attributes.method || 'get').toUpperCase(), inputs, buttons });
  }
  return forms;
}

function hiddenFields(form) {
  const fields = {};
  for (const input of form.inputs) {
    if ((input.type || '').toLowerCase() === 'hidden' && input.name) {
      fields[input.name] = input.value ?? '';
    }
  }
  return fields;
}

const hasInput = (form, name) => form.inputs.some((i) => i.name === name);

// The readable text of a page's main content, for error messages.
function pageText(html) {
  const main = html.match(/<main\b[^>]*>([\s\S]*?)<\/main>/i)?.[1] ?? html;
  return decodeEntities(
    main
      .replace(/<(script|style)\b[\s\S]*?<\/\1>/gi, ' ')
      .replace(/<[^>]*>/g, ' ')
      .replace(/\s+/g, ' ')
      .trim(),
  ).slice(0, 300);
}

// ---------------------------------------------------------------------------------------------
// Browser navigation through the OP's pages until it sends us back to the client
// ---------------------------------------------------------------------------------------------

// Follows redirects and fills the OP's pages (login form, consent) until a Location starts
// with `stopAt`. Returns {location, trail, sawLoginForm, sawConsent, sawConfirmation}.
// With `signIn` false a login form is an error (after logout, say). `page` decides what to do
// with any other HTML page: return a submission {action, form} or null.
async function navigate(start, stopAt, { method = 'GET', form, page, signIn = true } = {}) {
  const trail = [];
  let url = new URL(start);
  let request = { method, form };
  const seen = { sawLoginForm: false, sawConsent: false, sawConfirmation: false };
  for (let hop = 0; hop < MAX_HOPS; hop++) {
    const response = await browserRequest(url, request);
    trail.push(`${request.method} ${url.pathname} -> ${response.status}`);
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      const next = new URL(location, url); // Location may be relative
      if (next.href.startsWith(stopAt)) return { location: next.href, trail, ...seen };
      // 307/308 repeat the request; every other redirect becomes a GET.
      request = response.status === 307 || response.status === 308 ? request : { method: 'GET' };
      url = next;
      continue;
    }
    const html = await response.text();
    const forms = parseForms(html, url);

    // The login form: email and password, with the hidden csrf_token and next carried over.
    const login = forms.find((f) => hasInput(f, 'password') && hasInput(f, 'csrf_token'));
    if (login && !signIn) {
      throw new Error(`unexpected login page at ${url.href}; trail: ${trail.join(', ')}`);
    }
    if (login) {
      // A second login form means the first sign-in did not take (wrong password, lockout …).
      if (seen.sawLoginForm) {
        throw new Error(
          `sign-in refused (HTTP ${response.status}): ${pageText(html)}; ` +
            `trail: ${trail.join(', ')}`,
        );
      }
      seen.sawLoginForm = true;
      const fields = hiddenFields(login);
      request = {
        method: 'POST',
        form: {
          email: process.env.EMAIL,
          password: process.env.PASSWORD,
          csrf_token: fields.csrf_token,
          next: fields.next ?? '',
        },
      };
      url = login.action;
      continue;
    }

    // A consent page (third-party clients): a form with a `decision` button valued `allow`.
    const consent = forms.find(
      (f) =>
        hasInput(f, 'csrf_token') &&
        f.buttons.some((b) => b.name === 'decision' && b.value === 'allow'),
    );
    if (consent && signIn) {
      seen.sawConsent = true;
      request = { method: 'POST', form: { ...hiddenFields(consent), decision: 'allow' } };
      url = consent.action;
      continue;
    }

    const submission = page?.(forms, url);
    if (submission) {
      seen.sawConfirmation = true;
      request = { method: 'POST', form: submission.form };
      url = submission.action;
      continue;
    }
    throw new Error(
      `stuck at ${url.href} (HTTP ${response.status}): ${pageText(html)}; ` +
        `trail: ${trail.join(', ')}`,
    );
  }
  throw new Error(`more than ${MAX_HOPS} hops; trail: ${trail.join(', ')}`);
}

// ---------------------------------------------------------------------------------------------
// The relying party
// ---------------------------------------------------------------------------------------------

// One authorization request with fresh PKCE (S256), state and nonce, as openid-client builds it.
async function authorizationRequest(config) {
  const codeVerifier = client.randomPKCECodeVerifier();
  const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: process.env.REDIRECT_URI,
    scope: SCOPE,
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  return { url, codeVerifier, state, nonce };
}

// Sign in through the browser and redeem the code; returns the tokens and what was seen.
async function signIn(config, label) {
  const auth = await authorizationRequest(config);
  const journey = await navigate(auth.url, process.env.REDIRECT_URI);
  const callback = new URL(journey.location);
  emit(`${label}_authorization_response`, {
    trail: journey.trail,
    saw_login_form: journey.sawLoginForm,
    saw_consent: journey.sawConsent,
    params: [...callback.searchParams.keys()].sort(),
    iss: callback.searchParams.get('iss'),
    state_matches: callback.searchParams.get('state') === auth.state,
  });
  // openid-client checks state, iss (when the OP advertises RFC 9207 support), then redeems the
  // code with the PKCE verifier and validates the ID token: signature (non-repudiation checks
  // are on), iss, aud, azp, exp, iat, nonce.
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: auth.codeVerifier,
    expectedState: auth.state,
    expectedNonce: auth.nonce,
    idTokenExpected: true,
  });
  return { tokens, auth, callback, journey };
}

// Verify an ID token a second time, independently, with jose against the OP's JWKS.
async function verifyWithJose(config, jwt) {
  const metadata = config.serverMetadata();
  const jwks = jose.createRemoteJWKSet(new URL(metadata.jwks_uri));
  const { payload, protectedHeader } = await jose.jwtVerify(jwt, jwks, {
    issuer: metadata.issuer,
    audience: process.env.CLIENT_ID,
  });
  return { payload, header: protectedHeader };
}

async function main() {
  const missing = REQUIRED.filter((name) => !process.env[name]);
  if (missing.length) throw new Error(`missing environment variables: ${missing.join(', ')}`);
  const env = process.env;

  phase = 'discovery';
  // 1. Discovery. allowInsecureRequests because the test OP is plain http on loopback;
  //    enableNonRepudiationChecks makes openid-client verify the ID token's signature against
  //    the OP's JWKS (by default it trusts the TLS channel instead, which would prove nothing
  //    about our signatures).
  const clientAuth =
    (env.TOKEN_ENDPOINT_AUTH || 'client_secret_basic') === 'client_secret_post'
      ? client.ClientSecretPost(env.CLIENT_SECRET)
      : client.ClientSecretBasic(env.CLIENT_SECRET);
  const config = await client.discovery(
    new URL(env.ISSUER),
    env.CLIENT_ID,
    env.CLIENT_SECRET,
    clientAuth,
    { execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks] },
  );
  const metadata = config.serverMetadata();
  emit('discovery', {
    issuer: metadata.issuer,
    authorization_endpoint: metadata.authorization_endpoint,
    token_endpoint: metadata.token_endpoint,
    userinfo_endpoint: metadata.userinfo_endpoint,
    jwks_uri: metadata.jwks_uri,
    revocation_endpoint: metadata.revocation_endpoint,
    end_session_endpoint: metadata.end_session_endpoint,
    code_challenge_methods_supported: metadata.code_challenge_methods_supported,
    id_token_signing_alg_values_supported: metadata.id_token_signing_alg_values_supported,
    authorization_response_iss_parameter_supported:
      metadata.authorization_response_iss_parameter_supported,
    token_endpoint_auth: env.TOKEN_ENDPOINT_AUTH || 'client_secret_basic',
  });

  phase = 'first sign-in';
  // 2-4. Authorization code flow with PKCE, signing in through the login form.
  const first = await signIn(config, 'first');
  const tokens = first.tokens;
  const claims = tokens.claims();
  emit('token_response', {
    token_type: tokens.token_type,
    expires_in: tokens.expires_in,
    scope: tokens.scope,
    has_access_token: Boolean(tokens.access_token),
    has_refresh_token: Boolean(tokens.refresh_token),
    has_id_token: Boolean(tokens.id_token),
  });
  emit('id_token_claims', { claims });

  // Our own checks on top of openid-client's, so the test can see each one.
  const now = Math.floor(Date.now() / 1000);
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  const verified = await verifyWithJose(config, tokens.id_token);
  const checks = {
    // openid-client only returns after verifying the signature with the JWKS (non-repudiation
    // checks on); jose verified it a second time here.
    signature_verified: true,
    signature_verified_by_jose: verified.payload.sub === claims.sub,
    alg: verified.header.alg,
    kid: verified.header.kid ?? null,
    iss: claims.iss === metadata.issuer,
    iss_is_configured_issuer: claims.iss.replace(/\/$/, '') === env.ISSUER.replace(/\/$/, ''),
    aud: aud.includes(env.CLIENT_ID) && (aud.length === 1 || claims.azp === env.CLIENT_ID),
    nonce: claims.nonce === first.auth.nonce,
    exp: typeof claims.exp === 'number' && claims.exp > now,
    iat: typeof claims.iat === 'number' && claims.iat <= now + 30,
    sub: typeof claims.sub === 'string' && claims.sub.length > 0,
    sub_is_not_email: claims.sub !== env.EMAIL && !String(claims.sub).includes('@'),
    auth_time: typeof claims.auth_time === 'number',
    amr: Array.isArray(claims.amr) && claims.amr.length > 0,
    // RFC 9207: the authorization response names its issuer.
    authorization_response_iss: first.callback.searchParams.get('iss') === metadata.issuer,
  };
  const checked = Object.entries(checks).filter(([, v]) => typeof v === 'boolean');
  expect('id_token_checks', checked.every(([, v]) => v), { checks });

  phase = 'userinfo';
  // 5. UserInfo with the access token; openid-client checks its sub equals the ID token's.
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  expect('userinfo', userinfo.sub === claims.sub && userinfo.email === env.EMAIL, { userinfo });

  phase = 'refresh';
  // 6. Refresh with rotation, then reuse detection: the old refresh token is refused, and its
  //    whole family (including the one just issued) is revoked with it.
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  const rotated =
    Boolean(refreshed.refresh_token) && refreshed.refresh_token !== tokens.refresh_token;
  expect('refresh', rotated && Boolean(refreshed.access_token), {
    rotated,
    has_access_token: Boolean(refreshed.access_token),
    new_access_token_differs: refreshed.access_token !== tokens.access_token,
    has_id_token: Boolean(refreshed.id_token),
    id_token_sub: refreshed.claims()?.sub ?? null,
  });
  await expectInvalidGrant('refresh_reuse', config, tokens.refresh_token);
  await expectInvalidGrant('refresh_family_revoked', config, refreshed.refresh_token);

  phase = 'second sign-in and revocation';
  // 7. A second sign-in (the OP session cookie is still there, so normally no login form), then
  //    revoke its access token (RFC 7009) and see UserInfo refuse it.
  const second = await signIn(config, 'second');
  const secondClaims = second.tokens.claims();
  expect('second_sign_in', secondClaims.sub === claims.sub, {
    saw_login_form: second.journey.sawLoginForm,
    same_sub: secondClaims.sub === claims.sub,
    nonce: secondClaims.nonce === second.auth.nonce,
  });
  const before = await client.fetchUserInfo(config, second.tokens.access_token, claims.sub);
  expect('userinfo_before_revocation', before.sub === claims.sub, { sub: before.sub });
  await client.tokenRevocation(config, second.tokens.access_token, {
    token_type_hint: 'access_token',
  });
  emit('revocation', { revoked: true });
  try {
    const after = await client.fetchUserInfo(config, second.tokens.access_token, claims.sub);
    expect('userinfo_after_revocation', false, { refused: false, userinfo: after });
  } catch (err) {
    const error = describeError(err);
    expect('userinfo_after_revocation', error.status === 401, { refused: true, ...error });
  }

  phase = 'logout';
  // 8. RP-initiated logout, then the OP must ask for a sign-in again.
  const endSession = client.buildEndSessionUrl(config, {
    id_token_hint: second.tokens.id_token,
    post_logout_redirect_uri: env.POST_LOGOUT_REDIRECT_URI,
    state: 'bye',
  });
  const logout = await navigate(endSession, env.POST_LOGOUT_REDIRECT_URI, {
    page: confirmLogout,
    signIn: false,
  });
  const back = new URL(logout.location);
  expect('logout', back.searchParams.get('state') === 'bye', {
    location: logout.location,
    state: back.searchParams.get('state'),
    confirmation_page: logout.sawConfirmation,
    trail: logout.trail,
  });

  const again = await authorizationRequest(config);
  const response = await browserRequest(again.url);
  const location = response.headers.get('location');
  const target = location ? new URL(location, again.url) : null;
  let html = '';
  if (location) await response.body?.cancel();
  else html = await response.text();
  // Sent to the login page, or shown a login form in place.
  const loginPage = target
    ? target.pathname === '/login'
    : parseForms(html, again.url).some((f) => hasInput(f, 'password'));
  expect('login_required_after_logout', loginPage, {
    status: response.status,
    location: target?.href ?? null,
    sent_back_to_client: Boolean(target?.href.startsWith(env.REDIRECT_URI)),
  });
}

async function expectInvalidGrant(step, config, refreshToken) {
  try {
    const result = await client.refreshTokenGrant(config, refreshToken);
    expect(step, false, { rejected: false, has_access_token: Boolean(result.access_token) });
  } catch (err) {
    const error = describeError(err);
    expect(step, error.error === 'invalid_grant', { rejected: true, ...error });
  }
}

// An end-session confirmation page, if the OP shows one: submit its form as a person would,
// with every hidden input (csrf_token, and whatever the OP carries through) and the button that
// confirms. The form is the one carrying more than the CSRF token, or posting back to the page
// itself; never the site header's plain "Sign out" form, which would hide an error page.
function confirmLogout(forms, pageUrl) {
  const candidates = forms.filter(
    (f) => f.method === 'POST' && hasInput(f, 'csrf_token') && !hasInput(f, 'password'),
  );
  const form =
    candidates.find((f) => Object.keys(hiddenFields(f)).some((n) => n !== 'csrf_token')) ??
    candidates.find((f) => f.action.pathname === pageUrl.pathname);
  if (!form) return null;
  const fields = hiddenFields(form);
  const refusal = /^(no|cancel|deny|stay|keep)/i;
  const button = form.buttons.find(
    (b) => b.name && !refusal.test(b.value ?? '') && !refusal.test(b.text),
  );
  if (button) fields[button.name] = button.value ?? '';
  return { action: form.action, form: fields };
}

try {
  await main();
  emit('done', { ok: failed.length === 0, failed });
  process.exitCode = failed.length === 0 ? 0 : 1;
} catch (err) {
  emit('error', { phase, ...describeError(err), stack: err?.stack });
  process.exitCode = 1;
}
