"""Drives the official Python SDK (`vonage` 4.x, `client.verify` = Verify v2) against a running verifyd.

Run from the repository root:   <venv>/bin/python tests/sdk/python/verify2_sdk.py
Environment:
  VERIFYD_URL               base URL of verifyd over TLS, e.g. https://127.0.0.1:41235 (used for the inbox)
  VERIFYD_HOST              host[:port] handed to the SDK (vonage 4.x hard-codes https://); derived from VERIFYD_URL if unset
  VERIFYD_AUTH              `basic` or `jwt`: how the SDK authenticates (the Rust test runs this script once with each)
  VERIFYD_API_KEY           a valid API key                  (basic)
  VERIFYD_API_SECRET        its secret                       (basic)
  VERIFYD_APPLICATION_ID    the id of an application verifyd knows               (jwt)
  VERIFYD_PRIVATE_KEY_FILE  path to that application's RSA private key (PEM)    (jwt)
  VERIFYD_CLOCK_SPEED       how many times faster than real time the server's workflow clock runs (default 1)
  REQUESTS_CA_BUNDLE        the server's (self-signed) certificate; both the SDK and the inbox reader use requests

`client.verify` uses a JWT when the Auth has an application_id, else Basic (vonage-verify 2.2.0).
Prints one line per step, `ok - <step>` or `not ok - <step>: <detail>`, and exits 0 only if every step passed.
Every network wait is bounded: SDK calls time out after 5 s, inbox polling gives up after 5 s.

How the SDK reports errors (read in vonage-http-client 1.5.2 / vonage-verify 2.2.0): any non-2xx answer raises
HttpRequestError (404: its subclass NotFoundError; 401/403/429/500 other subclasses) whose `.response` is the
requests.Response (status_code, headers, json()). cancel_verification / trigger_next_workflow return None on 2xx.
VerifyRequest is a pydantic model that refuses locally: brand > 16 chars, channel_timeout outside 15-900,
code_length outside 4-10, client_ref > 16 chars, a locale outside its enum (pydantic.ValidationError, nothing sent).
"""

import logging
import sys
import time
import uuid

from pydantic import ValidationError
from vonage import Auth, HttpClientOptions, Vonage
from vonage_http_client.errors import HttpRequestError, NotFoundError
from vonage_verify import SmsChannel, VerifyRequest, VoiceChannel

