"""Schemathesis hooks for tests/schemathesis.rs (loaded through SCHEMATHESIS_HOOKS).

The run checks verifyd against Vonage's own OpenAPI documents (tests/openapi/). Where verifyd
deliberately answers outside them, or where a document contradicts itself, the failure is dropped
here, each case by a rule of its own that names what justifies it; docs/security.md lists them.
A server error (5xx) is never dropped. Every drop is counted and the counts are printed when the
run ends, so that an exclusion that starts to swallow many cases shows.

VERIFYD_SURFACE says which document runs: `v1` (tests/openapi/verify-v1.yml) or `v2`
(tests/openapi/verify-v2.yml). VERIFYD_URL (the server's origin), VERIFYD_API_KEY and
VERIFYD_API_SECRET let `before_call` start real verifications and make real templates (below).
"""

import atexit
import collections
import itertools
import os
import re
import sys
import zlib

import requests
import schemathesis
from schemathesis.core.failures import ServerError
from schemathesis.openapi.checks import JsonSchemaError, UndefinedStatusCode

SURFACE = os.environ.get("VERIFYD_SURFACE", "")
ORIGIN = os.environ.get("VERIFYD_URL", "")
CREDENTIALS = (os.environ.get("VERIFYD_API_KEY", ""), os.environ.get("VERIFYD_API_SECRET", ""))
DROPPED = collections.Counter()
LIVE = collections.Counter()


@atexit.register
def _print_drops():
    if DROPPED:
        lines = "".join(f"  {name}: {count}\n" for name, count in sorted(DROPPED.items()))
    else:
        lines = "  none\n"
    sys.stderr.write(f"verifyd exclusions applied ({SURFACE}):\n{lines}")
    live = ", ".join(f"{name}: {count}" for name, count in sorted(LIVE.items())) or "none"
    sys.stderr.write(f"verifyd live values used ({SURFACE}): {live}\n")


def _http():
    http = requests.Session()
    http.auth = CREDENTIALS
    return http


def _coin(*parts):
    """Heads or tails from the generated values, so that a seed still replays the same run."""
    return zlib.crc32(repr(parts).encode()) % 2 == 0


# Real verifications for the calls that take a request id.
#
# Neither document links its start to the calls on a request (no `links`, and Schemathesis infers
# none from `request_id`), so a generated id is never one verifyd knows and those calls only ever
# answer "not found". Before half of those calls (chosen by a coin on the generated id), this
# starts a real verification to a number of its own and puts its id in the call; before half of
# those checks, the code from the inbox too. So the answers of a request in progress, completed,
# failed, cancelled or moved on are checked as well. A v2 verification has one channel or two (a
# coin again), so that moving on is refused (409) as well as done.

_NUMBERS = itertools.count(1)


def _start_live(two_channels=True):
    """A new verification to a number no other one uses: (request id, number)."""
    n = next(_NUMBERS)
    http = _http()
    if SURFACE == "v1":
        # 07700 1xxxxx: valid UK mobile numbers, outside the drama range libphonenumber refuses.
        number = f"4477001{n:05d}"
        answer = http.post(f"{ORIGIN}/verify/json", data={"number": number, "brand": "Schemathesis"}, timeout=10)
        return _started(answer), number
    number = f"4477000{n:05d}"
    workflow = [{"channel": "sms", "to": number}]
    if two_channels:
        workflow.append({"channel": "voice", "to": number})
    answer = http.post(f"{ORIGIN}/v2/verify", json={"brand": "Schemathesis", "workflow": workflow}, timeout=10)
    return _started(answer), number


def _started(answer):
    """The request id of a start that must have worked."""
    try:
        body = answer.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict) or not body.get("request_id") or body.get("status", "0") != "0":
        raise AssertionError(f"a live verification did not start: {answer.status_code} {answer.text}")
    return body["request_id"]


