"""What verify_sdk.py (Verify v1) and verify2_sdk.py (Verify v2) share: the environment, the step runner, checks,
and reading codes from the verifyd inbox.

Each script imports it as `harness`: Python puts a script's own directory first on sys.path, so this file is found
beside it when the script runs as `python tests/sdk/python/<script>.py` from the repository root.

Importing it reads VERIFYD_URL (and VERIFYD_HOST): exits with status 2 if VERIFYD_URL is unset.
Steps print `ok - <step>` or `not ok - <step>: <detail>`; `finish` prints the count and exits 0 only if every step
passed. Every network wait is bounded: inbox reads time out after 5 s, inbox polling gives up after 5 s.
"""

import math
import os
import re
import sys
import time
from urllib.parse import urlsplit

import requests

SDK_TIMEOUT_S = 5
INBOX_WAIT_S = 5.0
CANCEL_MARGIN_S = 0.7


def env(name, default=None):
    value = os.environ.get(name, '')
    if value == '':
        if default is not None:
            return default
        print(f'not ok - environment: {name} is not set', flush=True)
        sys.exit(2)
    return value


BASE_URL = env('VERIFYD_URL').rstrip('/')
API_HOST = os.environ.get('VERIFYD_HOST') or urlsplit(BASE_URL).netloc


def cancel_wait_s():
    """Seconds from a start until verifyd allows `cancel`: it refuses it during the first 30 s of workflow time,
    which runs VERIFYD_CLOCK_SPEED times faster than real time (exits with status 2 if that is not a positive
    number)."""
    try:
        clock_speed = float(env('VERIFYD_CLOCK_SPEED', '1'))
        assert clock_speed > 0
    except (ValueError, AssertionError):
        print(f'not ok - environment: VERIFYD_CLOCK_SPEED must be a positive number, got {os.environ.get("VERIFYD_CLOCK_SPEED")!r}')
        sys.exit(2)
    return math.ceil(31 / clock_speed) + CANCEL_MARGIN_S


# ---------------------------------------------------------------- checks


class StepFailure(Exception):
    pass


def fail(detail):
    raise StepFailure(detail)


def check(cond, detail):
    if not cond:
        fail(detail)


def check_eq(actual, expected, what):
    if actual != expected:
        fail(f'{what}: expected {expected!r}, got {actual!r}')


def show(obj):
    text = repr(obj)
    return text if len(text) <= 600 else text[:600] + '...'


# ---------------------------------------------------------------- inbox


def inbox(to):
    url = f'{BASE_URL}/inbox/messages'
    res = requests.get(url, params={'to': to}, timeout=SDK_TIMEOUT_S)
    if res.status_code != 200:
        fail(f'GET {res.url} answered HTTP {res.status_code}: {res.text}')
    body = res.json()
    if not isinstance(body, list):
        fail(f'GET {res.url} did not answer a JSON array: {show(body)}')
    return body


def wait_for_message(to, request_id, channel):
    """Polls the inbox (bounded) until a message for request_id on channel appears; returns it."""
    deadline = time.monotonic() + INBOX_WAIT_S
    while True:
        seen = inbox(to)
        for msg in seen:
            # The inbox shows every request id as 32 hex digits: a v1 id as it is, a v2 UUID without its dashes.
            if msg.get('request_id') == request_id.replace('-', '') and msg.get('channel') == channel:
                return msg
        if time.monotonic() >= deadline:
            fail(f'no {channel} message for request {request_id} to {to} within {INBOX_WAIT_S} s; inbox: {show(seen)}')
        time.sleep(0.1)


def code_from_sms(text, kind='code'):
    """The code in an SMS text: the one run of 4-10 digits that is not part of a decimal number.
    `kind` names it in the failure (v1 says PIN)."""
    runs = re.findall(r'(?<![\d.,])\d{4,10}(?!\d|[.,]\d)', str(text))
    if len(runs) != 1:
        fail(f'expected exactly one {kind}-like digit run in SMS text {text!r}, found {runs!r}')
    return runs[0]


def code_from_voice(text):
    """The code in a voice text, which spells it digit by digit (`4, 8, 1, 5`), maybe more than once."""
    spelled = re.findall(r'\d(?:, \d)+', str(text))
    codes = {s.replace(', ', '') for s in spelled if 4 <= len(s.replace(', ', '')) <= 10}
    if len(codes) != 1:
        fail(f'expected one code spelled as "d, d, d, d" in voice text {text!r}, found {spelled!r}')
    return codes.pop()


def wrong_code_for(code):
    # Same length, every digit different.
    return ''.join(str((int(d) + 1) % 10) for d in code)


# ---------------------------------------------------------------- steps

results = []
state = {}


def step(name):
    """Decorator: runs the function at once as the step `name` and prints its outcome."""

    def run(fn):
        try:
            fn()
        except StepFailure as exc:
            results.append(False)
            detail = str(exc)
        # Any SDK/transport/validation error is a failure of this step; a non-2xx answer from the server comes as the
        # SDK's HttpRequestError, whose message includes the body.
        except Exception as exc:  # noqa: BLE001
            results.append(False)
            detail = f'{type(exc).__name__}: {exc}'
        else:
            results.append(True)
            print(f'ok - {name}', flush=True)
            return fn
        detail = re.sub(r'\s*\n\s*', ' ', detail)
        print(f'not ok - {name}: {detail}', flush=True)
        return fn

    return run


def need(key, what):
    if not state.get(key):
        fail(f'skipped: {what} is not available because an earlier step failed')
    return state[key]


def finish(label):
    """Prints `# <label>: N of M steps passed` and exits, 0 only if every step passed."""
    passed = sum(results)
    print(f'# {label}: {passed} of {len(results)} steps passed')
    sys.exit(0 if passed == len(results) else 1)
