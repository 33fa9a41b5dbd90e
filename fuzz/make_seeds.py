#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

Seeds are small, meaningful inputs: envelopes and requests from shared/spec, the spec's token, and a
few edge cases. The structured targets (`http_envelope`, the issued-token mode of `token`) decode
their input with the `arbitrary` crate (1.x); `Arb` below lays bytes out the way it reads them:
integers and booleans from the front, byte-string lengths from the end. Check a seed with
`cargo +nightly fuzz fmt <target> <file>`.

Run from anywhere: python3 fuzz/make_seeds.py
"""

import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

SPEC_TOKEN = (
    "kauth-eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJfaWQiOiJrdWlkLWFkbWluIiwiaWF0IjoxNzk1NzgyMDAwLCJleHAiOjE3OTU3ODU2MDB9."
    "TzSoH-pg3IV-pZfKI2QnlukkIr7L5g_4ef-iQvC1-z8"
)
SPEC_PROFILE_BODY = (
    '{"rateLimit":20,"policies":[{"roleId":"editor","restrictedTo":'
    '[{"index":"nyc","collections":["taxi","bus"]}]}]}'
)


class Arb:
    """Builds an input for `arbitrary::Unstructured` field by field."""

    def __init__(self):
        self.fields = []

    def u8(self, v):
        self.fields.append(("front", bytes([v])))
        return self

    def u16(self, v):
        self.fields.append(("front", struct.pack("<H", v)))
        return self

    def u32(self, v):
        self.fields.append(("front", struct.pack("<I", v)))
        return self

    def u64(self, v):
        self.fields.append(("front", struct.pack("<Q", v)))
        return self

    def boolean(self, v):
        return self.u8(1 if v else 0)

    def string(self, s):
        """A `String` or `&[u8]` that is not the last field."""
        self.fields.append(("sized", s.encode() if isinstance(s, str) else s))
        return self

    def option(self, s):
        self.boolean(s is not None)
        if s is not None:
            self.string(s)
        return self

    def option_u64(self, v):
        self.boolean(v is not None)
        if v is not None:
            self.u64(v)
        return self

    def variant(self, index, count):
        """An enum variant: the derive maps a u32 `x` to `(x * count) >> 32`."""
        return self.u32(((index << 32) + count - 1) // count)

    def rest(self, b):
        """The last field, taken whole (`&[u8]`, or `String`)."""
        self.fields.append(("rest", b.encode() if isinstance(b, str) else b))
        return self

    def build(self):
        sized = [f for f in self.fields if f[0] == "sized"]
        widths = [1] * len(sized)
        while True:
            front_len = sum(len(b) for _, b in self.fields)
            remaining = front_len + sum(widths)
            new_widths = []
            for kind, b in self.fields:
                if kind == "sized":
                    w = 1 if remaining <= 256 else 2 if remaining <= 65538 else 4
                    new_widths.append(w)
                    remaining -= w
                remaining -= len(b)
            if new_widths == widths:
                break
            widths = new_widths
        front = b""
        tail = []
        remaining = sum(len(b) for _, b in self.fields) + sum(widths)
        i = 0
        for kind, b in self.fields:
            if kind == "sized":
                w = widths[i]
                i += 1
                max_size = remaining - w
                assert len(b) <= max_size
                if w == 1 or max_size < 256:
                    chunk = bytes([len(b)]) + b"\0" * (w - 1)
                else:
                    chunk = len(b).to_bytes(w, "big")
                tail.append(chunk)
                remaining -= w
            front += b
            remaining -= len(b)
        return front + b"".join(reversed(tail))


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def ws_seeds():
    t = "ws_envelope"
    write(t, "server-now", '{"controller":"server","action":"now","requestId":"r1"}')
    write(t, "heartbeat", '{"p":1}')
    write(
        t,
        "update-profile-spec",
        '{"controller":"security","action":"updateProfile","_id":"editors","body":'
        + SPEC_PROFILE_BODY
        + ',"refresh":"wait_for","retryOnConflict":3,"requestId":"req-42","jwt":"'
        + SPEC_TOKEN
        + '"}',
    )
    write(t, "index-create-bad-name", '{"controller":"index","action":"create","index":"Nyc","requestId":"r2"}')
    write(
        t,
        "login",
        '{"controller":"auth","action":"login","strategy":"local","expiresIn":"1h",'
        '"body":{"username":"admin","password":"change-me-now"},'
        '"volatile":{"sdkName":"js@7.17.1"}}',
    )
    write(
        t,
        "collection-list",
        '{"controller":"collection","action":"list","index":"nyc","collection":null,'
        '"from":0,"size":10,"type":"all","requestId":""}',
    )
    write(t, "mget-profiles", '{"controller":"security","action":"mGetProfiles","body":{"ids":["a","b"]},"ids":["a",1]}')
    write(t, "bad-jwt-type", '{"controller":"server","action":"now","jwt":42,"requestId":"r9"}')
    write(t, "not-an-object", '[{"controller":"server"}]')
    write(t, "big-numbers", '{"controller":"security","action":"searchUsers","from":1e3,"size":18446744073709551616,"_id":"\\u00e9\\ud83d\\ude00"}')


def http_input(verb, path, query=None, content_type=None, encoding=None, auth=None,
               volatile=None, request_id=None, layers=0, body=b""):
    verbs = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"]
    return (
        Arb()
        .u8(verbs.index(verb))
        .string(path)
        .option(query)
        .option(content_type)
        .option(encoding)
        .option(auth)
        .option(volatile)
        .option(request_id)
        .u8(layers)
        .rest(body)
        .build()
    )


def http_seeds():
    t = "http_envelope"
    json_ct = "application/json"
    write(
        t,
        "update-profile-spec",
        http_input(
            "PUT", "/profiles/editors/_update", "refresh=wait_for&retryOnConflict=3", json_ct,
            auth="Bearer " + SPEC_TOKEN, request_id="req-42", body=SPEC_PROFILE_BODY,
        ),
    )
    write(t, "now", http_input("GET", "/_now"))
    write(t, "query", http_input("POST", "/_query", "jwt=abc", json_ct,
                                 body='{"controller":"server","action":"now","requestId":"ignored"}'))
    write(
        t,
        "create-first-admin",
        http_input(
            "POST", "/_createFirstAdmin/admin", "reset", json_ct,
            body='{"content":{"name":"Admin"},"credentials":{"local":{"username":"admin","password":"change-me-now"}}}',
        ),
    )
    write(
        t,
        "login-form",
        http_input("POST", "/_login/local", "expiresIn=1h", "application/x-www-form-urlencoded; charset=UTF-8",
                   body="username=admin&password=change+me%21"),
    )
    write(
        t,
        "check-token-gzip",
        http_input("POST", "/_checkToken", None, json_ct, layers=0xC1,
                   body='{"token":"' + SPEC_TOKEN + '"}'),
    )
    write(
        t,
        "collection-create-deflate-gzip",
        http_input("PUT", "/nyc/taxi", "refresh=wait_for", json_ct, layers=0xC0 | 1 | (2 << 2),
                   volatile='{"sdkName":"js@7.17.1"}', body='{"mappings":{}}'),
    )
    write(t, "index-exists", http_input("GET", "/nyc/_exists", "pretty", auth="bearer  tok "))
    write(t, "bad-escape", http_input("GET", "/profiles/%zz", None, "text/plain"))
    write(
        t,
        "unsupported-encoding",
        http_input("POST", "/roles/_search", "from=0&size=10&from=1", json_ct, encoding="br, gzip",
                   body='{"query":{}}'),
    )
    write(
        t,
        "rights-encoded-id",
        http_input("GET", "/profiles/a%2Fb%20c/_rights", "_id=ignored&index=x&index", None,
                   volatile="null", request_id=""),
    )


def args_seeds():
    t = "args"
    write(t, "json-update-profile", b"\x00" + (
        '{"controller":"security","action":"updateProfile","_id":"editors","body":'
        + SPEC_PROFILE_BODY + ',"refresh":"wait_for","retryOnConflict":3,"force":true,"strict":false}'
    ).encode())
    write(t, "json-imposed-id", b"\x02" + b'{"requestId":7,"from":-1,"size":1.5,"ids":["a","b"],"_id":""}')
    write(t, "json-nulls", b"\x00" + b'{"index":null,"collection":null,"jwt":null,"force":null,"_id":null}')
    write(t, "query-flags", b"\x01" + b"force&refresh=wait_for&retryOnConflict=3&strict=0&size=-42&ids=a,,b")
    write(t, "query-repeated", b"\x01" + b"from=1&from=2&index=a&index=b&jwt&controller=x&requestId=y")
    write(t, "query-placeholders", b"\x01" + b"_id=q&index=q#_id=editors&index=nyc&collection=taxi")
    write(t, "query-encoded", b"\x01" + b"a+b=c%20d&%E9=%FF&size=99999999999999999999&=x")


def validation_seeds():
    t = "validation"
    # Flags: bit 0 role, bit 1 force, bit 2 catalog checks, bit 3 known roles, bit 4 merge,
    # bits 5-7 the id (0 editors, 1 anonymous, 2 admin, 3 default, 4 r).
    write(t, "profile-spec", bytes([0b0000_1100]) + SPEC_PROFILE_BODY.encode())
    write(t, "profile-update-merge", bytes([0b0001_1100]) + b'{"rateLimit":20,"policies":[{"roleId":"editor","restrictedTo":[{"index":"nyc","collections":["taxi","zz","yy"]}]}]}')
    write(t, "profile-anonymous", bytes([0b0010_0100]) + b'{"policies":[{"roleId":"default"}],"rateLimit":1.0}')
    write(t, "profile-unknown-role", bytes([0b0000_0000]) + b'{"policies":[{"roleId":"ghost"},{"roleId":""}],"rateLimit":-1}')
    write(t, "profile-rate-limit-big", bytes([0b0000_1000]) + b'{"policies":[{"roleId":"admin","restrictedTo":[{"index":"nyc"},{"index":"other","collections":[]}],"x":1}],"rateLimit":9007199254740993}')
    write(t, "role-admin", bytes([0b0100_0001]) + b'{"controllers":{"*":{"actions":{"*":true}}}}')
    write(t, "role-anonymous", bytes([0b0010_0001]) + b'{"controllers":{"auth":{"actions":{"login":true,"checkToken":true}},"server":{"actions":{"publicApi":true}}},"_id":"x"}')
    write(t, "role-unknown", bytes([0b1000_0001]) + b'{"controllers":{"plugin":{"actions":{"foo":true}},"auth":{"actions":{"nope":false}}}}')
    write(t, "role-forced", bytes([0b1000_0011]) + b'{"controllers":{"plugin":{"actions":{"foo":true}},"ms":{"actions":{"get":1}}}}')


def token_seeds():
    t = "token"
    write(t, "spec-token", b"\x00" + SPEC_TOKEN.encode())
    payload = SPEC_TOKEN[len("kauth-"):].split(".")[1]
    write(t, "alg-none", b"\x00kauth-eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + payload.encode() + b".")
    write(t, "four-parts", b"\x00" + SPEC_TOKEN.encode() + b".x")
    write(t, "not-kauth", b"\x00eyJhbGciOiJIUzI1NiJ9.e30.AAAA")
    # Issued, then edited: kuid, iat, exp, now, then edits (continue flag, variant, fields).
    issued = b"\x01" + (
        Arb().string("kuid-admin").u64(1795782000).option_u64(1795785600).u64(1795782001)
        .boolean(True).variant(0, 4).u16(60).u8(ord("A"))
        .boolean(True).variant(1, 4).u16(7).u8(ord("."))
        .rest(b"")
        .build()
    )
    write(t, "issued-edited", issued)
    never = b"\x01" + Arb().string("").u64(0).option_u64(None).u64(2**64 - 1).boolean(True).variant(3, 4).u16(200).rest(b"").build()
    write(t, "issued-never-expires-truncated", never)
    for name, text in [
        ("timespan-1h", "1h"),
        ("timespan-fraction", " 1.5 days "),
        ("timespan-never", "-1"),
        ("timespan-huge", "99999999999999999999y"),
        ("timespan-ms", "250"),
    ]:
        write(t, name, b"\x02" + text.encode())


if __name__ == "__main__":
    ws_seeds()
    http_seeds()
    args_seeds()
    validation_seeds()
    token_seeds()
    total = 0
    for root, _, files in os.walk(CORPUS):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    print(f"corpus: {total} bytes")