def _code_for(number):
    """The code of the newest inbox message to `number`."""
    messages = requests.get(f"{ORIGIN}/inbox/messages", params={"to": number}, timeout=10).json()
    runs = re.findall(r"[0-9]{4,}", messages[0]["text"]) if messages else []
    return max(runs, key=len) if runs else None


# A real template with a real fragment, for the calls that take their ids.
#
# As with request ids, nothing links the creation of a template or fragment to the calls on it, so
# generated ids only ever answer 404. The template is made when the document is loaded, before any
# generated call could fill the account's ten; half of the calls on a template or fragment (a coin)
# get its ids. A fragment or template that a generated DELETE removed is made again when next
# needed (when the account still has room for it).

_TEMPLATE = {}


def _live_template():
    """(template id, fragment id) of the live template, made again if deleted; None if impossible."""
    http = _http()
    base = f"{ORIGIN}/v2/verify/templates"
    template_id = _TEMPLATE.get("template_id")
    if template_id is None or http.get(f"{base}/{template_id}", timeout=10).status_code == 404:
        made = http.post(base, json={"name": f"schemathesis-live-{next(_NUMBERS)}"}, timeout=10)
        if made.status_code != 201:
            return None
        template_id = _TEMPLATE["template_id"] = made.json()["template_id"]
        _TEMPLATE.pop("fragment_id", None)
    fragments = f"{base}/{template_id}/template_fragments"
    fragment_id = _TEMPLATE.get("fragment_id")
    if fragment_id is None or http.get(f"{fragments}/{fragment_id}", timeout=10).status_code == 404:
        text = {"channel": "sms", "locale": "en-us", "text": "Your ${brand} code: ${code}"}
        made = http.post(fragments, json=text, timeout=10)
        if made.status_code != 201:
            return template_id, None
        fragment_id = _TEMPLATE["fragment_id"] = made.json()["template_fragment_id"]
    return template_id, fragment_id


def _live_v2(case, label):
    parameters = case.path_parameters
    if "{request_id}" in case.path:
        original = parameters.get("request_id")
        if not isinstance(original, str) or not _coin(label, original):
            return
        two = not (case.path.endswith("/next_workflow") and _coin("one channel", original))
        request_id, number = _start_live(two_channels=two)
        parameters["request_id"] = request_id
        LIVE[label] += 1
        if label == "POST /{request_id}" and isinstance(case.body, dict) and _coin("code", original):
            code = _code_for(number)
            if code is not None:
                case.body["code"] = code
                LIVE[label + " (right code)"] += 1
    elif "{template_id}" in case.path:
        original = parameters.get("template_id")
        if not isinstance(original, str) or not _coin(label, original):
            return
        live = _live_template()
        if live is None:
            return
        template_id, fragment_id = live
        parameters["template_id"] = template_id
        if "{template_fragment_id}" in case.path:
            if fragment_id is None:
                return
            parameters["template_fragment_id"] = fragment_id
        LIVE[label] += 1


def _live_v1(case, label):
    if case.path in ("/check/{format}", "/control/{format}"):
        if not isinstance(case.body, dict) or not isinstance(case.body.get("request_id"), str):
            return
        original = case.body["request_id"]
        if not _coin(label, original):
            return
        request_id, number = _start_live()
        case.body["request_id"] = request_id
        LIVE[label] += 1
        if case.path == "/check/{format}" and _coin("code", original):
            code = _code_for(number)
            if code is not None:
                case.body["code"] = code
                LIVE[label + " (right code)"] += 1
    elif case.path == "/search/{format}":
        query = case.query if isinstance(case.query, dict) else None
        if query is None or not isinstance(query.get("request_id"), str):
            return
        if not _coin(label, query["request_id"]):
            return
        query["request_id"], _ = _start_live()
        LIVE[label] += 1


