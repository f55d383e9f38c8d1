// Drives the official Node SDK `@vonage/verify` (legacy Verify v1) against a running verifyd.
//
// Run from the repository root:   node tests/sdk/node/verify_sdk.mjs
// Environment:
//   VERIFYD_URL          base URL of verifyd, e.g. http://127.0.0.1:41234 (used as the SDK's apiHost)
//   VERIFYD_API_KEY      a valid API key
//   VERIFYD_API_SECRET   its secret
//   VERIFYD_CLOCK_SPEED  how many times faster than real time the server's workflow clock runs (default 1)
//
// Prints one line per step, `ok - <step>` or `not ok - <step>: <detail>`, and exits 0 only if every step passed.
// Every network wait is bounded: SDK calls time out after 5 s, inbox polling gives up after 5 s.

import { Verify, VerifyWorkflows } from '@vonage/verify';
import {
  BASE_URL, SDK_TIMEOUT_MS, assert, assertEq, cancelWaitMs, causeOf, codeFromSms, env, finish, need, show, sleep,
  stepRunner, waitForMessage, wrongCodeFor,
} from './harness.mjs';

// harness.mjs read VERIFYD_URL on import.
const API_KEY = env('VERIFYD_API_KEY');
const API_SECRET = env('VERIFYD_API_SECRET');
const CANCEL_WAIT_MS = cancelWaitMs();

// libphonenumber-valid numbers, one per scenario (GB mobiles 07700 123xxx + one Australian mobile).
// The 1234xx block is reserved for this script; the Python script uses 1235xx.
const NUM = {
  basic: '447700123401',
  trigger: '447700123402',
  cancel: '447700123403',
  cancelEarly: '447700123404',
  psd2: '61412345678',
};

const verify = new Verify(
  { apiKey: API_KEY, apiSecret: API_SECRET },
  { apiHost: BASE_URL, timeout: SDK_TIMEOUT_MS },
);

// ---------------------------------------------------------------- helpers

function assertRequestId(id, what) {
  assert(typeof id === 'string' && /^[0-9a-f]{32}$/.test(id), `${what}: request_id is not 32 lowercase hex characters: ${JSON.stringify(id)}`);
}

const step = stepRunner((err) => {
  const http = err && err.response ? ` (HTTP ${err.response.status})` : '';
  return `${err && err.name ? err.name : 'Error'}: ${err && err.message ? err.message : String(err)}${http}${causeOf(err)}`;
});

// ---------------------------------------------------------------- scenarios

const state = {};

// 1. start with a brand -> /verify/json
await step('1 start verification with brand', async () => {
  const res = await verify.start({ number: NUM.basic, brand: 'AcmeInc', workflowId: VerifyWorkflows.SMS_TTS_TTS });
  assertEq(res.status, '0', `status (response ${show(res)})`);
  assertRequestId(res.request_id, 'start');
  assertEq(res.requestId, res.request_id, 'camelCased requestId');
  state.basicId = res.request_id;
});

await step('1b first SMS for the request arrives in the inbox', async () => {
  const id = need(state.basicId, 'request id of step 1');
  const msg = await waitForMessage(NUM.basic, id, 'sms');
  assertEq(msg.to, NUM.basic, 'message to');
  assert(String(msg.text).includes('AcmeInc'), `SMS text does not name the brand: ${JSON.stringify(msg.text)}`);
  state.basicPin = codeFromSms(msg.text, 'PIN');
});

// 2. wrong code -> status 16 in the response (the SDK does not throw on business errors)
await step('2 check wrong code gives status 16', async () => {
  const id = need(state.basicId, 'request id of step 1');
  const pin = need(state.basicPin, 'PIN of step 1b');
  const res = await verify.check(id, wrongCodeFor(pin));
  assertEq(res.status, '16', `status (response ${show(res)})`);
  assertEq(res.request_id, id, 'request_id');
  assert(typeof res.error_text === 'string' && res.error_text.length > 0, `error_text missing: ${show(res)}`);
  assertEq(res.errorText, res.error_text, 'camelCased errorText');
});

// 3. right code
await step('3 check right code gives status 0 with event_id, price, currency', async () => {
  const id = need(state.basicId, 'request id of step 1');
  const pin = need(state.basicPin, 'PIN of step 1b');
  const res = await verify.check(id, pin);
  assertEq(res.status, '0', `status (response ${show(res)})`);
  assertEq(res.request_id, id, 'request_id');
  for (const field of ['event_id', 'price', 'currency']) {
    assert(typeof res[field] === 'string' && res[field].length > 0, `${field} missing or not a non-empty string: ${show(res)}`);
  }
  assertEq(res.eventId, res.event_id, 'camelCased eventId');
  state.basicEventId = res.event_id;
});

// 4. search
await step('4 search shows SUCCESS, number, checks INVALID+VALID, one sms event', async () => {
  const id = need(state.basicId, 'request id of step 1');
  const res = await verify.search(id);
  assertEq(res.request_id, id, `request_id (response ${show(res)})`);
  assertEq(res.status, 'SUCCESS', 'status');
  assertEq(res.number, NUM.basic, 'number');
  assert(Array.isArray(res.checks), `checks is not an array: ${show(res)}`);
  assertEq(res.checks.length, 2, `number of checks (${show(res.checks)})`);
  assertEq(res.checks[0].status, 'INVALID', 'checks[0].status');
  assertEq(res.checks[1].status, 'VALID', 'checks[1].status');
  // (verifyd does not echo the submitted code back; it masks it, so only its presence is checked.)
  assert(typeof res.checks[1].code === 'string', `checks[1].code is not a string: ${show(res.checks[1])}`);
  assert(Array.isArray(res.events), `events is not an array: ${show(res)}`);
  assertEq(res.events.length, 1, `number of events (${show(res.events)})`);
  assertEq(res.events[0].type, 'sms', 'events[0].type');
  if (state.basicEventId) assertEq(res.events[0].id, state.basicEventId, 'events[0].id vs event_id of the check');
  assertEq(res.requestId, id, 'camelCased requestId');
});

