"""Drives the official Python SDK (`vonage` 4.x, legacy Verify v1) against a running verifyd.

Run from the repository root:   <venv>/bin/python tests/sdk/python/verify_sdk.py
Environment:
  VERIFYD_URL          base URL of verifyd over TLS, e.g. https://127.0.0.1:41235 (used for the inbox)
  VERIFYD_HOST         host[:port] handed to the SDK (vonage 4.x hard-codes https://); derived from VERIFYD_URL if unset
  VERIFYD_API_KEY      a valid API key
  VERIFYD_API_SECRET   its secret
  VERIFYD_CLOCK_SPEED  how many times faster than real time the server's workflow clock runs (default 1)
  REQUESTS_CA_BUNDLE   the server's (self-signed) certificate; both the SDK and the inbox reader use requests

Prints one line per step, `ok - <step>` or `not ok - <step>: <detail>`, and exits 0 only if every step passed.
Every network wait is bounded: SDK calls time out after 5 s, inbox polling gives up after 5 s.
"""

import ast
import re
import sys
import time

from vonage import Auth, HttpClientOptions, Vonage
from vonage_verify_legacy import Psd2Request, VerifyError, VerifyRequest

# Importing harness.py beside this script would leave a __pycache__ directory in the work tree.
sys.dont_write_bytecode = True
from harness import (  # noqa: E402
    API_HOST,
    SDK_TIMEOUT_S,
    cancel_wait_s,
    check,
    check_eq,
    code_from_sms,
    env,
    fail,
    finish,
    need,
    show,
    state,
    step,
    wait_for_message,
    wrong_code_for,
)

# libphonenumber-valid numbers, one per scenario (GB mobiles 07700 123xxx + one Australian mobile).
# The 1235xx block is reserved for this script; the Node script uses 1234xx.
NUM = {
    'basic': '447700123501',
    'trigger': '447700123502',
    'cancel': '447700123503',
    'cancel_early': '447700123504',
    'psd2': '61412345679',
    'leak': '447700123506',
}

# harness read VERIFYD_URL and VERIFYD_HOST on import.
API_KEY = env('VERIFYD_API_KEY')
API_SECRET = env('VERIFYD_API_SECRET')
CANCEL_WAIT_S = cancel_wait_s()


def new_client():
    return Vonage(
        Auth(api_key=API_KEY, api_secret=API_SECRET),
        HttpClientOptions(api_host=API_HOST, timeout=SDK_TIMEOUT_S),
    )


client = new_client()
verify = client.verify_legacy

# ---------------------------------------------------------------- helpers


def check_request_id(request_id, what):
    check(
        isinstance(request_id, str) and re.fullmatch(r'[0-9a-f]{32}', request_id) is not None,
        f'{what}: request_id is not 32 lowercase hex characters: {request_id!r}',
    )


def verify_error_response(exc, cli=None):
    """What the server answered for a call that raised VerifyError.

    VerifyError carries no response object: its message is
    `Error with the following details: <repr of the response dict>`. Parse that, and cross-check it
    with the JSON of the client's last HTTP response.
    """
    cli = cli or client
    message = str(exc)
    prefix = 'Error with the following details: '
    check(message.startswith(prefix), f'unexpected VerifyError message: {message!r}')
    from_message = ast.literal_eval(message[len(prefix):])
    last = cli.http_client.last_response
    check(last is not None, 'the client has no last_response')
    from_last = last.json()
    check_eq(from_message, from_last, 'VerifyError details vs http_client.last_response.json()')
    return from_last


def expect_verify_error(call, cli=None):
    try:
        result = call()
    except VerifyError as exc:
        return verify_error_response(exc, cli)
    fail(f'expected VerifyError, the call returned {show(result)}')


# ---------------------------------------------------------------- scenarios


# 1. start with a brand -> POST /verify/json (form body)
@step('1 start verification with brand')
def _():
    res = verify.start_verification(VerifyRequest(number=NUM['basic'], brand='AcmeInc', workflow_id=1))
    check_eq(res.status, '0', f'status (response {show(res)})')
    check_request_id(res.request_id, 'start')
    state['basic_id'] = res.request_id


@step('1b first SMS for the request arrives in the inbox')
def _():
    request_id = need('basic_id', 'request id of step 1')
    msg = wait_for_message(NUM['basic'], request_id, 'sms')
    check_eq(msg.get('to'), NUM['basic'], 'message to')
    check('AcmeInc' in str(msg.get('text')), f'SMS text does not name the brand: {msg.get("text")!r}')
    state['basic_pin'] = code_from_sms(msg.get('text'), 'PIN')