@schemathesis.hook
def before_call(context, case, **kwargs):
    if not ORIGIN:
        return
    # Only calls with the operation's own method: the others are answered 405 whatever the id.
    if case.method.upper() != case.operation.method.upper():
        return
    label = f"{case.method.upper()} {case.path}"
    if SURFACE == "v2" and case.path == "/":
        LIVE["POST / at /v2/verify" if _sdk_url(case) else "POST / at /v2/verify/"] += 1
    if SURFACE == "v2":
        _live_v2(case, label)
    elif SURFACE == "v1":
        _live_v1(case, label)


def _sdk_url(case):
    """Whether this `POST /` goes to `/v2/verify` rather than the document's `/v2/verify/`."""
    return _coin("sdk url", repr(case.body))


@schemathesis.hook
def after_load_schema(context, schema):
    """v2: half of the `POST /` calls go to `/v2/verify`, the other half to `/v2/verify/`.

    The document's server is `https://api.nexmo.com/v2/verify` and the path of the start is `/`,
    so its literal URL is `/v2/verify/`; the official SDKs call `/v2/verify`, as docs/verify-v2.md
    and README do. Both are the document's operation, so both are checked: a coin on the
    generated body picks one (the same one each time the case is built, so a replay hits the same
    URL). Without `/v2/verify` the start's answers would only be checked at the URL no client uses.
    Also makes the live template (above) before any generated call can use up the account's ten.
    """
    if SURFACE != "v2":
        return
    if ORIGIN:
        _live_template()
    build = schema.build_request_url

    def build_request_url(case, base_url):
        url = build(case, base_url)
        if case.path == "/" and url.endswith("/v2/verify/") and _sdk_url(case):
            return url[:-1]
        return url

    schema.build_request_url = build_request_url


# v1 answers in XML, read as the document's `xml` hints describe them, so that the same schemas
# check them as check the JSON answers (Schemathesis reads no XML by itself and would skip them).
# The root must be the one the document names for the operation; `checks` and `events` are its
# wrapped arrays (`xml: wrapped: true`) of `check` and `event`. Several search results come as
# `<verification_requests><verify_request>…` (docs/compatibility.md, "XML"), read like the JSON
# form, `{"verification_requests": […]}`.

V1_XML_ROOTS = {
    "/{format}": "verify_response",
    "/check/{format}": "verify_response",
    "/search/{format}": "verify_request",
    "/control/{format}": "response",
}
V1_XML_ARRAYS = {"checks": "check", "events": "event"}


def _xml_object(element):
    body = {}
    for child in element:
        if child.tag in body:
            raise ValueError(f"<{element.tag}> has <{child.tag}> twice")
        if child.tag in V1_XML_ARRAYS:
            item = V1_XML_ARRAYS[child.tag]
            if any(grandchild.tag != item for grandchild in child):
                raise ValueError(f"<{child.tag}> holds something other than <{item}>")
            body[child.tag] = [_xml_object(grandchild) for grandchild in child]
        elif len(child):
            raise ValueError(f"<{child.tag}> has elements inside, and the document names none")
        else:
            body[child.tag] = child.text or ""
    return body


def _v1_xml(response, path):
    import xml.etree.ElementTree as ElementTree

    root = ElementTree.fromstring(response.content)
    expected = V1_XML_ROOTS.get(path)
    if path == "/search/{format}" and root.tag == "verification_requests":
        return {"verification_requests": [_xml_object(request) for request in root]}
    if expected is not None and root.tag != expected:
        raise ValueError(f"the root element is <{root.tag}>; the document names <{expected}>")
    return _xml_object(root)


@schemathesis.deserializer("text/xml", "application/xml")
def deserialize_xml(context, response):
    return _v1_xml(response, context.operation.path)


def _decoded(response, path):
    """The answer's body as the schemas see it (JSON, or v1 XML read as above); None if neither."""
    try:
        if "xml" in _header(response, "content-type"):
            return _v1_xml(response, path)
        return response.json()
    except Exception:
        return None


