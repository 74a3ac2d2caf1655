// The sites page with a large fleet (run by bench-sites.sh): time from asking for the
// page to its first page of sites in the table, in headless Chromium. Two figures:
// a full load of /ui/#/sites (HTML, script, sign-in check, first page) and a move to
// the sites page inside the signed-in console (what an operator clicking "Sites" sees),
// and, for the latter, until the health column is filled in.
import { createRequire } from 'node:module';

const require = createRequire(process.env.WPGATE_BROWSER_DIR.replace(/\/?$/, '/'));
const { chromium } = require('playwright-core');
const ADMIN = process.env.CONSOLE_ADMIN;
const RUNS = Number(process.env.RUNS || 10);
const rows = '#sites-table tbody tr';

const browser = await chromium.launch({ executablePath: process.env.CONSOLE_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
const page = await browser.newPage();
await page.goto(ADMIN + '/ui/');
await page.getByLabel('Admin token', { exact: true }).fill(process.env.CONSOLE_READ_TOKEN);
await page.getByRole('button', { name: 'Sign in' }).click();
await page.getByRole('heading', { name: 'Overview' }).waitFor();

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const full = [];
const inApp = [];
const health = [];
const filled = () => page.waitForFunction(() => !document.querySelector('#sites-table td[data-health] .muted'));
for (let i = 0; i < RUNS; i++) {
  let t = Date.now();
  await page.goto(ADMIN + '/ui/?run=' + i + '#/sites'); // a new document each time
  await page.locator(rows).nth(49).waitFor();
  full.push(Date.now() - t);
  await page.evaluate(() => { location.hash = '#/overview'; });
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  t = Date.now();
  await page.evaluate(() => { location.hash = '#/sites'; });
  await page.locator(rows).nth(49).waitFor();
  inApp.push(Date.now() - t);
  await filled();
  health.push(Date.now() - t);
}
const shown = await page.locator(rows).count();
console.log(JSON.stringify({
  sites: Number(process.env.CONSOLE_SITES), rows_rendered: shown, runs: RUNS,
  full_load_ms: { median: median(full), max: Math.max(...full) },
  in_console_ms: { median: median(inApp), max: Math.max(...inApp) },
  health_column_filled_ms: { median: median(health), max: Math.max(...health) },
}));
await browser.close();
