// What verify_sdk.mjs (Verify v1) and verify2_sdk.mjs (Verify v2) share: the environment, the step runner, checks,
// and reading codes from the verifyd inbox.
//
// Importing it reads VERIFYD_URL: exits with status 2 if it is unset.
// Steps print `ok - <step>` or `not ok - <step>: <detail>`; `finish` prints the count and exits 0 only if every step
// passed. Every network wait is bounded: inbox reads time out after 5 s, inbox polling gives up after 5 s.

export const SDK_TIMEOUT_MS = 5000;
const INBOX_WAIT_MS = 5000;
const CANCEL_MARGIN_MS = 700;

export function env(name, fallback) {
  const value = process.env[name];
  if (value === undefined || value === '') {
    if (fallback !== undefined) return fallback;
    console.log(`not ok - environment: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

export const BASE_URL = env('VERIFYD_URL').replace(/\/+$/, '');

/**
 * Milliseconds from a start until verifyd allows `cancel`: it refuses it during the first 30 s of workflow time,
 * which runs VERIFYD_CLOCK_SPEED times faster than real time (exits with status 2 if that is not a positive number).
 */
export function cancelWaitMs() {
  const clockSpeed = Number(env('VERIFYD_CLOCK_SPEED', '1'));
  if (!(clockSpeed > 0)) {
    console.log(`not ok - environment: VERIFYD_CLOCK_SPEED must be a positive number, got ${process.env.VERIFYD_CLOCK_SPEED}`);
    process.exit(2);
  }
  return Math.ceil(31 / clockSpeed) * 1000 + CANCEL_MARGIN_MS;
}

// ---------------------------------------------------------------- checks

export class StepFailure extends Error {}

export function fail(detail) {
  throw new StepFailure(detail);
}

export function assert(cond, detail) {
  if (!cond) fail(detail);
}

export function assertEq(actual, expected, what) {
  if (actual !== expected) {
    fail(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

export function show(obj) {
  const text = JSON.stringify(obj);
  return text && text.length > 600 ? `${text.slice(0, 600)}...` : text;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- inbox

/** Messages in the verifyd inbox for `to` (newest first). */
async function inbox(to) {
  const url = `${BASE_URL}/inbox/messages?to=${encodeURIComponent(to)}`;
  const res = await fetch(url, { signal: AbortSignal.timeout(SDK_TIMEOUT_MS) });
  if (res.status !== 200) fail(`GET ${url} answered HTTP ${res.status}: ${await res.text()}`);
  const body = await res.json();
  if (!Array.isArray(body)) fail(`GET ${url} did not answer a JSON array: ${show(body)}`);
  return body;
}

/** Polls the inbox (bounded) until a message for `requestId` on `channel` appears; returns it. */
export async function waitForMessage(to, requestId, channel) {
  const deadline = Date.now() + INBOX_WAIT_MS;
  let seen = [];
  for (;;) {
    seen = await inbox(to);
    // The inbox shows every request id as 32 hex digits: a v1 id as it is, a v2 UUID without its dashes.
    const hit = seen.find((m) => m.request_id === requestId.replace(/-/g, '') && m.channel === channel);
    if (hit) return hit;
    if (Date.now() >= deadline) {
      fail(`no ${channel} message for request ${requestId} to ${to} within ${INBOX_WAIT_MS} ms; inbox: ${show(seen)}`);
    }
    await sleep(100);
  }
}

/**
 * The code in an SMS text: the one run of 4-10 digits that is not part of a decimal number.
 * `kind` names it in the failure (v1 says PIN).
 */
export function codeFromSms(text, kind = 'code') {
  const runs = String(text).match(/(?<![\d.,])\d{4,10}(?![\d]|[.,]\d)/g) || [];
  if (runs.length !== 1) fail(`expected exactly one ${kind}-like digit run in SMS text ${JSON.stringify(text)}, found ${show(runs)}`);
  return runs[0];
}

/** The code in a voice text, which spells it digit by digit (`4, 8, 1, 5`), maybe more than once. */
export function codeFromVoice(text) {
  const spelled = String(text).match(/\d(?:, \d)+/g) || [];
  const codes = [...new Set(spelled.map((s) => s.replace(/, /g, '')).filter((c) => c.length >= 4 && c.length <= 10))];
  if (codes.length !== 1) fail(`expected one code spelled as "d, d, d, d" in voice text ${JSON.stringify(text)}, found ${show(spelled)}`);
  return codes[0];
}

export function wrongCodeFor(code) {
  // Same length, every digit different.
  return code.split('').map((d) => String((Number(d) + 1) % 10)).join('');
}

// ---------------------------------------------------------------- steps

const results = [];

/** ` (cause: ...)` for an error with a cause (a transport error from fetch), else ''. */
export function causeOf(err) {
  return err && err.cause ? ` (cause: ${err.cause.code || ''} ${err.cause.message || err.cause})` : '';
}

/**
 * The step runner: `step(name, fn)` awaits `fn` and prints its outcome. `describe(err)` (may be async) words an error
 * that is not a StepFailure: an SDK exception (e.g. VetchError for a non-2xx answer) or a transport error.
 */
export function stepRunner(describe) {
  return async function step(name, fn) {
    try {
      await fn();
      results.push(true);
      console.log(`ok - ${name}`);
    } catch (err) {
      results.push(false);
      const detail = err instanceof StepFailure ? err.message : await describe(err);
      console.log(`not ok - ${name}: ${detail.replace(/\s*\n\s*/g, ' ')}`);
    }
  };
}

export function need(value, what) {
  if (!value) fail(`skipped: ${what} is not available because an earlier step failed`);
  return value;
}

/** Prints `# <label>: N of M steps passed` and exits, 0 only if every step passed. */
export function finish(label) {
  const passed = results.filter(Boolean).length;
  const failed = results.length - passed;
  console.log(`# ${label}: ${passed} of ${results.length} steps passed`);
  process.exit(failed === 0 ? 0 : 1);
}
