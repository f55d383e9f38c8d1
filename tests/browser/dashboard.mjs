// Drives the admin dashboard of a running verifyd in Debian's headless Chromium (through
// playwright-core, which downloads no browser of its own) and screenshots each page.
//
//   BASE_URL=http://127.0.0.1:PORT ADMIN_NAME=... ADMIN_PASSWORD=... NUMBER=447700900123 \
//   REQUEST_ID=<32 hex> SCREENSHOTS=target/browser-screenshots node tests/browser/dashboard.mjs
//
// CHROMIUM names the browser (default /usr/bin/chromium). NUMBER must have a verification,
// REQUEST_ID, that the search finds. Prints one line and exits 0 when every step passes; on a
// failure prints the step and the error to stderr, saves failure.png and exits 1.

import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const STEP_TIMEOUT_MS = 15_000;
const LAUNCH_TIMEOUT_MS = 30_000;
const CLOSE_TIMEOUT_MS = 10_000;
// Every wait below is bounded by STEP_TIMEOUT_MS; this only guards against a hang elsewhere.
const WHOLE_RUN_TIMEOUT_MS = 300_000;

// Playwright's messages carry terminal colours; the reports here are plain text.
function plain(text) {
  return String(text).replace(/\x1b\[[0-9;]*m/g, '');
}

function fail(message) {
  console.error(`dashboard browser test: ${message}`);
  process.exit(1);
}

function env(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === '') fail(`environment variable ${name} is not set`);
  return value;
}

const baseUrl = env('BASE_URL').replace(/\/+$/, '');
try {
  new URL(baseUrl);
} catch {
  fail(`BASE_URL is not a URL: ${baseUrl}`);
}
const adminName = env('ADMIN_NAME');
const adminPassword = env('ADMIN_PASSWORD');
const number = env('NUMBER');
if (!/^[0-9]{6,15}$/.test(number)) fail(`NUMBER must be digits only (no +): ${number}`);
const requestId = env('REQUEST_ID').toLowerCase();
if (!/^[0-9a-f]{32}$/.test(requestId)) fail(`REQUEST_ID must be 32 hex digits: ${requestId}`);
const screenshots = resolve(env('SCREENSHOTS'));
const executablePath = env('CHROMIUM', '/usr/bin/chromium');

mkdirSync(screenshots, { recursive: true });

