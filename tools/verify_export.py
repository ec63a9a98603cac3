#!/usr/bin/env python3
"""Verify an export of the AISC event log on its own, with the Python standard library only.

    python3 tools/verify_export.py history.ndjson

An independent implementation of docs/AUDIT-FORMAT.md, written from the document rather than
from the Rust code: it recomputes every record's content digest and chain hash and prints the
same verdict as `aisc audit verify --file`:

    OK: <n> records of <s> streams verified, every hash chain intact[; streams starting ...]
    BROKEN: line <l> (position <p>, stream <s>, version <v>, event <id>): <what>; <n> records verified before it

Exit codes: 0 intact, 1 evidence of tampering, 2 bad arguments, 4 the file cannot be read or
is not an export with hashes.
"""

import datetime
import hashlib
import json
import re
import sys

EXIT_INTACT = 0
EXIT_TAMPERED = 1
EXIT_BAD_ARGUMENTS = 2
EXIT_FILE_UNUSABLE = 4

FORMAT_TAG = b"aisc-event/1"
I64_MAX = 2**63 - 1
U32_MAX = 2**32 - 1
# What a 64-bit JSON reader (serde_json) keeps as an integer; anything else is a float to it.
INTEGER_MIN = -(2**63)
INTEGER_MAX = 2**64 - 1
# serde_json refuses more than 127 nested arrays and objects; so does this verifier.
MAX_NESTING = 127

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
HASH_RE = re.compile(r"[0-9a-f]{64}\Z")
CREATED_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{6})Z\Z")
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class NotAnInteger:
    """A JSON number the format does not hold as an integer (fractional, -0, beyond 64 bits)."""

    def __init__(self, text):
        self.text = text


class Malformed(Exception):
    """The line is not a record of the format."""


class Broken(Exception):
    """The record does not verify."""

    def __init__(self, message, placed=True):
        super().__init__(message)
        self.message = message
        self.placed = placed


class Unusable(Exception):
    """The file cannot be verified at all."""


def parse_int(text):
    value = int(text)
    if text == "-0" or not INTEGER_MIN <= value <= INTEGER_MAX:
        check_finite(text)
        return NotAnInteger(text)
    return value


def parse_float(text):
    check_finite(text)
    return NotAnInteger(text)


def check_finite(text):
    # serde_json refuses numbers out of the range of a double; Python would make them inf.
    if float(text) in (float("inf"), float("-inf")):
        raise ValueError("number out of range")


def refuse_constant(name):
    raise ValueError("not JSON: " + name)


def parse_json_object(line):
    """The line as a dict, or Malformed with the format's wording."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("malformed record: not UTF-8")
    try:
        value = json.loads(text, parse_int=parse_int, parse_float=parse_float, parse_constant=refuse_constant)
    except (ValueError, RecursionError):
        raise Malformed("malformed record: not a JSON object")
    if not isinstance(value, dict) or not well_formed(value, 1):
        raise Malformed("malformed record: not a JSON object")
    return value


def well_formed(value, depth):
    """No lone surrogate (which JSON escapes can spell but UTF-8 cannot hold), bounded nesting."""
    if isinstance(value, str):
        return not any(0xD800 <= ord(char) <= 0xDFFF for char in value)
    if isinstance(value, (list, dict)):
        if depth > MAX_NESTING:
            return False
        items = value.items() if isinstance(value, dict) else enumerate(value)
        return all((isinstance(key, int) or well_formed(key, depth)) and well_formed(item, depth + 1)
                   for key, item in items)
    return True


def is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def read_record(obj):
    """The record's fields, in the documented order; Broken naming the first bad one."""

    def bad(field, expected):
        return Broken("malformed record: %s is missing or not %s" % (field, expected), placed=False)

    def text(field, check=None, expected="a string"):
        value = obj.get(field)
        if not isinstance(value, str) or (check is not None and not check(value)):
            raise bad(field, expected)
        return value

    def count(field, maximum, expected):
        value = obj.get(field)
        if not is_integer(value) or not 0 <= value <= maximum:
            raise bad(field, expected)
        return value

    record = {}
    record["eventId"] = text("eventId", lambda v: UUID_RE.match(v), "a hyphenated lower-case UUID")
    record["eventType"] = text("eventType")
    record["streamId"] = text("streamId")
    record["eventNumber"] = count("eventNumber", I64_MAX, "an integer from 0 to 2^63-1")
    record["position"] = count("position", I64_MAX, "an integer from 0 to 2^63-1")
    record["schemaVersion"] = count("schemaVersion", U32_MAX, "an integer from 0 to 2^32-1")
    micros = created_micros(obj.get("created"))
    if micros is None:
        raise bad("created", "a UTC time like 2025-07-01T02:03:04.000005Z")
    record["micros"] = micros
    for field in ("data", "metadata"):
        if field not in obj:
            raise bad(field, "present")
        record[field] = obj[field]
    record["hash"] = text("hash", lambda v: HASH_RE.match(v), "64 lower-case hex digits")
    record["previousHash"] = text("previousHash", lambda v: v == "" or HASH_RE.match(v),
                                  "empty or 64 lower-case hex digits")
    return record


