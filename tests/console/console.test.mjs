// Browser test of the admin console (/ui/) against a real gateway and a real WordPress
// site, in Debian's headless Chromium driven by playwright-core; axe-core checks each
// page. Run by tests/it/console.rs (which starts the gateway and passes everything in
// the environment); exits non-zero at the first failure, printing what failed.
//
// Environment: WPGATE_BROWSER_DIR (node_modules with playwright-core and axe-core),
// CONSOLE_ADMIN (http://127.0.0.1:<admin port>), CONSOLE_PROXY (proxy base URL),
// CONSOLE_WRITE_TOKEN, CONSOLE_READ_TOKEN, CONSOLE_WP_URL, CONSOLE_WP_USER,
// CONSOLE_WP_APP_PASSWORD; optional: CONSOLE_WP_SETUP (tests/wordpress/setup.sh),
// CONSOLE_WP_SITE (its site name), CONSOLE_WP_ENV (sites.env) to revoke the
// Application Password and replace it. Secrets are never printed.
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const require = createRequire(env('WPGATE_BROWSER_DIR').replace(/\/?$/, '/'));
const { chromium } = require('playwright-core');
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const ADMIN = env('CONSOLE_ADMIN');
const PROXY = env('CONSOLE_PROXY');
const WRITE = env('CONSOLE_WRITE_TOKEN');
const READ = env('CONSOLE_READ_TOKEN');
const WP_URL = env('CONSOLE_WP_URL');
const WP_USER = env('CONSOLE_WP_USER');
const WP_PASS = env('CONSOLE_WP_APP_PASSWORD');
const SITE = 'console-wp';
const ORIGIN = new URL(ADMIN).origin;
const started = Date.now();

const secrets = [WRITE, READ, WP_PASS];
const offOrigin = [];
const pageErrors = [];

function log(...a) { console.log(`[console ${((Date.now() - started) / 1000).toFixed(1)}s]`, ...a); }
function scrub(s) {
  let out = String(s);
  for (const x of secrets) if (x) out = out.split(x).join('<secret>');
  return out;
}
function assert(cond, what) { if (!cond) throw new Error('assertion failed: ' + what); }

async function step(name, fn) {
  const t = Date.now();
  try {
    await fn();
    log(`ok   ${name} (${Date.now() - t} ms)`);
  } catch (e) {
    log(`FAIL ${name}: ${scrub(e && e.stack ? e.stack : e)}`);
    throw e;
  }
}

function watch(page) {
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.protocol === 'data:' || u.protocol === 'blob:') return;
    if (u.origin !== ORIGIN) offOrigin.push(r.url());
  });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => {
    // A refused API call (401/403/404/422) is logged by Chromium as a failed resource:
    // expected in this test. Anything else (a CSP violation, an exception) is not.
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) pageErrors.push(m.text());
  });
}

async function axe(page, label) {
  // Evaluated through the DevTools protocol: not an inline script, so the page's CSP
  // stays in force for everything else.
  await page.evaluate(`${axeSource}\n;0`);
  const res = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  const bad = res.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (bad.length) throw new Error(`axe on ${label}: ${JSON.stringify(bad, null, 1)}`);
  log(`axe  ${label}: no serious or critical violation (${res.length} minor)`);
}