# 2. wrong code -> the SDK raises VerifyError (status != 0)
@step('2 check wrong code raises VerifyError with status 16')
def _():
    request_id = need('basic_id', 'request id of step 1')
    pin = need('basic_pin', 'PIN of step 1b')
    body = expect_verify_error(lambda: verify.check_code(request_id, wrong_code_for(pin)))
    check_eq(body.get('status'), '16', f'status (response {show(body)})')
    check_eq(body.get('request_id'), request_id, 'request_id')
    check(body.get('error_text'), f'error_text missing: {show(body)}')


# 3. right code
@step('3 check right code gives status 0 with event_id, price, currency')
def _():
    request_id = need('basic_id', 'request id of step 1')
    pin = need('basic_pin', 'PIN of step 1b')
    res = verify.check_code(request_id, pin)
    check_eq(res.status, '0', f'status (response {show(res)})')
    check_eq(res.request_id, request_id, 'request_id')
    for field in ('event_id', 'price', 'currency'):
        check(getattr(res, field), f'{field} missing or empty: {show(res)}')
    state['basic_event_id'] = res.event_id


# 4. search one id
@step('4 search shows SUCCESS, number, checks INVALID+VALID, one sms event')
def _():
    request_id = need('basic_id', 'request id of step 1')
    res = verify.search(request_id)
    check(not isinstance(res, list), f'search of one id returned a list: {show(res)}')
    check_eq(res.request_id, request_id, f'request_id (response {show(res)})')
    check_eq(res.status, 'SUCCESS', 'status')
    check_eq(res.number, NUM['basic'], 'number')
    check(res.checks is not None, f'checks missing: {show(res)}')
    check_eq([c.status for c in res.checks], ['INVALID', 'VALID'], 'checks statuses')
    check(res.events is not None, f'events missing: {show(res)}')
    check_eq([e.type for e in res.events], ['sms'], 'event types')
    if state.get('basic_event_id'):
        check_eq(res.events[0].id, state['basic_event_id'], 'events[0].id vs event_id of the check')


# 5. trigger_next_event -> voice call
@step('5 start another verification')
def _():
    res = verify.start_verification(VerifyRequest(number=NUM['trigger'], brand='AcmeInc', workflow_id=1))
    check_eq(res.status, '0', f'status (response {show(res)})')
    check_request_id(res.request_id, 'start')
    state['trigger_id'] = res.request_id
    sms = wait_for_message(NUM['trigger'], res.request_id, 'sms')
    state['trigger_pin'] = code_from_sms(sms.get('text'), 'PIN')


@step('5b trigger_next_event gives status 0, command trigger_next_event')
def _():
    request_id = need('trigger_id', 'request id of step 5')
    res = verify.trigger_next_event(request_id)
    check_eq(res.status, '0', f'status (response {show(res)})')
    check_eq(res.command, 'trigger_next_event', 'command')


@step('5c voice message for the triggered request appears in the inbox')
def _():
    request_id = need('trigger_id', 'request id of step 5')
    msg = wait_for_message(NUM['trigger'], request_id, 'voice')
    check_eq(msg.get('to'), NUM['trigger'], 'message to')
    if state.get('trigger_pin'):
        spelled = ', '.join(state['trigger_pin'])
        check(spelled in str(msg.get('text')), f'voice text does not spell the PIN as {spelled!r}: {msg.get("text")!r}')


# 6. cancel after 30 workflow seconds
@step('6 start verification (workflow 1) to cancel later')
def _():
    res = verify.start_verification(VerifyRequest(number=NUM['cancel'], brand='AcmeInc', workflow_id=1))
    check_eq(res.status, '0', f'status (response {show(res)})')
    check_request_id(res.request_id, 'start')
    state['cancel_id'] = res.request_id
    state['cancel_started_at'] = time.monotonic()


@step('6b cancel after 30 workflow seconds gives status 0, command cancel')
def _():
    request_id = need('cancel_id', 'request id of step 6')
    wait = state['cancel_started_at'] + CANCEL_WAIT_S - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    res = verify.cancel_verification(request_id)
    check_eq(res.status, '0', f'status (response {show(res)})')
    check_eq(res.command, 'cancel', 'command')
    state['cancelled'] = True


@step('6c search shows CANCELLED')
def _():
    request_id = need('cancel_id', 'request id of step 6')
    need('cancelled', 'a successful cancel in step 6b')
    res = verify.search(request_id)
    check_eq(res.request_id, request_id, f'request_id (response {show(res)})')
    check_eq(res.status, 'CANCELLED', 'status')
    check_eq(res.number, NUM['cancel'], 'number')


