"""Schemathesis hooks for tests/conformance_schemathesis.rs (see schemathesis.toml).

Checks of our own:

* `twilio_error_body`: every 4xx and 5xx answer is Twilio's error JSON (`code`, `message`,
  `more_info`, `status` equal to the HTTP status) with a JSON content type. Twilio's file
  documents no error answers, so Schemathesis' own checks never look at them.
* `maskd_deviations`: where maskd deliberately answers another status than Twilio's file
  (README, "Decisions where Twilio is silent"), the answer is still checked against the
  documented one it stands for. Nothing else is excused: every other answer goes through
  Schemathesis' own checks unchanged.
* `every_operation_reached_2xx`: fails the run if an operation never answered 2xx, so the
  schema checks cannot pass by only ever seeing errors.
* `negative_form_refused`: Schemathesis' `negative_data_rejection` (a request the file calls
  invalid gets a 4xx) for requests whose form body is the only invalid part: a form value
  is what maskd stores and echoes. Query strings and headers are left out, since maskd
  ignores parameters it does not know, as Twilio does. Excused: a body that is valid as
  maskd reads it, the empty values it reads as absent (or, for the callback URLs and
  ChatInstanceSid, as "clear it") dropped, and a lone value where the file declares an
  array of strings read as a one-item array of its text (form encoding cannot tell them
  apart).

What the run sends, shaped where the generator would otherwise never get past one refusal:

* `UniqueName` gets a numbered suffix in Service and Session writes: the generated names
  repeat (the file's examples above all), and a repeated name is refused (80602, 80603)
  before anything else in the request is looked at, which would hide the rest.
* Every other generated PhoneNumbers create without a `PhoneNumber` gets a fresh valid one: maskd has no
  IncomingPhoneNumbers to look a `Sid` up in, so only `PhoneNumber` can add a number, and
  the generator seldom sends one that parses.

Two corrections of the file as loaded:

* Its two resource-status enums are made nullable. An Interaction leg that does not exist
  (the inbound leg of every MessageInteraction) has a null status in Twilio's own examples
  (`inbound_resource_status: null`), which the enum as written (no `nullable`, which OpenAPI
  3.0 would ignore beside a `$ref` anyway) forbids.
* A `format` marked `x-twilio: {ignoreFormat: true}` (MessageInteraction `MediaUrl` items)
  is dropped, as Twilio's own annotation says.
* The 2010-04-01 list envelope's `uri`, `first_page_uri`, `next_page_uri` and
  `previous_page_uri` are `uri-reference`, not `uri`: the file's own examples are relative
  (`/2010-04-01/Accounts/AC…/Recordings.json?PageSize=50&Page=0`), as Twilio answers, and
  twilio-python pages by appending them to its base URL, so an absolute one would break it.
"""

import itertools
import json

import jsonschema_rs
import schemathesis
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import content_type_conformance, negative_data_rejection

# The deliberate deviations, (operationId, status maskd answers) -> the documented status
# whose answer it stands for.
DEVIATIONS = {
    # Twilio's file says 200 since 2024-06 (generator drift); every other create is 201, as
    # this one was before. The body is checked against the documented 200 answer.
    ("CreateMessageInteraction", 201): 200,
    # Twilio's file says 200 since 2024-05 and documents no body; maskd answers 204 like
    # every other delete. Only an empty body is accepted.
    ("DeleteParticipant", 204): 200,
}


# Enum components whose value is null when the leg they describe does not exist.
NULLABLE_ENUMS = (
    "interaction_enum_resource_status",
    "message_interaction_enum_resource_status",
)


# Form fields maskd reads as absent, or as "clear it", when they are empty.
EMPTY_IS_ABSENT = {
    "CallbackUrl",
    "InterceptCallbackUrl",
    "OutOfSessionCallbackUrl",
    "ChatInstanceSid",
    "ProxyIdentifier",
    "ProxyIdentifierSid",
    "Sid",
}


def drop_ignored_formats(node):
    if isinstance(node, dict):
        if node.get("x-twilio", {}).get("ignoreFormat"):
            node.pop("format", None)
        for value in node.values():
            drop_ignored_formats(value)
    elif isinstance(node, list):
        for value in node:
            drop_ignored_formats(value)


@schemathesis.hook
def before_load_schema(context, raw_schema):
    schemas = raw_schema["components"]["schemas"]
    for name in NULLABLE_ENUMS:
        if name not in schemas:  # the 2010-04-01 Recordings file has neither
            continue
        schemas[name]["nullable"] = True
        schemas[name]["enum"] = [*schemas[name]["enum"], None]
    drop_ignored_formats(raw_schema["paths"])
    relative_page_uris(raw_schema["paths"])