// 5. trigger_next_event on a new request -> voice call
await step('5 start another verification', async () => {
  const res = await verify.start({ number: NUM.trigger, brand: 'AcmeInc', workflowId: VerifyWorkflows.SMS_TTS_TTS });
  assertEq(res.status, '0', `status (response ${show(res)})`);
  assertRequestId(res.request_id, 'start');
  state.triggerId = res.request_id;
  const sms = await waitForMessage(NUM.trigger, state.triggerId, 'sms');
  state.triggerPin = codeFromSms(sms.text, 'PIN');
});

await step('5b trigger next event gives status 0, command trigger_next_event', async () => {
  const id = need(state.triggerId, 'request id of step 5');
  const res = await verify.trigger(id);
  assertEq(res.status, '0', `status (response ${show(res)})`);
  assertEq(res.command, 'trigger_next_event', 'command');
});

await step('5c voice message for the triggered request appears in the inbox', async () => {
  const id = need(state.triggerId, 'request id of step 5');
  const msg = await waitForMessage(NUM.trigger, id, 'voice');
  assertEq(msg.to, NUM.trigger, 'message to');
  if (state.triggerPin) {
    const spelled = state.triggerPin.split('').join(', ');
    assert(String(msg.text).includes(spelled), `voice text does not spell the PIN as ${JSON.stringify(spelled)}: ${JSON.stringify(msg.text)}`);
  }
});

// 6. cancel after 30 workflow seconds
await step('6 start verification (workflow 1) to cancel later', async () => {
  const res = await verify.start({ number: NUM.cancel, brand: 'AcmeInc', workflowId: VerifyWorkflows.SMS_TTS_TTS });
  assertEq(res.status, '0', `status (response ${show(res)})`);
  assertRequestId(res.request_id, 'start');
  state.cancelId = res.request_id;
  state.cancelStartedAt = Date.now();
});

await step('6b cancel after 30 workflow seconds gives status 0, command cancel', async () => {
  const id = need(state.cancelId, 'request id of step 6');
  const waitMs = state.cancelStartedAt + CANCEL_WAIT_MS - Date.now();
  if (waitMs > 0) await sleep(waitMs);
  const res = await verify.cancel(id);
  assertEq(res.status, '0', `status (response ${show(res)})`);
  assertEq(res.command, 'cancel', 'command');
  state.cancelled = true;
});

await step('6c search shows CANCELLED', async () => {
  const id = need(state.cancelId, 'request id of step 6');
  need(state.cancelled, 'a successful cancel in step 6b');
  const res = await verify.search(id);
  assertEq(res.request_id, id, `request_id (response ${show(res)})`);
  assertEq(res.status, 'CANCELLED', 'status');
  assertEq(res.number, NUM.cancel, 'number');
});

// 7. cancel too early
await step('7 cancel right after start gives status 19 with the 30-second text', async () => {
  const start = await verify.start({ number: NUM.cancelEarly, brand: 'AcmeInc', workflowId: VerifyWorkflows.SMS_TTS_TTS });
  assertEq(start.status, '0', `start status (response ${show(start)})`);
  assertRequestId(start.request_id, 'start');
  const id = start.request_id;
  const res = await verify.cancel(id);
  assertEq(res.status, '19', `status (response ${show(res)})`);
  assertEq(res.error_text, `Verification request ['${id}'] can't be cancelled within the first 30 seconds.`, 'error_text');
  assertEq(res.errorText, res.error_text, 'camelCased errorText');
});

// 8. PSD2 (no brand -> /verify/psd2/json)
await step('8 PSD2 start (payee, amount) gives status 0', async () => {
  const res = await verify.start({ number: NUM.psd2, payee: 'Acme Shop', amount: 48 });
  assertEq(res.status, '0', `status (response ${show(res)})`);
  assertRequestId(res.request_id, 'psd2 start');
  state.psd2Id = res.request_id;
});

await step('8b PSD2 SMS names the payee and the amount', async () => {
  const id = need(state.psd2Id, 'request id of step 8');
  const msg = await waitForMessage(NUM.psd2, id, 'sms');
  assert(String(msg.text).includes('Acme Shop'), `SMS text does not name the payee: ${JSON.stringify(msg.text)}`);
  assert(String(msg.text).includes('48.00'), `SMS text does not show the amount 48.00: ${JSON.stringify(msg.text)}`);
});

// 9. concurrent request to the number of step 5 (still in progress)
await step('9 start again for an in-progress number gives status 10 and the same request_id', async () => {
  const id = need(state.triggerId, 'request id of step 5');
  const res = await verify.start({ number: NUM.trigger, brand: 'AcmeInc', workflowId: VerifyWorkflows.SMS_TTS_TTS });
  assertEq(res.status, '10', `status (response ${show(res)})`);
  assertEq(res.request_id, id, 'request_id');
  assertEq(res.requestId, id, 'camelCased requestId');
  assert(typeof res.error_text === 'string' && res.error_text.length > 0, `error_text missing: ${show(res)}`);
});

finish('node @vonage/verify');