# Importing harness.py beside this script would leave a __pycache__ directory in the work tree.
sys.dont_write_bytecode = True
from harness import (  # noqa: E402
    API_HOST,
    SDK_TIMEOUT_S,
    cancel_wait_s,
    check,
    check_eq,
    code_from_sms,
    code_from_voice,
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

# Workflow seconds each channel gets before the next one starts: the maximum, so that nothing moves on by itself
# while the script works (900 workflow s are 45 real s at clock speed 20).
CHANNEL_TIMEOUT = 900

# harness read VERIFYD_URL and VERIFYD_HOST on import.
AUTH_MODE = env('VERIFYD_AUTH')
if AUTH_MODE not in ('basic', 'jwt'):
    print(f'not ok - environment: VERIFYD_AUTH must be basic or jwt, got {AUTH_MODE!r}', flush=True)
    sys.exit(2)
CANCEL_WAIT_S = cancel_wait_s()

# libphonenumber-valid GB mobiles 07700 123xxx, one per scenario. The 1237xx block is reserved for the basic run
# and 1238xx for the jwt run, so that the two runs never share a number; v1 uses 1234xx (Node) and 1235xx
# (Python), the Node v2 script 1236xx.
_BLOCK = {'basic': '4477001237', 'jwt': '4477001238'}[AUTH_MODE]
NUM = {
    'basic': _BLOCK + '01',
    'cancel': _BLOCK + '02',
    'next': _BLOCK + '03',
    'concurrent': _BLOCK + '04',
    'expired': _BLOCK + '05',
    'length6': _BLOCK + '06',
    'bad_brand': _BLOCK + '07',
    'local_checks': _BLOCK + '08',
}


def auth():
    if AUTH_MODE == 'basic':
        return Auth(api_key=env('VERIFYD_API_KEY'), api_secret=env('VERIFYD_API_SECRET'))
    application_id = env('VERIFYD_APPLICATION_ID')
    key_file = env('VERIFYD_PRIVATE_KEY_FILE')
    try:
        with open(key_file, encoding='ascii') as f:
            private_key = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        print(f'not ok - environment: cannot read VERIFYD_PRIVATE_KEY_FILE {key_file}: {exc}', flush=True)
        sys.exit(2)
    # vonage-jwt 1.1.5 takes the PEM text only in PKCS#8 form (`-----BEGIN PRIVATE KEY-----`; it refuses other text),
    # so a PKCS#1 key (`-----BEGIN RSA PRIVATE KEY-----`) is converted first. (Handed a string ending in `.<ext>`,
    # it would read that file instead; the text is passed so that the file's name does not matter.)
    if '-----BEGIN PRIVATE KEY-----' not in private_key:
        from cryptography.hazmat.primitives import serialization  # installed with vonage-jwt (pyjwt[crypto])

        private_key = (
            serialization.load_pem_private_key(private_key.encode(), password=None)
            .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            .decode()
        )
    return Auth(application_id=application_id, private_key=private_key)


# vonage-http-client logs every non-2xx answer as a warning; the expected ones would clutter the output (an
# unexpected one is reported, with its body, by the step that met it).
logging.getLogger('vonage').addHandler(logging.NullHandler())

try:
    client = Vonage(auth(), HttpClientOptions(api_host=API_HOST, timeout=SDK_TIMEOUT_S))
except Exception as exc:  # noqa: BLE001 - bad credentials or key: nothing can run
    print(f'not ok - environment: cannot build the SDK client: {type(exc).__name__}: {exc}', flush=True)
    sys.exit(2)
verify = client.verify

# ---------------------------------------------------------------- helpers


def check_uuid(request_id, what):
    try:
        ok = isinstance(request_id, str) and str(uuid.UUID(request_id)) == request_id.lower()
    except ValueError:
        ok = False
    check(ok, f'{what}: request id is not a UUID: {request_id!r}')


def sms_request(to, **kw):
    kw.setdefault('channel_timeout', CHANNEL_TIMEOUT)
    return VerifyRequest(brand=kw.pop('brand', 'AcmeInc'), workflow=[SmsChannel(to=to)], **kw)


def http_error(call):
    """Runs call, which must raise HttpRequestError; returns the server's requests.Response."""
    try:
        result = call()
    except HttpRequestError as exc:
        return exc.response
    fail(f'expected an HTTP error, the call returned {show(result)}')


def expect_problem(call, status, slug=None):
    """call must fail with HTTP status and an RFC 7807 body; returns the parsed body."""
    res = http_error(call)
    check_eq(res.status_code, status, f'HTTP status (body {res.text[:400]!r})')
    content_type = res.headers.get('Content-Type', '').split(';')[0].strip()
    check_eq(content_type, 'application/problem+json', f'content-type (body {res.text[:400]!r})')
    try:
        body = res.json()
    except ValueError:
        fail(f'problem body is not JSON: {res.text[:400]!r}')
    for field in ('type', 'title'):
        check(isinstance(body.get(field), str) and body[field], f'problem body lacks {field!r}: {show(body)}')
    if slug is not None:
        check_eq(body['type'].rsplit('#', 1)[-1], slug, f'slug of type {body["type"]!r}')
    return body


# ---------------------------------------------------------------- scenarios


# 1. start -> POST /v2/verify, 202 {"request_id"}
@step(f'1 start_verification with an sms workflow returns a request id ({AUTH_MODE} auth)')
def _():
    res = verify.start_verification(sms_request(NUM['basic']))
    check_uuid(res.request_id, f'start_verification (response {show(res)})')
    state['basic_id'] = res.request_id
    sent = client.http_client.last_request.headers.get('Authorization')
    sent = sent.decode() if isinstance(sent, bytes) else str(sent)
    check(sent.startswith({'basic': 'Basic ', 'jwt': 'Bearer '}[AUTH_MODE]), f'Authorization sent: {sent[:20]!r}...')


@step('1b the SMS arrives in the inbox with a 4-digit code and the brand')
def _():
    request_id = need('basic_id', 'request id of step 1')
    msg = wait_for_message(NUM['basic'], request_id, 'sms')
    check_eq(msg.get('to'), NUM['basic'], 'message to')
    check('AcmeInc' in str(msg.get('text')), f'SMS text does not name the brand: {msg.get("text")!r}')
    state['basic_code'] = code_from_sms(msg.get('text'))
    check_eq(len(state['basic_code']), 4, f'length of the default code {state["basic_code"]}')


# 2. wrong code -> 400 invalid-code (HttpRequestError)
@step('2 check_code with a wrong code raises HttpRequestError 400 invalid-code')
def _():
    request_id = need('basic_id', 'request id of step 1')
    code = need('basic_code', 'code of step 1b')
    expect_problem(lambda: verify.check_code(request_id, wrong_code_for(code)), 400, 'invalid-code')


# 3. right code -> 200 {"request_id","status":"completed"}
@step('3 check_code with the right code returns completed')
def _():
    request_id = need('basic_id', 'request id of step 1')
    code = need('basic_code', 'code of step 1b')
    res = verify.check_code(request_id, code)
    check_eq(res.request_id, request_id, f'request_id (response {show(res)})')
    check_eq(res.status, 'completed', 'status')


# 4. a request to cancel later (step 11); cancelling it now, inside the first 30 workflow seconds, is refused
@step('4 start_verification (to cancel later)')
def _():
    res = verify.start_verification(sms_request(NUM['cancel']))
    check_uuid(res.request_id, f'start_verification (response {show(res)})')
    state['cancel_id'] = res.request_id
    state['cancel_started_at'] = time.monotonic()
    # Read now: the inbox drops a request's messages once the request has ended.
    state['cancel_code'] = code_from_sms(wait_for_message(NUM['cancel'], res.request_id, 'sms').get('text'))


@step('4b cancel_verification within the first 30 workflow seconds raises HttpRequestError 409')
def _():
    request_id = need('cancel_id', 'request id of step 4')
    expect_problem(lambda: verify.cancel_verification(request_id), 409)


# 5. next_workflow: sms -> voice
@step('5 start_verification with an sms then voice workflow; the SMS arrives')
def _():
    res = verify.start_verification(
        VerifyRequest(
            brand='AcmeInc',
            workflow=[SmsChannel(to=NUM['next']), VoiceChannel(to=NUM['next'])],
            channel_timeout=CHANNEL_TIMEOUT,
        )
    )
    check_uuid(res.request_id, f'start_verification (response {show(res)})')
    state['next_id'] = res.request_id
    state['next_started_at'] = time.monotonic()
    code_from_sms(wait_for_message(NUM['next'], res.request_id, 'sms').get('text'))


@step('5b trigger_next_workflow moves to the voice step (HTTP 200)')
def _():
    request_id = need('next_id', 'request id of step 5')
    check_eq(verify.trigger_next_workflow(request_id), None, 'trigger_next_workflow result')
    check_eq(client.http_client.last_response.status_code, 200, 'HTTP status')
    state['moved_to_voice'] = True


@step('5c a voice message spelling the code arrives in the inbox')
def _():
    request_id = need('next_id', 'request id of step 5')
    need('moved_to_voice', 'a successful trigger_next_workflow in step 5b')
    msg = wait_for_message(NUM['next'], request_id, 'voice')
    check_eq(msg.get('to'), NUM['next'], 'message to')
    state['voice_code'] = code_from_voice(msg.get('text'))


@step('5d trigger_next_workflow with no step left raises HttpRequestError 409')
def _():
    request_id = need('next_id', 'request id of step 5')
    need('moved_to_voice', 'a successful trigger_next_workflow in step 5b')
    expect_problem(lambda: verify.trigger_next_workflow(request_id), 409)


# 6. a second request to a `to` with one in progress -> 409 concurrent
@step('6 start_verification to a number with a request in progress raises HttpRequestError 409 concurrent')
def _():
    first = verify.start_verification(sms_request(NUM['concurrent']))
    check_uuid(first.request_id, f'first start_verification (response {show(first)})')
    expect_problem(lambda: verify.start_verification(sms_request(NUM['concurrent'])), 409, 'concurrent')


# 7. three wrong codes end the request: the right code is then answered 410 expired
@step('7 after three wrong codes even the right code raises HttpRequestError 410 expired')
def _():
    res = verify.start_verification(sms_request(NUM['expired']))
    check_uuid(res.request_id, f'start_verification (response {show(res)})')
    request_id = res.request_id
    code = code_from_sms(wait_for_message(NUM['expired'], request_id, 'sms').get('text'))
    wrong = wrong_code_for(code)
    expect_problem(lambda: verify.check_code(request_id, wrong), 400, 'invalid-code')
    expect_problem(lambda: verify.check_code(request_id, wrong), 400, 'invalid-code')
    # The third wrong code itself may be answered 400 (still a wrong code) or 410 (workflow terminated).
    third = http_error(lambda: verify.check_code(request_id, wrong)).status_code
    check(third in (400, 410), f'third wrong code: expected HTTP 400 or 410, got {third}')
    expect_problem(lambda: verify.check_code(request_id, code), 410, 'expired')


# 8. code_length 6
@step('8 code_length 6 sends a 6-digit code, which checks out')
def _():
    res = verify.start_verification(sms_request(NUM['length6'], code_length=6))
    check_uuid(res.request_id, f'start_verification (response {show(res)})')
    code = code_from_sms(wait_for_message(NUM['length6'], res.request_id, 'sms').get('text'))
    check_eq(len(code), 6, f'length of code {code}')
    check_eq(verify.check_code(res.request_id, code).status, 'completed', 'check_code status')


# 9. 422 invalid parameters. The SDK itself refuses channel_timeout 10 and code_length 11 (9b), so the case that
#    reaches the server is a brand with '/' (the SDK only checks the brand's length).
@step('9a a brand with "/" raises HttpRequestError 422 naming brand')
def _():
    body = expect_problem(lambda: verify.start_verification(sms_request(NUM['bad_brand'], brand='Acme/Inc')), 422)
    params = body.get('invalid_parameters')
    check(isinstance(params, list) and params, f'invalid_parameters missing or empty: {show(body)}')
    check(
        any(isinstance(p, dict) and 'brand' in str(p.get('name')) and isinstance(p.get('reason'), str) for p in params),
        f'invalid_parameters does not name brand (with a reason): {show(params)}',
    )


@step('9b the SDK refuses channel_timeout 10 and code_length 11 locally, sending nothing')
def _():
    before = client.http_client.last_response
    for field, value in (('channel_timeout', 10), ('code_length', 11)):
        try:
            req = VerifyRequest(brand='AcmeInc', workflow=[SmsChannel(to=NUM['local_checks'])], **{field: value})
        except ValidationError as exc:
            check(field in str(exc), f'ValidationError does not name {field}: {exc}')
        else:
            verify.start_verification(req)  # a newer SDK would send it; the server must then answer 422
            fail(f'the SDK accepted {field}={value} locally (update this step: the server should answer 422)')
    check(client.http_client.last_response is before, 'the SDK sent a request')


# 10. unknown request id
@step('10 check_code for an unknown request id raises NotFoundError (404)')
def _():
    try:
        result = verify.check_code(str(uuid.uuid4()), '1234')
    except HttpRequestError as exc:
        res = exc.response
        check_eq(res.status_code, 404, f'HTTP status (body {res.text[:400]!r})')
        check(isinstance(exc, NotFoundError), f'raised {type(exc).__name__}, not NotFoundError')
        content_type = res.headers.get('Content-Type', '').split(';')[0].strip()
        check_eq(content_type, 'application/problem+json', f'content-type (body {res.text[:400]!r})')
    else:
        fail(f'expected an HTTP error, the call returned {show(result)}')


# 11. cancel after the first 30 workflow seconds -> 204
@step('11 cancel_verification after 30 workflow seconds succeeds (HTTP 204)')
def _():
    request_id = need('cancel_id', 'request id of step 4')
    wait = state['cancel_started_at'] + CANCEL_WAIT_S - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    check_eq(verify.cancel_verification(request_id), None, 'cancel_verification result')
    check_eq(client.http_client.last_response.status_code, 204, 'HTTP status')
    state['cancelled'] = True


@step('11b the code of a cancelled request no longer checks out')
def _():
    request_id = need('cancel_id', 'request id of step 4')
    need('cancelled', 'a successful cancel in step 11')
    code = need('cancel_code', 'the code of step 4')
    status = http_error(lambda: verify.check_code(request_id, code)).status_code
    check(400 <= status < 500, f'check_code after cancel: expected a 4xx, got HTTP {status}')


# 12. cancel once the second step has started -> refused, even after 30 workflow seconds
@step('12 cancel_verification after the voice step started raises HttpRequestError 409')
def _():
    request_id = need('next_id', 'request id of step 5')
    need('moved_to_voice', 'a successful trigger_next_workflow in step 5b')
    wait = state['next_started_at'] + CANCEL_WAIT_S - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    expect_problem(lambda: verify.cancel_verification(request_id), 409)


@step('12b the code from the voice message checks out (completed)')
def _():
    request_id = need('next_id', 'request id of step 5')
    code = need('voice_code', 'voice code of step 5c')
    res = verify.check_code(request_id, code)
    check_eq(res.request_id, request_id, f'request_id (response {show(res)})')
    check_eq(res.status, 'completed', 'status')


version = client.http_client.user_agent.split()[0].split('/')[-1]
finish(f'python vonage {version} verify v2 ({AUTH_MODE})')
