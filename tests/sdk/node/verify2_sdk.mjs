// Drives the official Node SDK `@vonage/verify2` (Verify v2) against a running verifyd.
//
// Run from the repository root:   node tests/sdk/node/verify2_sdk.mjs
// Environment:
//   VERIFYD_URL               base URL of verifyd, e.g. http://127.0.0.1:41234 (used as the SDK's apiHost)
//   VERIFYD_APPLICATION_ID    the id of an application verifyd knows
//   VERIFYD_PRIVATE_KEY_FILE  path to that application's RSA private key (PEM); the SDK signs RS256 JWTs with it
//   VERIFYD_CLOCK_SPEED       how many times faster than real time the server's workflow clock runs (default 1)
//
// Verify2 authenticates with a JWT only (no Basic fallback in the SDK).
// Prints one line per step, `ok - <step>` or `not ok - <step>: <detail>`, and exits 0 only if every step passed.
// Every network wait is bounded: SDK calls time out after 5 s, inbox polling gives up after 5 s.
//
// How the SDK reports errors (read in @vonage/verify2 1.22.1 and @vonage/server-client 1.23.1):
// - newRequest / checkCode throw a VetchError for any non-2xx answer; `err.response` is the unread fetch Response.
// - nextWorkflow / cancel swallow every error and return `false` (`true` for any 2xx). To see the status, this
//   script then repeats the same call through the client's own `sendPostRequest` / `sendDeleteRequest` (same URL,
//   same JWT and headers as the SDK method), which throw the VetchError instead.
// - The SDK validates nothing locally: every 422 case below reaches the server.

import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { Channels, Verify2 } from '@vonage/verify2';
import {
  BASE_URL, SDK_TIMEOUT_MS, StepFailure, assert, assertEq, cancelWaitMs, causeOf, codeFromSms, codeFromVoice, env, fail,
  finish, need, show, sleep, stepRunner, waitForMessage, wrongCodeFor,
} from './harness.mjs';

// Workflow seconds each channel gets before the next one starts: the maximum, so that nothing moves on by itself
// while the script works (900 workflow s are 45 real s at clock speed 20).
const CHANNEL_TIMEOUT = 900;

// harness.mjs read VERIFYD_URL on import.
const APPLICATION_ID = env('VERIFYD_APPLICATION_ID');
const PRIVATE_KEY_FILE = env('VERIFYD_PRIVATE_KEY_FILE');
const CANCEL_WAIT_MS = cancelWaitMs();
let PRIVATE_KEY;
try {
  PRIVATE_KEY = readFileSync(PRIVATE_KEY_FILE, 'utf8');
} catch (err) {
  console.log(`not ok - environment: cannot read VERIFYD_PRIVATE_KEY_FILE ${PRIVATE_KEY_FILE}: ${err.message}`);
  process.exit(2);
}

// libphonenumber-valid GB mobiles 07700 123xxx, one per scenario.
// The 1236xx block is reserved for this script; v1 uses 1234xx (Node) and 1235xx (Python),
// the Python v2 script 1237xx (basic auth) and 1238xx (JWT).
const NUM = {
  basic: '447700123601',
  cancel: '447700123602',
  next: '447700123603',
  concurrent: '447700123604',
  expired: '447700123605',
  length6: '447700123606',
  badBrand: '447700123607',
  badTimeout: '447700123608',
  badLength: '447700123609',
  template: '447700123610',
};

const verify = new Verify2(
  { applicationId: APPLICATION_ID, privateKey: PRIVATE_KEY },
  { apiHost: BASE_URL, timeout: SDK_TIMEOUT_MS },
);

const smsOnly = (to) => [{ channel: Channels.SMS, to }];

// ---------------------------------------------------------------- helpers

function assertUuid(id, what) {
  assert(
    typeof id === 'string' && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id),
    `${what}: request id is not a UUID: ${JSON.stringify(id)}`,
  );
}

/**
 * Runs `call`, which must fail with HTTP `status` and an RFC 7807 body (`application/problem+json`);
 * returns the parsed body. `slug`, if given, must be the fragment of the body's `type` URL.
 */