const watchdog = setTimeout(() => {
  console.error(`dashboard browser test: gave up after ${WHOLE_RUN_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, WHOLE_RUN_TIMEOUT_MS);
watchdog.unref();

const consoleErrors = [];
let browser;
let page;
let currentStep = 'launch chromium';
let shots = 0;

async function screenshot(name) {
  await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true });
  shots += 1;
}

function pathOf(url) {
  try {
    return new URL(url).pathname;
  } catch {
    return '';
  }
}

async function goto(path) {
  const response = await page.goto(baseUrl + path);
  if (response && response.status() >= 400) {
    throw new Error(`GET ${path} answered ${response.status()} (now at ${page.url()})`);
  }
}

// Clicks something that loads a new document (a link, a form's submit button) and waits until
// that document has loaded.
async function clickAndLoad(selector) {
  const loaded = page.waitForEvent('load');
  loaded.catch(() => {});
  await page.locator(selector).first().click();
  try {
    await loaded;
  } catch (error) {
    throw new Error(`no new page loaded after clicking ${selector}: ${error.message}`);
  }
}

async function expectPath(expected) {
  const actual = pathOf(page.url());
  if (actual !== expected) throw new Error(`expected to be at ${expected}, but at ${page.url()}`);
}

async function expectHeading(text) {
  const h1 = page.locator('h1').first();
  await h1.waitFor();
  const actual = (await h1.innerText()).trim();
  // Case-insensitive: the inbox's heading is "verifyd inbox".
  if (!actual.toLowerCase().includes(text.toLowerCase())) {
    throw new Error(`expected an h1 with "${text}", found "${actual}" on ${page.url()}`);
  }
}

async function attached(selector) {
  try {
    await page.locator(selector).first().waitFor({ state: 'attached' });
  } catch (error) {
    throw new Error(`no element matches ${selector} on ${page.url()}: ${error.message}`);
  }
}

async function run() {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox'],
    timeout: LAUNCH_TIMEOUT_MS,
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.setDefaultNavigationTimeout(STEP_TIMEOUT_MS);
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const where = message.location()?.url;
    // Chromium logs a 4xx document as a failed resource; refusing the wrong password in step b
    // with 400, 401, 403 or 422 is not a fault of the page.
    if (
      /^Failed to load resource: the server responded with a status of 4(00|01|03|22)\b/.test(message.text()) &&
      where && pathOf(where) === '/dashboard/login'
    ) {
      return;
    }
    consoleErrors.push(`console: ${message.text()}${where ? ` (${where})` : ''}`);
  });
  page.on('pageerror', (error) => consoleErrors.push(`page error: ${error.message}`));

  currentStep = 'a. /dashboard redirects to the login page';
  await goto('/dashboard');
  if (!page.url().includes('/dashboard/login')) {
    throw new Error(`expected a redirect to /dashboard/login, but at ${page.url()}`);
  }
  await attached('input[name=name]');
  await screenshot('01-login');

  currentStep = 'b. a wrong password is refused';
  await page.fill('input[name=name]', adminName);
  await page.fill('input[name=password]', `${adminPassword}-wrong`);
  await clickAndLoad('button[type=submit]');
  await attached('.error');
  if (!pathOf(page.url()).startsWith('/dashboard/login')) {
    throw new Error(`expected to stay on /dashboard/login, but at ${page.url()}`);
  }
  await screenshot('01b-login-refused');

  currentStep = 'c. the right password logs in to the overview';
  await page.fill('input[name=name]', adminName);
  await page.fill('input[name=password]', adminPassword);
  await clickAndLoad('button[type=submit]');
  await expectPath('/dashboard');
  await expectHeading('Overview');
  for (const chart of ['requests', 'delivery', 'latency', 'blocks']) {
    await attached(`#chart-${chart} canvas`);
  }
  await attached('table#by-country, #by-country table');
  await attached('table#by-channel, #by-channel table');
  await screenshot('02-overview');

  currentStep = 'd. the verifications search finds the request';
  await clickAndLoad('a[href="/dashboard/verifications"]');
  await page.fill('#search input[name=number]', `+${number}`);
  await clickAndLoad('#search button[type=submit]');
  const result = page.locator('#results a.request', { hasText: requestId }).first();
  try {
    await result.waitFor();
  } catch (error) {
    throw new Error(`no #results a.request with ${requestId} on ${page.url()}: ${error.message}`);
  }
  await screenshot('03-search');

  currentStep = "e. the request's timeline";
  const loaded = page.waitForEvent('load');
  loaded.catch(() => {});
  await result.click();
  await loaded;
  if (pathOf(page.url()).toLowerCase() !== `/dashboard/verifications/${requestId}`) {
    throw new Error(`expected to be at /dashboard/verifications/${requestId}, but at ${page.url()}`);
  }
  await attached('table#timeline tr.entry');
  const text = await page.locator('body').innerText();
  if (!/delivered|submitted|queued/i.test(text)) {
    throw new Error("the timeline says none of 'delivered', 'submitted', 'queued'");
  }
  await screenshot('04-timeline');

  currentStep = 'f. API keys';
  await goto('/dashboard/keys');
  await expectHeading('API keys');
  await attached('table#keys');
  await screenshot('05-keys');

  currentStep = 'f. channels';
  await goto('/dashboard/channels');
  await expectHeading('Channels');
  await attached('table#channels');
  await screenshot('06-channels');

  currentStep = 'f. audit log';
  await goto('/dashboard/audit');
  await attached('table#audit');
  if (!(await page.locator('table#audit').first().innerText()).toLowerCase().includes('login')) {
    throw new Error("table#audit does not mention 'login'");
  }
  await screenshot('07-audit');

  currentStep = 'f. inbox';
  await goto('/inbox');
  await expectHeading('Inbox');
  await screenshot('08-inbox');

  currentStep = 'g. no console errors';
  if (consoleErrors.length > 0) {
    throw new Error(`the browser reported ${consoleErrors.length} error(s):\n  ${consoleErrors.join('\n  ')}`);
  }
}

async function closeBrowser() {
  if (!browser) return;
  const timer = new Promise((done) => setTimeout(done, CLOSE_TIMEOUT_MS).unref());
  await Promise.race([browser.close().catch(() => {}), timer]);
}

let ok = false;
try {
  await run();
  ok = true;
} catch (error) {
  console.error(`dashboard browser test: FAILED at step "${currentStep}": ${plain(error.message)}`);
  if (consoleErrors.length > 0 && currentStep !== 'g. no console errors') {
    console.error(`browser errors so far:\n  ${consoleErrors.join('\n  ')}`);
  }
  if (page && !page.isClosed()) {
    try {
      await page.screenshot({ path: join(screenshots, 'failure.png'), fullPage: true, timeout: 5_000 });
      console.error(`screenshot of the failure: ${join(screenshots, 'failure.png')}`);
    } catch (shotError) {
      console.error(`could not take failure.png: ${plain(shotError.message)}`);
    }
  }
} finally {
  await closeBrowser();
}

if (ok) {
  console.log(`dashboard browser test: ok (${shots} screenshots in ${screenshots})`);
  process.exit(0);
}
process.exit(1);