def _header(response, name):
    for key, values in response.headers.items():
        if key.lower() == name:
            return values[0] if values else ""
    return ""


def _problem(response, type_suffix):
    """Whether the answer is RFC 7807 JSON with the document's four members and a `type` of
    Vonage's that ends in `type_suffix` (`#conflict`)."""
    if not _header(response, "content-type").startswith("application/problem+json"):
        return None
    try:
        body = response.json()
    except Exception:
        return None
    if not isinstance(body, dict):
        return None
    if not all(isinstance(body.get(k), str) for k in ("type", "title", "detail", "instance")):
        return None
    if not body["type"].endswith(type_suffix):
        return None
    return body


# Rules. Each takes (failure, case, response) and says whether that failure is excused.


def _one_of_overlaps(failure, case, response):
    """v1 and v2: "valid under more than one of the schemas listed in the 'oneOf' keyword".

    Both documents give answers as `oneOf` of schemas that no answer can tell apart: no branch has
    `additionalProperties: false`, and the branches' required properties are the same (v2's
    ErrorResponse409NextWorkflow: ErrorConflict and ErrorConflictTriggerNext both require `type`,
    `title`, `detail` and `instance`) or there are none (every v1 answer is `oneOf: [xResponse,
    xErrorResponse]` with no required property at all). So any answer valid under one branch is
    valid under both, and the documents' own examples fail their `oneOf` (verify-v1.yml, `POST
    /{format}`, example `invalid-param`: `{status: "3", error_text: "Invalid value for number"}`
    matches `requestResponse` and `requestErrorResponse`). Such an answer is valid under at least
    one branch, which is what the documents mean; an answer valid under none still fails.
    """
    return (
        isinstance(failure, JsonSchemaError)
        and "is valid under more than one of the schemas" in failure.validation_message
    )


def _v1_format_not_served(failure, case, response):
    """v1: 404 for a `{format}` other than `json` and `xml` (a negative case of the path).

    The document's `format` parameter is the enum `json`/`xml`; any other segment is a URL for
    which the document has no operation, and 404 is HTTP's answer for that.
    """
    return (
        isinstance(failure, UndefinedStatusCode)
        and response.status_code == 404
        and case.path_parameters.get("format") not in ("json", "xml")
    )


def _v1_psd2_xml(failure, case, response):
    """v1: `/psd2/xml` answers 404.

    The document says of PSD2 "XML format is not supported for the Payment Services Directive
    endpoint at this time" but lists `xml` in the `format` enum of that path and only a 200 JSON
    answer; docs/compatibility.md: "| PSD2 XML | 404 | "XML format is not supported for the PSD2
    endpoint" |".
    """
    return (
        isinstance(failure, UndefinedStatusCode)
        and response.status_code == 404
        and case.path.startswith("/psd2/")
        and case.path_parameters.get("format") == "xml"
    )


V1_GENERIC_STATUSES = {"1", "2", "3", "4", "5"}


def _v1_search_generic_status(failure, case, response):
    """v1: search answers the generic statuses 1-5, which the document's enum leaves out.

    `searchErrorResponse.status` lists only IN PROGRESS, FAILED, EXPIRED, CANCELLED and 101, yet the
    document's own examples for search are `throttled` (status 1), `missing-param` (2),
    `invalid-param` (3), `invalid-creds` (4) and `internal-error` (5). Only an answer of exactly
    that shape is accepted: `status` one of 1-5 and no member but string `request_id`, `status`
    and `error_text`.
    """
    if not (isinstance(failure, JsonSchemaError) and case.path.startswith("/search/")):
        return False
    body = _decoded(response, case.path)
    return (
        isinstance(body, dict)
        and body.get("status") in V1_GENERIC_STATUSES
        and set(body) <= {"request_id", "status", "error_text"}
        and all(isinstance(v, str) for v in body.values())
    )