async function expectProblem(call, status, slug) {
  let err;
  try {
    const result = await call();
    fail(`expected HTTP ${status}, the call returned ${show(result)}`);
  } catch (e) {
    if (e instanceof StepFailure) throw e;
    err = e;
  }
  const res = err && err.response;
  if (!res || typeof res.status !== 'number') throw err; // not an HTTP answer (transport error, bug): report it as is
  const text = await res.text();
  assertEq(res.status, status, `HTTP status (body ${text.slice(0, 400)})`);
  const contentType = (res.headers.get('content-type') || '').split(';')[0].trim();
  assertEq(contentType, 'application/problem+json', `content-type (body ${text.slice(0, 400)})`);
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    fail(`problem body is not JSON: ${JSON.stringify(text.slice(0, 400))}`);
  }
  for (const field of ['type', 'title']) {
    assert(typeof body[field] === 'string' && body[field].length > 0, `problem body lacks "${field}": ${show(body)}`);
  }
  if (slug !== undefined) {
    assertEq(body.type.split('#').pop(), slug, `slug of type ${JSON.stringify(body.type)}`);
  }
  return body;
}

/** A 422 answer naming `param` among its invalid_parameters. */
async function expectInvalidParam(call, param) {
  const body = await expectProblem(call, 422);
  const list = body.invalid_parameters;
  assert(Array.isArray(list) && list.length > 0, `invalid_parameters missing or empty: ${show(body)}`);
  assert(
    list.some((p) => p && typeof p.name === 'string' && p.name.includes(param) && typeof p.reason === 'string'),
    `invalid_parameters does not name ${param} (with a reason): ${show(list)}`,
  );
}

const url = (requestId, suffix = '') => `${BASE_URL}/v2/verify/${requestId}${suffix}`;
// The exact requests Verify2.nextWorkflow / Verify2.cancel send, but throwing on errors instead of returning false.
const rawNextWorkflow = (requestId) => verify.sendPostRequest(url(requestId, '/next_workflow'));
const rawCancel = (requestId) => verify.sendDeleteRequest(url(requestId));

const step = stepRunner(async (err) => {
  let http = '';
  if (err && err.response && typeof err.response.status === 'number') {
    const body = await err.response.text().catch(() => '');
    http = ` (HTTP ${err.response.status}: ${body.slice(0, 400)})`;
  }
  return `${err && err.constructor ? err.constructor.name : 'Error'}: ${err && err.message ? err.message : String(err)}${http}${causeOf(err)}`;
});

// ---------------------------------------------------------------- scenarios

const state = {};

// 1. start -> POST /v2/verify, 202 {"request_id"}
await step('1 newRequest with an sms workflow returns a request id', async () => {
  const res = await verify.newRequest({ brand: 'AcmeInc', workflow: smsOnly(NUM.basic), channelTimeout: CHANNEL_TIMEOUT });
  assertUuid(res.requestId, `newRequest (response ${show(res)})`);
  state.basicId = res.requestId;
});

await step('1b the SMS arrives in the inbox with a 4-digit code and the brand', async () => {
  const id = need(state.basicId, 'request id of step 1');
  const msg = await waitForMessage(NUM.basic, id, 'sms');
  assertEq(msg.to, NUM.basic, 'message to');
  assert(String(msg.text).includes('AcmeInc'), `SMS text does not name the brand: ${JSON.stringify(msg.text)}`);
  state.basicCode = codeFromSms(msg.text);
  assertEq(state.basicCode.length, 4, `length of the default code ${state.basicCode}`);
});

// 2. wrong code -> 400 invalid-code (checkCode throws)
await step('2 checkCode with a wrong code fails with 400 invalid-code', async () => {
  const id = need(state.basicId, 'request id of step 1');
  const code = need(state.basicCode, 'code of step 1b');
  await expectProblem(() => verify.checkCode(id, wrongCodeFor(code)), 400, 'invalid-code');
});

// 3. right code -> 200 {"request_id","status":"completed"}; checkCode returns the status
await step('3 checkCode with the right code returns completed', async () => {
  const id = need(state.basicId, 'request id of step 1');
  const code = need(state.basicCode, 'code of step 1b');
  assertEq(await verify.checkCode(id, code), 'completed', 'checkCode result');
});

// 4. a request to cancel later (step 11); cancelling it now, inside the first 30 workflow seconds, is refused
await step('4 newRequest (to cancel later)', async () => {
  const res = await verify.newRequest({ brand: 'AcmeInc', workflow: smsOnly(NUM.cancel), channelTimeout: CHANNEL_TIMEOUT });
  assertUuid(res.requestId, `newRequest (response ${show(res)})`);
  state.cancelId = res.requestId;
  state.cancelStartedAt = Date.now();
  // Read now: the inbox drops a request's messages once the request has ended.
  state.cancelCode = codeFromSms((await waitForMessage(NUM.cancel, res.requestId, 'sms')).text);
});