# 7. cancel too early -> VerifyError with status 19
@step('7 cancel right after start raises VerifyError with status 19 and the 30-second text')
def _():
    start = verify.start_verification(VerifyRequest(number=NUM['cancel_early'], brand='AcmeInc', workflow_id=1))
    check_eq(start.status, '0', f'start status (response {show(start)})')
    check_request_id(start.request_id, 'start')
    request_id = start.request_id
    body = expect_verify_error(lambda: verify.cancel_verification(request_id))
    check_eq(body.get('status'), '19', f'status (response {show(body)})')
    check_eq(
        body.get('error_text'),
        f"Verification request ['{request_id}'] can't be cancelled within the first 30 seconds.",
        'error_text',
    )


# 8. PSD2 -> POST /verify/psd2/json (amount=48.0)
@step('8 PSD2 start (payee, amount) gives status 0')
def _():
    res = verify.start_psd2_verification(Psd2Request(number=NUM['psd2'], payee='Acme Shop', amount=48))
    check_eq(res.status, '0', f'status (response {show(res)})')
    check_request_id(res.request_id, 'psd2 start')
    state['psd2_id'] = res.request_id


@step('8b PSD2 SMS names the payee and the amount')
def _():
    request_id = need('psd2_id', 'request id of step 8')
    msg = wait_for_message(NUM['psd2'], request_id, 'sms')
    check('Acme Shop' in str(msg.get('text')), f'SMS text does not name the payee: {msg.get("text")!r}')
    check('48.00' in str(msg.get('text')), f'SMS text does not show the amount 48.00: {msg.get("text")!r}')


# 9. concurrent request -> VerifyError with status 10 and the in-progress request's id
@step('9 start again for an in-progress number raises VerifyError with status 10 and the same request_id')
def _():
    request_id = need('trigger_id', 'request id of step 5')
    body = expect_verify_error(
        lambda: verify.start_verification(VerifyRequest(number=NUM['trigger'], brand='AcmeInc', workflow_id=1))
    )
    check_eq(body.get('status'), '10', f'status (response {show(body)})')
    check_eq(body.get('request_id'), request_id, 'request_id')
    check(body.get('error_text'), f'error_text missing: {show(body)}')


# 10. search with a list of ids -> {"verification_requests": [...]} -> list
@step('10 search with a list of two ids returns a list of 2 results')
def _():
    first = need('basic_id', 'request id of step 1')
    second = need('cancel_id', 'request id of step 6')
    res = verify.search([first, second])
    check(isinstance(res, list), f'expected a list, got {show(res)}')
    check_eq(len(res), 2, f'number of results ({show(res)})')
    by_id = {r.request_id: r for r in res}
    check_eq(set(by_id), {first, second}, 'request ids in the results')
    check_eq(by_id[first].status, 'SUCCESS', f'status of {first}')
    if state.get('cancelled'):
        check_eq(by_id[second].status, 'CANCELLED', f'status of {second}')


# 11. vonage-python-sdk issue #323: after a JSON call, the shared headers keep `Content-Type: application/json`,
#     so later legacy calls send form bodies labelled as JSON. verifyd must still decode them.
@step('11 header leak: form bodies labelled application/json after a JSON call still work')
def _():
    leaky = new_client()
    try:
        leaky.verify_legacy.request_network_unblock('23410', 3600)  # the only JSON call of verify_legacy
    except Exception:  # noqa: BLE001 - whatever verifyd answers to network-unblock is irrelevant here
        pass
    headers = leaky.http_client._headers  # the shared dict the SDK leaks into (private attribute)
    check_eq(headers.get('Content-Type'), 'application/json', 'leaked Content-Type on the SDK client (leak not reproduced)')

    start = leaky.verify_legacy.start_verification(VerifyRequest(number=NUM['leak'], brand='AcmeInc', workflow_id=1))
    sent = leaky.http_client.last_request
    check_eq(sent.headers.get('Content-Type'), 'application/json', 'Content-Type sent with the start request')
    check(
        isinstance(sent.body, str) and sent.body.startswith('number='),
        f'start body was expected to be form-encoded: {sent.body!r}',
    )
    check_eq(start.status, '0', f'start status (response {show(start)})')
    check_request_id(start.request_id, 'start')

    pin = code_from_sms(wait_for_message(NUM['leak'], start.request_id, 'sms').get('text'), 'PIN')
    wrong = expect_verify_error(lambda: leaky.verify_legacy.check_code(start.request_id, wrong_code_for(pin)), leaky)
    check_eq(wrong.get('status'), '16', f'wrong-code check status (response {show(wrong)})')

    right = leaky.verify_legacy.check_code(start.request_id, pin)
    sent = leaky.http_client.last_request
    check_eq(sent.headers.get('Content-Type'), 'application/json', 'Content-Type sent with the check request')
    check(
        isinstance(sent.body, str) and sent.body.startswith('request_id='),
        f'check body was expected to be form-encoded: {sent.body!r}',
    )
    check_eq(right.status, '0', f'right-code check status (response {show(right)})')


finish(f'python vonage {client.http_client.user_agent.split()[0].split("/")[-1]}')