PAGE_URIS = {"uri", "first_page_uri", "next_page_uri", "previous_page_uri"}


def relative_page_uris(node):
    """A 2010-04-01 list envelope's page URIs are relative, as the file's examples are."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict) and "first_page_uri" in props:
            for name in PAGE_URIS & props.keys():
                if props[name].get("format") == "uri":
                    props[name]["format"] = "uri-reference"
        for value in node.values():
            relative_page_uris(value)
    elif isinstance(node, list):
        for value in node:
            relative_page_uris(value)


UNIQUE_NAMES = {"CreateService", "UpdateService", "CreateSession"}
_names = itertools.count(1)
_numbers = itertools.count(0)


@schemathesis.hook
def map_case(context, case):
    body = case.body
    if not isinstance(body, dict):
        return case
    op = operation_id(case)
    if op in UNIQUE_NAMES and isinstance(body.get("UniqueName"), str):
        body = {**body, "UniqueName": f"{body['UniqueName']}-{next(_names)}"}
    if op == "CreatePhoneNumber" and "PhoneNumber" not in body:
        n = next(_numbers)
        if n % 2 == 0:
            body = {**body, "PhoneNumber": f"+1415555{3000 + n // 2:04}"}
    case.body = body
    return case


def operation_id(case):
    return case.operation.definition.raw.get("operationId", case.operation.label)


@schemathesis.check
def maskd_deviations(ctx, response, case):
    """A deviation's answer conforms to the documented answer it stands for."""
    documented = DEVIATIONS.get((operation_id(case), response.status_code))
    if documented is None:
        return None
    if response.status_code == 204:
        assert not response.content, f"204 with a body: {response.content[:200]!r}"
        return None
    as_documented = Response(
        status_code=documented,
        headers=response.headers,
        content=response.content,
        request=response.request,
        elapsed=response.elapsed,
        verify=response.verify,
        message=response.message,
        http_version=response.http_version,
        encoding=response.encoding,
    )
    content_type_conformance(ctx, as_documented, case)
    case.operation.validate_response(as_documented, case=case)
    return None


def form_schema(case):
    raw = case.operation.definition.raw
    return raw["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]


def as_maskd_reads(case, body):
    arrays = {
        name
        for name, prop in form_schema(case).get("properties", {}).items()
        if prop.get("type") == "array" and prop.get("items", {}).get("type") == "string"
    }
    scalar = (str, int, float, bool)
    return {
        k: [str(v)] if k in arrays and isinstance(v, scalar) else v
        for k, v in body.items()
        if not (k in EMPTY_IS_ABSENT and v in ("", None))
    }


def valid_form(case, body):
    """Whether `body` is valid against the operation's form schema in Twilio's file."""
    root = {**form_schema(case), "components": case.operation.schema.raw_schema["components"]}
    return jsonschema_rs.Draft4Validator(root).is_valid(body)


@schemathesis.check
def negative_form_refused(ctx, response, case):
    """A form body the file calls invalid gets a 4xx, unless maskd reads it as valid."""
    meta = case.meta
    if meta is None or not meta.is_negative_at(ParameterLocation.BODY):
        return None
    if any(meta.is_negative_at(loc) for loc in ParameterLocation if loc != ParameterLocation.BODY):
        return None
    if isinstance(case.body, dict) and valid_form(case, as_maskd_reads(case, case.body)):
        return None
    return negative_data_rejection(ctx, response, case)


@schemathesis.check
def twilio_error_body(ctx, response, case):
    """An error answer is Twilio's error JSON."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), (
        f"{response.status_code} with Content-Type {content_type!r}: {response.content[:200]!r}"
    )
    body = json.loads(response.content)
    assert isinstance(body, dict), f"error body is not an object: {body!r}"
    assert sorted(body) == ["code", "message", "more_info", "status"], f"error keys: {sorted(body)}"
    assert body["status"] == response.status_code, f"status {body['status']} in a {response.status_code}"
    assert isinstance(body["code"], int) and isinstance(body["message"], str) and body["message"]
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{body['code']}", body["more_info"]
    return None


@schemathesis.check
class every_operation_reached_2xx:
    """Every operation that was tested answered 2xx at least once."""

    def __init__(self):
        self.tested = set()
        self.reached = set()

    def after_response(self, ctx, response, case):
        op = operation_id(case)
        self.tested.add(op)
        if 200 <= response.status_code < 300:
            self.reached.add(op)

    def after_run(self, ctx):
        never = sorted(self.tested - self.reached)
        assert not never, "never answered 2xx: " + ", ".join(never)