await step('4b cancel within the first 30 workflow seconds is refused (false; DELETE answers 409)', async () => {
  const id = need(state.cancelId, 'request id of step 4');
  assertEq(await verify.cancel(id), false, 'cancel result');
  await expectProblem(() => rawCancel(id), 409);
});

// 5. next_workflow: sms -> voice
await step('5 newRequest with an sms then voice workflow; the SMS arrives', async () => {
  const res = await verify.newRequest({
    brand: 'AcmeInc',
    workflow: [{ channel: Channels.SMS, to: NUM.next }, { channel: Channels.VOICE, to: NUM.next }],
    channelTimeout: CHANNEL_TIMEOUT,
  });
  assertUuid(res.requestId, `newRequest (response ${show(res)})`);
  state.nextId = res.requestId;
  state.nextStartedAt = Date.now();
  codeFromSms((await waitForMessage(NUM.next, state.nextId, 'sms')).text);
});

await step('5b nextWorkflow moves to the voice step (true)', async () => {
  const id = need(state.nextId, 'request id of step 5');
  assertEq(await verify.nextWorkflow(id), true, 'nextWorkflow result');
  state.movedToVoice = true;
});

await step('5c a voice message spelling the code arrives in the inbox', async () => {
  const id = need(state.nextId, 'request id of step 5');
  need(state.movedToVoice, 'a successful nextWorkflow in step 5b');
  const msg = await waitForMessage(NUM.next, id, 'voice');
  assertEq(msg.to, NUM.next, 'message to');
  state.voiceCode = codeFromVoice(msg.text);
});

await step('5d nextWorkflow with no step left is refused (false; POST answers 409)', async () => {
  const id = need(state.nextId, 'request id of step 5');
  need(state.movedToVoice, 'a successful nextWorkflow in step 5b');
  assertEq(await verify.nextWorkflow(id), false, 'nextWorkflow result');
  await expectProblem(() => rawNextWorkflow(id), 409);
});

// 6. a second request to a `to` with one in progress -> 409 concurrent
await step('6 newRequest to a number with a request in progress fails with 409 concurrent', async () => {
  const first = await verify.newRequest({ brand: 'AcmeInc', workflow: smsOnly(NUM.concurrent), channelTimeout: CHANNEL_TIMEOUT });
  assertUuid(first.requestId, `first newRequest (response ${show(first)})`);
  await expectProblem(
    () => verify.newRequest({ brand: 'AcmeInc', workflow: smsOnly(NUM.concurrent), channelTimeout: CHANNEL_TIMEOUT }),
    409,
    'concurrent',
  );
});

// 7. three wrong codes end the request: the right code is then answered 410 expired
await step('7 after three wrong codes even the right code fails with 410 expired', async () => {
  const res = await verify.newRequest({ brand: 'AcmeInc', workflow: smsOnly(NUM.expired), channelTimeout: CHANNEL_TIMEOUT });
  assertUuid(res.requestId, `newRequest (response ${show(res)})`);
  const id = res.requestId;
  const code = codeFromSms((await waitForMessage(NUM.expired, id, 'sms')).text);
  const wrong = wrongCodeFor(code);
  await expectProblem(() => verify.checkCode(id, wrong), 400, 'invalid-code');
  await expectProblem(() => verify.checkCode(id, wrong), 400, 'invalid-code');
  // The third wrong code itself may be answered 400 (still a wrong code) or 410 (workflow terminated).
  let third;
  try {
    await verify.checkCode(id, wrong);
    fail('the third wrong code was accepted');
  } catch (e) {
    if (e instanceof StepFailure) throw e;
    if (!e.response) throw e;
    third = e.response.status;
  }
  assert(third === 400 || third === 410, `third wrong code: expected HTTP 400 or 410, got ${third}`);
  await expectProblem(() => verify.checkCode(id, code), 410, 'expired');
});