async function signIn(page, token) {
  await page.goto(ADMIN + '/ui/');
  await page.getByLabel('Admin token', { exact: true }).fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

async function proxyStatus(key) {
  const r = await fetch(PROXY + '/wp-json/wp/v2/users/me', { headers: { 'X-Website-ID': SITE, 'X-API-Key': key } });
  await r.arrayBuffer();
  return r.status;
}

async function until(what, fn, ms = 10000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last === true) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what}: still ${JSON.stringify(last)} after ${ms} ms`);
}

async function testNow(page, want) {
  await page.getByRole('button', { name: 'Test now' }).click();
  await page.locator('#notice', { hasText: `Tested ${SITE}: ` }).waitFor();
  const state = await page.locator('#health .badge').first().textContent();
  assert(state === want, `Test now shows ${state}, want ${want}; message: ${scrub(await page.locator('#health-message').textContent())}`);
}

const WRITE_CONTROLS = ['Add site', 'Test now', 'Issue key', 'Revoke', 'Rotate', 'Replace credential', 'Delete site',
  'Disable site', 'Enable site', 'Create token', 'Save'];

async function noWriteControls(page, label) {
  for (const name of WRITE_CONTROLS) {
    const n = await page.getByRole('button', { name }).count();
    assert(n === 0, `${label}: a read-only token sees the write control "${name}"`);
  }
  const textareas = await page.locator('textarea').count();
  assert(textareas === 0, `${label}: a read-only token sees ${textareas} editors`);
}

const browser = await chromium.launch({ executablePath: process.env.CONSOLE_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
let code = 0;
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  watch(page);
  page.on('dialog', (d) => d.dismiss()); // window.confirm is never used: <dialog> is

  await step('the assets carry strict headers', async () => {
    const r = await page.request.get(ADMIN + '/ui/');
    const h = r.headers();
    assert(/default-src 'self'/.test(h['content-security-policy'] || ''), 'CSP ' + h['content-security-policy']);
    assert(!/unsafe-inline/.test(h['content-security-policy']), 'CSP allows inline');
    assert(h['x-frame-options'] === 'DENY', 'X-Frame-Options');
    assert(h['cache-control'] === 'no-cache', 'index Cache-Control ' + h['cache-control']);
  });

  await step('a wrong token is refused', async () => {
    await signIn(page, 'wpgat_aaaaaaaaaaaa_' + 'x'.repeat(40));
    await page.locator('#error', { hasText: 'admin.unauthorized' }).waitFor();
    assert(/request id [0-9a-f]{8,}/.test(await page.locator('#error').textContent()), 'the error shows its request id');
    assert(await page.getByLabel('Admin token', { exact: true }).isVisible(), 'still on the sign-in page');
    assert(await page.evaluate(() => sessionStorage.length) === 0, 'a refused token was kept');
    await axe(page, 'sign-in');
  });

  await step('sign in with a write token and see the overview', async () => {
    await signIn(page, WRITE);
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await page.getByRole('heading', { name: 'Sites by health' }).waitFor();
    assert((await ctx.cookies()).length === 0, 'a cookie was set');
    await axe(page, 'overview');
  });

  await step('add the WordPress site, checked before saving', async () => {
    await page.getByRole('link', { name: 'Sites', exact: true }).click();
    await page.getByRole('heading', { name: 'Add a site' }).waitFor();
    await axe(page, 'sites');
    const form = page.locator('form', { has: page.getByRole('button', { name: 'Add site' }) });
    await form.getByLabel('Site id', { exact: true }).fill(SITE);
    await form.getByLabel('Name', { exact: true }).fill('Console WordPress');
    await form.getByLabel('Upstream URL', { exact: true }).fill(WP_URL);
    await form.getByLabel('Credential', { exact: true }).selectOption('app_password');
    await form.getByLabel('WordPress user', { exact: true }).fill(WP_USER);
    await form.getByLabel('Secret', { exact: true }).fill(WP_PASS);
    await form.getByRole('button', { name: 'Add site' }).click();
    await page.locator('#notice', { hasText: `Site ${SITE} created. Its credential was accepted by the site.` }).waitFor();
    await page.getByRole('heading', { name: /Console WordPress/ }).waitFor();
  });

  await step('Test now turns it healthy', async () => {
    await testNow(page, 'healthy');
    await axe(page, 'site');
  });

  await step('search the fleet by name and filter by state (in the store)', async () => {
    await page.goto(ADMIN + '/ui/#/sites');
    const filters = page.locator('form[aria-label="Filter sites"]');
    await filters.getByLabel('Search id or name', { exact: true }).fill('console wordpress');
    await filters.getByLabel('State', { exact: true }).selectOption('healthy');
    await filters.getByRole('button', { name: 'Apply' }).click();
    await until('the search result', async () => {
      const ids = await page.locator('#sites-table tbody tr td:first-child').allTextContents();
      return ids.length === 1 && ids[0] === SITE;
    });
    await filters.getByLabel('State', { exact: true }).selectOption('auth_failed');
    await filters.getByRole('button', { name: 'Apply' }).click();
    await until('no site in that state', async () =>
      (await page.locator('#sites-table tbody tr').count()) === 0 &&
      (await page.locator('#sites-table caption').textContent()).includes('auth_failed'));
    await page.goto(ADMIN + `/ui/#/site/${SITE}`);
    await page.getByRole('heading', { name: /Console WordPress/ }).waitFor();
  });

  let key;
  await step('issue a key: shown once, works through the proxy', async () => {
    const form = page.locator('form[aria-label="Issue an API key"]');
    await form.getByLabel('Label', { exact: true }).fill('browser test');
    await form.getByRole('button', { name: 'Issue key' }).click();
    key = (await page.locator('#shown-once').textContent()).trim();
    secrets.push(key);
    assert(/^wpg_[A-Za-z0-9]+_/.test(key), 'the shown key looks like wpg_<id>_<secret>');
    assert(await page.getByRole('button', { name: 'Copy' }).isVisible(), 'a copy button');
    assert(await proxyStatus(key) === 200, 'the new key is accepted by the proxy');
    await page.reload();
    await page.getByRole('heading', { name: 'API keys' }).waitFor();
    assert(await page.locator('#shown-once').count() === 0, 'the key is shown again after a reload');
    assert(!(await page.content()).includes(key.split('_').slice(2).join('_')), 'the key secret is in the page');
    assert(await page.locator('#keys-table', { hasText: 'browser test' }).count() === 1, 'the key is listed');
  });

  await step('revoke the key: the proxy refuses it (401)', async () => {
    const keyId = key.split('_')[1];
    const row = page.locator(`tr[data-key="${keyId}"]`);
    await row.getByRole('button', { name: 'Revoke' }).click();
    await page.locator('#confirm-ok').click();
    await page.locator('#notice', { hasText: `Key ${keyId} revoked.` }).waitFor();
    await until('the proxy refuses the revoked key', async () => (await proxyStatus(key)) === 401 || await proxyStatus(key));
  });

  const setup = process.env.CONSOLE_WP_SETUP;
  if (setup) {
    const wpSite = env('CONSOLE_WP_SITE');
    await step('the Application Password revoked in WordPress: Test now shows auth_failed and the fix', async () => {
      execFileSync('bash', [setup, 'revoke-app-password', wpSite], { stdio: ['ignore', 'ignore', 'inherit'] });
      log('revoked the Application Password in WordPress');
      await testNow(page, 'auth_failed');
      await page.locator('#health .fix').first().waitFor();
      const fix = await page.locator('#health .fix').first().textContent();
      assert(/credential/i.test(fix) && /Fix:/.test(fix), 'the doctor fix is shown: ' + scrub(fix));
      await axe(page, 'site (auth_failed)');
    });
    await step('replace the credential, confirmed against the site: healthy again', async () => {
      execFileSync('bash', [setup, 'new-app-password', wpSite], { stdio: ['ignore', 'ignore', 'inherit'] });
      const vars = Object.fromEntries(readFileSync(env('CONSOLE_WP_ENV'), 'utf8').split('\n')
        .filter((l) => l.includes('=') && !l.startsWith('#'))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1).replace(/^'|'$/g, '').replaceAll("'\\''", "'")]));
      const fresh = vars[`WPGATE_WP_${wpSite.toUpperCase()}_APP_PASSWORD`];
      assert(fresh && fresh !== WP_PASS, 'a new Application Password in sites.env');
      secrets.push(fresh);
      const form = page.locator('form[aria-labelledby="h-cred"]');
      await form.getByLabel('Credential', { exact: true }).selectOption('app_password');
      await form.getByLabel('WordPress user', { exact: true }).fill(WP_USER);
      await form.getByLabel('Secret', { exact: true }).fill(fresh);
      assert(await form.getByLabel(/Check it against the site first/).isChecked(), 'confirmation is on by default');
      await form.getByRole('button', { name: 'Replace credential' }).click();
      await page.locator('#confirm-ok').click();
      await page.locator('#notice', { hasText: 'the site accepted it' }).waitFor();
      await testNow(page, 'healthy');
    });
  }

  await step('the policy editors save what the site has', async () => {
    for (const [path, title] of [['auth', 'Client authentication policy'], ['routes', 'Routes forwarded besides the REST API'],
      ['cors', 'CORS origins'], ['health-settings', 'Health requirements']]) {
      await page.getByRole('button', { name: 'Save ' + path, exact: true }).click();
      await page.locator('#notice', { hasText: `${title} of ${SITE} saved.` }).waitFor();
    }
  });

  await step('audit log, admin tokens and keyring pages', async () => {
    await page.getByRole('link', { name: 'Audit log' }).click();
    await page.getByRole('heading', { name: 'Audit log' }).waitFor();
    await page.locator('table', { hasText: 'key.revoke' }).waitFor();
    await axe(page, 'audit');
    await page.getByRole('link', { name: 'Admin tokens' }).click();
    await page.getByRole('heading', { name: 'Admin tokens', exact: true }).waitFor();
    const form = page.locator('form[aria-label="Create an admin token"]');
    await form.getByLabel('Label', { exact: true }).fill('console-made');
    await form.getByRole('button', { name: 'Create token' }).click();
    const token = (await page.locator('#shown-once').textContent()).trim();
    secrets.push(token);
    assert(token.startsWith('wpgat_'), 'the new token is shown once');
    await axe(page, 'tokens');
    await page.getByRole('link', { name: 'Keyring' }).click();
    await page.getByRole('heading', { name: 'Keyring' }).waitFor();
    await axe(page, 'keyring');
    await page.getByRole('link', { name: 'Overview' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    // The revoked key's refusal, counted by the gateway over the last hour.
    const auth = page.locator('section', { has: page.getByRole('heading', { name: /Refused client authentications/ }) });
    await auth.getByText('In the last hour').waitFor();
    assert(/revoked: [1-9]/.test(await auth.textContent()), 'the overview counts the revoked key: ' + await auth.textContent());
    // Sites by health, from the store: the site is in one state.
    const cards = await page.locator('.cards .card .n').allTextContents();
    assert(cards.map(Number).reduce((a, b) => a + b, 0) >= 1, 'the overview counts the site: ' + cards);
  });

  await step('sign out forgets the token', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Admin token', { exact: true }).waitFor();
    assert(await page.evaluate(() => sessionStorage.length) === 0, 'sessionStorage still holds something');
  });

  await step('a read-only token sees no write control (360 px wide)', async () => {
    const ro = await browser.newContext({ viewport: { width: 360, height: 740 } });
    const p = await ro.newPage();
    watch(p);
    await signIn(p, READ);
    await p.getByRole('heading', { name: 'Overview' }).waitFor();
    assert((await p.locator('#who').textContent()).includes('read only'), 'shown as read only');
    await noWriteControls(p, 'overview');
    for (const [hash, heading] of [['#/sites', 'Sites'], [`#/site/${SITE}`, /Console WordPress/], ['#/tokens', 'Admin tokens'], ['#/keyring', 'Keyring'], ['#/audit', 'Audit log']]) {
      await p.goto(ADMIN + '/ui/' + hash);
      await p.getByRole('heading', { name: heading, exact: typeof heading === 'string' }).first().waitFor();
      await noWriteControls(p, hash);
      const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert(overflow <= 0, `${hash} is wider than 360 px by ${overflow}px`);
    }
    await axe(p, 'site (read only, 360 px)');
    // The API refuses anyway: a write with this token from the page's origin.
    const status = await p.evaluate(async (t) => (await fetch('/admin/v1/sites/console-wp/disable', { method: 'POST', headers: { Authorization: 'Bearer ' + t } })).status, READ);
    assert(status === 403, 'a write with a read token answers ' + status);
    await ro.close();
  });

  await step('no request left the page origin, no page error', async () => {
    assert(offOrigin.length === 0, 'requests to other origins: ' + offOrigin.join(', '));
    assert(pageErrors.length === 0, 'page errors: ' + scrub(pageErrors.join(' | ')));
  });
  await ctx.close();
  log(`all passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (e) {
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