def created_micros(value):
    """Microseconds since the Unix epoch of YYYY-MM-DDTHH:MM:SS.ffffffZ, or None."""
    if not isinstance(value, str):
        return None
    match = CREATED_RE.match(value)
    if not match:
        return None
    year, month, day, hour, minute, second, micro = (int(part) for part in match.groups())
    try:
        moment = datetime.datetime(year, month, day, hour, minute, second, micro, tzinfo=datetime.timezone.utc)
    except ValueError:
        return None
    return (moment - EPOCH) // datetime.timedelta(microseconds=1)


def holds_only_integers(value):
    if isinstance(value, NotAnInteger):
        return False
    if isinstance(value, list):
        return all(holds_only_integers(item) for item in value)
    if isinstance(value, dict):
        return all(holds_only_integers(item) for item in value.values())
    return True


def canonical_json(value):
    """Keys sorted by UTF-8 bytes, no whitespace, integers in decimal, strings escaped as JSON
    requires (quote, backslash, control characters; \\b \\t \\n \\f \\r short, others \\u00xx)."""
    if value is None:
        return b"null"
    if value is True:
        return b"true"
    if value is False:
        return b"false"
    if is_integer(value):
        return str(value).encode("ascii")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).encode("utf-8")
    if isinstance(value, list):
        return b"[" + b",".join(canonical_json(item) for item in value) + b"]"
    if isinstance(value, dict):
        entries = sorted(value.items(), key=lambda entry: entry[0].encode("utf-8"))
        return b"{" + b",".join(canonical_json(key) + b":" + canonical_json(item) for key, item in entries) + b"}"
    raise TypeError("no canonical form for %r" % (value,))


def content_digest(record):
    digest = hashlib.sha256()
    for field in (
        FORMAT_TAG,
        record["streamId"].encode("utf-8"),
        record["eventId"].encode("ascii"),
        record["eventType"].encode("utf-8"),
        str(record["schemaVersion"]).encode("ascii"),
        str(record["micros"]).encode("ascii"),
        canonical_json(record["data"]),
        canonical_json(record["metadata"]),
    ):
        digest.update(len(field).to_bytes(8, "big"))
        digest.update(field)
    return digest.digest()


def chain_hash(previous_hash_hex, digest, version, position):
    chained = hashlib.sha256()
    chained.update(bytes.fromhex(previous_hash_hex))
    chained.update(digest)
    chained.update(version.to_bytes(8, "big"))
    chained.update(position.to_bytes(8, "big"))
    return chained.hexdigest()


def check_looks_like_an_export(line, line_number, path):
    try:
        obj = parse_json_object(line)
    except Malformed:
        obj = None
    if obj is None or "eventId" not in obj or "streamId" not in obj:
        raise Unusable("%s is not an export of the event log: line %d is not a JSON record with eventId, streamId, "
                       "hash and previousHash" % (path, line_number))
    if "hash" not in obj and "previousHash" not in obj:
        raise Unusable("%s is an export without hashes (line %d has no hash and previousHash), made before exports "
                       "carried them; export the history again" % (path, line_number))
    if "hash" not in obj or "previousHash" not in obj:
        raise Unusable("%s is not an export of the event log: line %d is not a JSON record with eventId, streamId, "
                       "hash and previousHash" % (path, line_number))