// 8. code_length 6
await step('8 codeLength 6 sends a 6-digit code, which checks out', async () => {
  const res = await verify.newRequest({
    brand: 'AcmeInc', workflow: smsOnly(NUM.length6), codeLength: 6, channelTimeout: CHANNEL_TIMEOUT,
  });
  assertUuid(res.requestId, `newRequest (response ${show(res)})`);
  const code = codeFromSms((await waitForMessage(NUM.length6, res.requestId, 'sms')).text);
  assertEq(code.length, 6, `length of code ${code}`);
  assertEq(await verify.checkCode(res.requestId, code), 'completed', 'checkCode result');
});

// 9. 422 invalid parameters (the Node SDK validates nothing, so each reaches the server)
await step('9a a brand with "/" fails with 422 naming brand', async () => {
  await expectInvalidParam(
    () => verify.newRequest({ brand: 'Acme/Inc', workflow: smsOnly(NUM.badBrand) }),
    'brand',
  );
});

await step('9b channelTimeout 10 fails with 422 naming channel_timeout', async () => {
  await expectInvalidParam(
    () => verify.newRequest({ brand: 'AcmeInc', workflow: smsOnly(NUM.badTimeout), channelTimeout: 10 }),
    'channel_timeout',
  );
});

await step('9c codeLength 11 fails with 422 naming code_length', async () => {
  await expectInvalidParam(
    () => verify.newRequest({ brand: 'AcmeInc', workflow: smsOnly(NUM.badLength), codeLength: 11 }),
    'code_length',
  );
});

// 10. unknown request id
await step('10 checkCode for an unknown request id fails with 404', async () => {
  await expectProblem(() => verify.checkCode(randomUUID(), '1234'), 404);
});

// 11. cancel after the first 30 workflow seconds -> 204 (cancel returns true)
await step('11 cancel after 30 workflow seconds succeeds (true)', async () => {
  const id = need(state.cancelId, 'request id of step 4');
  const waitMs = state.cancelStartedAt + CANCEL_WAIT_MS - Date.now();
  if (waitMs > 0) await sleep(waitMs);
  assertEq(await verify.cancel(id), true, 'cancel result');
  state.cancelled = true;
});

await step('11b the code of a cancelled request no longer checks out', async () => {
  const id = need(state.cancelId, 'request id of step 4');
  need(state.cancelled, 'a successful cancel in step 11');
  const code = need(state.cancelCode, 'the code of step 4');
  let status;
  try {
    const result = await verify.checkCode(id, code);
    fail(`checkCode after cancel returned ${show(result)}`);
  } catch (e) {
    if (e instanceof StepFailure) throw e;
    if (!e.response) throw e;
    status = e.response.status;
  }
  assert(status >= 400 && status < 500, `checkCode after cancel: expected a 4xx, got HTTP ${status}`);
});

// 12. cancel once the second step has started -> refused, even after 30 workflow seconds
await step('12 cancel after the voice step started is refused (false; DELETE answers 409)', async () => {
  const id = need(state.nextId, 'request id of step 5');
  need(state.movedToVoice, 'a successful nextWorkflow in step 5b');
  const waitMs = state.nextStartedAt + CANCEL_WAIT_MS - Date.now();
  if (waitMs > 0) await sleep(waitMs);
  assertEq(await verify.cancel(id), false, 'cancel result');
  await expectProblem(() => rawCancel(id), 409);
});

await step('12b the code from the voice message checks out (completed)', async () => {
  const id = need(state.nextId, 'request id of step 5');
  const code = need(state.voiceCode, 'voice code of step 5c');
  assertEq(await verify.checkCode(id, code), 'completed', 'checkCode result');
});

// 13. templates: every template and fragment method of the SDK, and a request that names a template
await step('13a createTemplate makes the first template the default; a second one is not', async () => {
  const first = await verify.createTemplate({ name: 'sdk-login' });
  assertUuid(first.templateId, `createTemplate (response ${show(first)})`);
  assertEq(first.name, 'sdk-login', 'name');
  assertEq(first.isDefault, true, 'isDefault of the first template');
  const second = await verify.createTemplate({ name: 'sdk-reset' });
  assertEq(second.isDefault, false, 'isDefault of the second template');
  state.firstTemplate = first.templateId;
  state.secondTemplate = second.templateId;
});

await step('13b createTemplate with a name in use fails with 409 template-exists', async () => {
  need(state.firstTemplate, 'templates of step 13a');
  await expectProblem(() => verify.createTemplate({ name: 'sdk-login' }), 409, 'template-exists');
});