def _v1_search_too_many_ids(failure, case, response):
    """v1: search with more than 10 `request_ids` answers status 18.

    The document caps `request_ids` at `maxItems: 10` and names no status for more; verifyd
    answers Vonage's status for it from the earlier versions of this document (1.1 and before),
    as ../shared/docs/vonage-verify-v1.md notes ("18 | Too many request_ids provided | search > 10
    ids (older spec)"). Only that exact answer to more than 10 ids is accepted.
    """
    if not (isinstance(failure, JsonSchemaError) and case.path.startswith("/search/")):
        return False
    ids = (case.query or {}).get("request_ids")
    if not isinstance(ids, list) or len(ids) <= 10:
        return False
    expected = {"request_id": "", "status": "18", "error_text": "Too many request_ids provided"}
    return _decoded(response, case.path) == expected


def _v2_check_body_malformed(failure, case, response):
    """v2: `POST /{request_id}` answers 422 `invalid-params` to a body that is not a check.

    The document lists no answer for a body outside CheckCodeRequest (not JSON, not an object, no
    string `code` of 4-10 characters, no `token`); its answer to parameters it cannot take is 422
    `invalid-params` (ErrorResponse422, on the start and the template calls), and verifyd answers
    exactly that (docs/verify-v2.md: "A 422 adds `invalid_parameters`"). Only such an answer, with
    `invalid_parameters`, is accepted, and only to such a body: a code the document allows is not
    excused here.
    """
    if not (
        isinstance(failure, UndefinedStatusCode)
        and response.status_code == 422
        and case.method.upper() == "POST"
        and case.path == "/{request_id}"
    ):
        return False
    problem = _problem(response, "#invalid-params")
    if problem is None or not isinstance(problem.get("invalid_parameters"), list):
        return False
    body = case.body
    if not isinstance(body, dict):
        return True
    if "token" in body:
        return False
    code = body.get("code")
    return not (isinstance(code, str) and 4 <= len(code) <= 10)


def _v2_cancel_refused(failure, case, response):
    """v2: `DELETE /{request_id}` answers 409 `conflict` when the request may not be cancelled.

    The document says "Cancellation is only possible 30 seconds after the start of the
    verification request and before the second event (either TTS or SMS) has taken place" but
    lists no answer for a cancel outside that time (204, 401, 402, 404, 500 only). verifyd answers
    409 `conflict` (docs/verify-v2.md, `DELETE /v2/verify/{request_id}`), the document's answer to
    a call its state refuses elsewhere (ErrorConflict). Only that problem is accepted.
    """
    return (
        isinstance(failure, UndefinedStatusCode)
        and response.status_code == 409
        and case.method.upper() == "DELETE"
        and case.path == "/{request_id}"
        and _problem(response, "verify-v2#conflict") is not None
    )


def _v2_silent_auth_not_offered(failure, case, response):
    """v2: `GET /{request_id}/silent-auth/redirect` answers 404 with no body.

    verifyd offers no Silent Authentication (docs/verify-v2.md, "Not yet"): it never hands out a
    `check_url`, and the redirect path is not served at all, so every request id gets HTTP's own
    404. Only a 404 is excused; anything else on that path (a 5xx above all) still fails.
    """
    return case.path == "/{request_id}/silent-auth/redirect" and response.status_code == 404


RULES = {
    "v1": [
        _v1_format_not_served,
        _v1_psd2_xml,
        _one_of_overlaps,
        _v1_search_generic_status,
        _v1_search_too_many_ids,
    ],
    "v2": [
        _one_of_overlaps,
        _v2_check_body_malformed,
        _v2_cancel_refused,
        _v2_silent_auth_not_offered,
    ],
}


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if isinstance(failure, ServerError) or response.status_code >= 500:
        return True
    for rule in RULES.get(SURFACE, []):
        if rule(failure, case, response):
            DROPPED[rule.__name__.lstrip("_")] += 1
            return False
    return True