class Verification:
    def __init__(self):
        self.records_seen = 0
        self.verified = 0
        self.heads = {}  # stream -> (version, hash, line)
        self.streams_starting_later = 0
        self.last = None  # (position, line)

    def check(self, line, line_number):
        try:
            record = read_record(parse_json_object(line))
        except Malformed as malformed:
            raise Broken(str(malformed), placed=False)
        version, position = record["eventNumber"], record["position"]
        head = self.heads.get(record["streamId"])
        if head is not None:
            head_version, head_hash, head_line = head
            if version == head_version:
                raise Broken("duplicate: version %d of the stream is already at line %d" % (version, head_line))
            if version < head_version:
                raise Broken("out of order: version %d comes after version %d of the stream at line %d"
                             % (version, head_version, head_line))
        if self.last is not None:
            last_position, last_line = self.last
            if position == last_position:
                raise Broken("duplicate: position %d is already at line %d" % (position, last_line))
            if position < last_position:
                raise Broken("out of order: position %d comes after position %d at line %d"
                             % (position, last_position, last_line))
        if head is not None:
            if version > head_version + 1:
                raise Broken("version gap: expected version %d after line %d, found %d; a record is missing"
                             % (head_version + 1, head_line, version))
            if record["previousHash"] != head_hash:
                raise Broken("chain break: previousHash is not the hash of version %d at line %d"
                             % (head_version, head_line))
        elif version == 0 and record["previousHash"] != "":
            raise Broken("chain break: version 0 must have an empty previousHash")
        elif version > 0 and record["previousHash"] == "":
            raise Broken("chain break: version %d has an empty previousHash" % version)
        if not holds_only_integers(record["data"]) or not holds_only_integers(record["metadata"]):
            raise Broken("content digest mismatch: data or metadata holds a number that is not a 64-bit integer, "
                         "which the log never stores")
        if chain_hash(record["previousHash"], content_digest(record), version, position) != record["hash"]:
            raise Broken("content digest mismatch: the record's fields and previousHash do not give its hash")
        if head is None and version > 0:
            self.streams_starting_later += 1
        self.last = (position, line_number)
        self.heads[record["streamId"]] = (version, record["hash"], line_number)
        self.verified += 1
        return record


def place_of(line):
    """Where a record that failed claims to belong (it parsed, so this cannot fail)."""
    record = read_record(parse_json_object(line))
    return "position %d, stream %s, version %d, event %s" % (
        record["position"], record["streamId"], record["eventNumber"], record["eventId"])


def verify(path):
    """The verdict line and exit code; Unusable when there is no verdict."""
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise Unusable("cannot read %s: %s" % (path, error.strerror or error))
    verification = Verification()
    with handle:
        line_number = 0
        while True:
            try:
                raw = handle.readline()
            except OSError as error:
                raise Unusable("cannot read %s: %s" % (path, error.strerror or error))
            if not raw:
                break
            line_number += 1
            line = raw[:-1] if raw.endswith(b"\n") else raw
            if all(byte in b" \t\r" for byte in line):
                continue
            if verification.records_seen == 0:
                check_looks_like_an_export(line, line_number, path)
            verification.records_seen += 1
            try:
                verification.check(line, line_number)
            except Broken as broken:
                where = "line %d" % line_number
                if broken.placed:
                    where += " (%s)" % place_of(line)
                return ("BROKEN: %s: %s; %s verified before it"
                        % (where, broken.message, counted(verification.verified, "record")), EXIT_TAMPERED)
    if verification.records_seen == 0:
        raise Unusable("%s holds no records: an export of an empty range proves nothing, and an empty file may be "
                       "a failed export" % path)
    verdict = "OK: %s of %s verified, every hash chain intact" % (
        counted(verification.verified, "record"), counted(len(verification.heads), "stream"))
    if verification.streams_starting_later:
        verdict += "; streams starting after version 0 (anchored on their first record's previousHash): %d" % (
            verification.streams_starting_later)
    return verdict, EXIT_INTACT


def counted(count, noun):
    """1 record, 2 records."""
    return "1 %s" % noun if count == 1 else "%d %ss" % (count, noun)


def main(arguments):
    if len(arguments) != 1 or arguments[0].startswith("-"):
        sys.stderr.write("usage: verify_export.py EXPORT.ndjson\n")
        return EXIT_BAD_ARGUMENTS
    try:
        verdict, code = verify(arguments[0])
    except Unusable as unusable:
        sys.stderr.write("error: %s\n" % unusable)
        return EXIT_FILE_UNUSABLE
    print(verdict)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