await step('13c getTemplatePage pages the templates and listAllTemplates walks every page once', async () => {
  need(state.secondTemplate, 'templates of step 13a');
  const page = await verify.getTemplatePage({ pageSize: 1, page: 1 });
  assertEq(page.totalItems, 2, `totalItems (page ${show(page)})`);
  assertEq(page.totalPages, 2, 'totalPages');
  assertEq(page.templates.length, 1, 'templates on the page');
  assert(page.links && page.links.next && page.links.next.href, `no next link on page 1: ${show(page.links)}`);
  const all = [];
  for await (const t of verify.listAllTemplates({ pageSize: 1 })) all.push(t.templateId);
  assertEq(JSON.stringify(all), JSON.stringify([state.firstTemplate, state.secondTemplate]), 'listAllTemplates');
});

await step('13d updateTemplate renames a template and makes it the default; getTemplate shows both', async () => {
  const id = need(state.secondTemplate, 'templates of step 13a');
  const changed = await verify.updateTemplate({ templateId: id, name: 'sdk-password', isDefault: true });
  assertEq(changed.name, 'sdk-password', 'name');
  assertEq(changed.isDefault, true, 'isDefault');
  const first = await verify.getTemplate(state.firstTemplate);
  assertEq(first.isDefault, false, 'isDefault of the former default');
});

await step('13e template fragments are created, paged, read and updated; a second per channel and locale is refused', async () => {
  const id = need(state.secondTemplate, 'templates of step 13a');
  const made = await verify.createTemplateFragment(id, { channel: 'sms', locale: 'en-us', text: '${brand} says ${code}' });
  assertUuid(made.templateFragmentId, `createTemplateFragment (response ${show(made)})`);
  assertEq(made.channel, 'sms', 'channel');
  assertEq(made.locale, 'en-us', 'locale');
  assert(!Number.isNaN(Date.parse(made.dateCreated)), `dateCreated: ${show(made.dateCreated)}`);
  await expectProblem(
    () => verify.createTemplateFragment(id, { channel: 'sms', locale: 'en-us', text: '${code}' }),
    409,
    'fragment-exists',
  );
  const page = await verify.getTemplateFragmentPage({ templateId: id });
  assertEq(page.totalItems, 1, `totalItems (page ${show(page)})`);
  assertEq(page.fragments[0].templateFragmentId, made.templateFragmentId, 'fragment on the page');
  const all = [];
  for await (const f of verify.listAllTemplateFragments({ templateId: id })) all.push(f.templateFragmentId);
  assertEq(all.length, 1, 'listAllTemplateFragments');
  const changed = await verify.updateTemplateFragment(id, {
    templateFragmentId: made.templateFragmentId, text: '${brand} code: ${code}',
  });
  assertEq(changed.text, '${brand} code: ${code}', 'updated text');
  const read = await verify.getTemplateFragment(id, made.templateFragmentId);
  assertEq(read.text, '${brand} code: ${code}', 'text read back');
  state.fragment = made.templateFragmentId;
});

await step('13f a newRequest naming the template sends the SMS in its words, and its code checks out', async () => {
  const id = need(state.secondTemplate, 'templates of step 13a');
  need(state.fragment, 'the fragment of step 13e');
  const res = await verify.newRequest({
    brand: 'AcmeInc', templateId: id, workflow: smsOnly(NUM.template), channelTimeout: CHANNEL_TIMEOUT,
  });
  assertUuid(res.requestId, `newRequest (response ${show(res)})`);
  const msg = await waitForMessage(NUM.template, res.requestId, 'sms');
  const code = codeFromSms(msg.text);
  assertEq(msg.text, `AcmeInc code: ${code}`, 'SMS text');
  assertEq(await verify.checkCode(res.requestId, code), 'completed', 'checkCode result');
});

await step('13g a template with fragments is not deleted (409 not-empty-template); emptied, it is', async () => {
  const id = need(state.secondTemplate, 'templates of step 13a');
  const fragment = need(state.fragment, 'the fragment of step 13e');
  await expectProblem(() => verify.deleteTemplate(id), 409, 'not-empty-template');
  assertEq(await verify.deleteTemplateFragment(id, fragment), true, 'deleteTemplateFragment result');
  assertEq(await verify.deleteTemplate(id), true, 'deleteTemplate result');
  await expectProblem(() => verify.getTemplate(id), 404, 'template-not-found');
  assertEq(await verify.deleteTemplate(state.firstTemplate), true, 'deleteTemplate of the first');
});

finish('node @vonage/verify2');
