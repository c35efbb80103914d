#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets: tests/fuzz/corpus/<target>/<name>.

Each seed is a realistic exchange in the input format of its target (see
README.md and the comment at the top of each fuzz_<target>.c). Run it again
after changing a format; it rewrites only the seeds it generates (found
crash inputs, named crash-*, are kept).

    python3 tests/fuzz/gen_corpus.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- subject: "<prefix>\n<method>\n<flags><path>" -----------------------------
def subject(name, path, prefix=b"demo.site", method=b"GET", flags=0xFE):
    write("subject", name, prefix + b"\n" + method + b"\n" + bytes([flags]) + path)


subject("v1-example", b"/hello/world")
subject("root", b"/")
subject("nar", b"/nar/abc.nar.xz", method=b"HEAD")
subject("trailing-slash", b"/dir/")
subject("double-slash", b"//")
subject("escaped-space", b"/a%20b")
subject("percent", b"/100%")
subject("bad-escape", b"/%zz%4")
subject("unicode", b"/caf%C3%A9")
subject("dots", b"/a..b/./c")
subject("dotdot", b"/../etc/passwd")
subject("encoded-dotdot", b"/%2e%2e/x")
subject("wildcards", b"/a/*/b/>")
subject("crlf-injection", b"/x%0D%0APUB%20evil.x%205%0D%0Ahello")
subject("raw-bytes", b"/\x00\x01\x7f\xff", flags=0xFF)
subject("long", b"/" + b"segment/" * 400, flags=0x10)
subject("small-cap", b"/abcd", prefix=b"p", flags=0x04)
subject("bad-method", b"/x", method=b"BREW")
subject("lower-method", b"/x", method=b"get")
subject("prefix-empty-token", b"/x", prefix=b"a..b")
subject("prefix-wildcard", b"/x", prefix=b"site.*")
subject("prefix-space", b"/x", prefix=b"my site")
subject("prefix-empty", b"/x", prefix=b"")
subject("subject-as-path", b"demo.site.hello.world.GET")
subject("subject-escapes", b"demo.site.a%20b.%.%2A.PUT")
subject("reply-ids", b"_INBOX.abcdef.12.3", flags=13 << 1)
subject("reply-ids-big", b"_INBOX.abcdef.99999999999999999999.1", flags=13 << 1)
subject("number", b"9223372036854775807")


# ---- head: "<flags><subject>\n<reply>\n<header lines>\n\n<data>" ----------------
RAW, LINES, ADD, NONE = 0, 1, 2, 3
PREFIXED, NOREPLY = 4, 8


def head(name, flags, subj, reply, hdr, data=b""):
    write("head", name, bytes([flags]) + subj + b"\n" + reply + b"\n" + hdr + b"\n\n" + data)


head("get", LINES | PREFIXED, b"hello.world.GET", b"_INBOX.c.1",
     b"X-Path: /hello/world\nAccept: */*\nUser-Agent: curl/7.88.1\n")
head("get-query-raw", LINES | PREFIXED, b"a%20b.GET", b"_INBOX.c.2",
     b"X-Path: /a b\nX-Query: q=1&r=%20\nNatshttp-Raw-Path: /a%20b\n")
head("put-v2", LINES | PREFIXED, b"uploads.f.txt.PUT", b"_INBOX.c.3",
     b"X-Path: /uploads/f.txt\nNatshttp-Version: 2\nNatshttp-Window: 4194304\n"
     b"Content-Length: 5\nContent-Type: text/plain\n", b"hello")
head("put-chunked", ADD | PREFIXED, b"up.PUT", b"_INBOX.c.4",
     b"X-Path: /up\nTransfer-Encoding: chunked\n", b"abc")
head("empty-values", LINES | PREFIXED, b"x.GET", b"_INBOX.c.5",
     b"X-Path: /x\nNatshttp-Empty: X-Empty,Other\nX-Real: 1\n")
head("forged-path", LINES | PREFIXED, b"public.GET", b"_INBOX.c.6", b"X-Path: /private\n")
head("dup-content-length", LINES | PREFIXED, b"x.POST", b"_INBOX.c.7",
     b"X-Path: /x\nContent-Length: 5\nContent-Length: 6\n", b"hello")
head("response-ok", LINES | NOREPLY, b"_INBOX.c.1", b"",
     b"X-Status-Code: 200\nX-Status: OK\nContent-Length: 5\nContent-Type: text/plain\n", b"hello")
head("response-v2", LINES, b"_INBOX.c.1", b"_INBOX.s.9",
     b"X-Status-Code: 200\nX-Status: OK\nNatshttp-Version: 2\nTransfer-Encoding: chunked\n"
     b"Connection: close, X-Hop\nX-Hop: 1\n", b"part")
head("response-304-empty", LINES | NOREPLY, b"_INBOX.c.1", b"",
     b"X-Status-Code: 304\nNatshttp-Empty: ETag\nCache-Control: max-age=60\n")
head("response-bad-code", LINES | NOREPLY, b"_INBOX.c.1", b"", b"X-Status-Code: 20x\n")
head("raw-wire", RAW | NOREPLY, b"_INBOX.c.1", b"",
     b"NATS/1.0\r\nX-Status-Code: 404\r\nX-Status: Not Found\r\nEmpty:\r\nNext: v\r\n\r\n")
head("no-responders", RAW | NOREPLY, b"_INBOX.c.1", b"", b"NATS/1.0 503\r\n\r\n")
head("credit", LINES, b"_INBOX.s.9.1", b"_INBOX.c.1.1", b"Natshttp-Credit: 1048576\n")
head("end", LINES, b"_INBOX.c.1", b"_INBOX.s.9.4", b"Natshttp-End: 12\n")
head("numbers-big", LINES, b"_INBOX.c.1", b"_INBOX.s.9.4",
     b"Natshttp-End: 99999999999999999999\nNatshttp-Credit: -1\nNatshttp-Window: 0x10\n")
head("abort-cancel", LINES, b"_INBOX.c.1", b"_INBOX.s.9.4",
     b"Natshttp-Abort: upstream failed\nNatshttp-Cancel: gone\n")


# ---- client: cfg, then records "kind a b(u16) hlen hdr dlen(u16) data" ---------
(K_HEAD, K_PIECE, K_END, K_ABORT, K_HANDSHAKE, K_ANNOUNCE, K_CREDIT, K_NORESP, K_JUNK,
 K_WRITE, K_END_BODY, K_CANCEL, K_FREE_HELD) = range(13)
V1, KEEP = 1, 16
GET, HEAD, PUT_CHUNKED, PUT_BIG, PUT_SMALL, POST_GIVEN, DELETE, GET_QUERY = range(8)
# status index << 4 in a head's a: 200 204 304 100 404 500 206 301 ...
S200, S204, S304, S100, S404, S500 = (i << 4 for i in range(6))
H_V2, H_REPLY, H_CL, H_CHUNKED = 1, 2, 4, 8


def cfg(req=GET, v1=False, keep=False, window=0):
    return (V1 if v1 else 0) | req << 1 | (KEEP if keep else 0) | window << 5


def rec(kind, a=0, b=0, hdr=b"", data=b""):
    return bytes([kind, a]) + struct.pack(">H", b) + bytes([len(hdr)]) + hdr + \
        struct.pack(">H", len(data)) + data


def client(name, c, *records):
    write("client", name, bytes([c]) + b"".join(records))


client("v1-single", cfg(v1=True), rec(K_HEAD, S200 | H_CL, 5, data=b"hello"))
client("v1-single-short", cfg(v1=True), rec(K_HEAD, S200 | H_CL, 9, data=b"hello"))
client("v1-chunked", cfg(v1=True),
       rec(K_HEAD, S200 | H_CHUNKED, hdr=b"Content-Type: text/plain\n", data=b"hel"),
       rec(K_PIECE, 0, 1, data=b"lo"), rec(K_PIECE, 0, 1))
client("v1-chunked-cl", cfg(v1=True),
       rec(K_HEAD, S200 | H_CHUNKED | H_CL, 5, data=b"hel"),
       rec(K_PIECE, 0, 1, data=b"lo!"), rec(K_PIECE, 0, 1))
client("v2-chunked", cfg(window=2),
       rec(K_HEAD, S200 | H_V2 | H_REPLY | H_CHUNKED, data=b"abc"),
       rec(K_PIECE, data=b"def"), rec(K_PIECE, data=b"ghi"), rec(K_END))
client("v2-chunked-cl-held", cfg(keep=True, window=0),
       rec(K_HEAD, S200 | H_V2 | H_REPLY | H_CHUNKED | H_CL, 6, data=b"abc"),
       rec(K_PIECE, data=b"def"), rec(K_FREE_HELD), rec(K_END))
client("v2-empty-head-data", cfg(),
       rec(K_HEAD, S200 | H_V2 | H_REPLY | H_CHUNKED),
       rec(K_PIECE, data=b"x" * 100), rec(K_END))
client("v2-abort", cfg(),
       rec(K_HEAD, S200 | H_V2 | H_REPLY | H_CHUNKED, data=b"abc"),
       rec(K_ABORT))
client("v2-lost-piece", cfg(),
       rec(K_HEAD, S200 | H_V2 | H_REPLY | H_CHUNKED, data=b"abc"),
       rec(K_PIECE, 1, data=b"def"), rec(K_END))
client("v2-repeated-piece", cfg(),
       rec(K_HEAD, S200 | H_V2 | H_REPLY | H_CHUNKED, data=b"abc"),
       rec(K_PIECE, data=b"def"), rec(K_PIECE, 0xFF, data=b"def"), rec(K_END))
client("v2-end-wrong-total", cfg(),
       rec(K_HEAD, S200 | H_V2 | H_REPLY | H_CHUNKED, data=b"abc"),
       rec(K_PIECE, data=b"def"), rec(K_END, 0, 3))
client("v2-announce", cfg(), rec(K_ANNOUNCE), rec(K_HEAD, S200 | H_V2 | H_REPLY | H_CL, 2,
                                                   data=b"ok"))
client("v2-cancel-mid-body", cfg(keep=True),
       rec(K_HEAD, S200 | H_V2 | H_REPLY | H_CHUNKED, data=b"abc"),
       rec(K_PIECE, data=b"def"), rec(K_CANCEL), rec(K_PIECE, data=b"late"))
client("head-request", cfg(req=HEAD), rec(K_HEAD, S200 | H_CL, 100))
client("no-content", cfg(req=DELETE), rec(K_HEAD, S204))
client("not-modified", cfg(req=GET_QUERY),
       rec(K_HEAD, S304, hdr=b"Natshttp-Empty: ETag\nCache-Control: no-cache\n"))
client("continue-then-ok", cfg(v1=True), rec(K_HEAD, S100), rec(K_HEAD, S200 | H_CL, 1,
                                                              data=b"!"))
client("not-found", cfg(v1=True), rec(K_HEAD, S404 | H_CL, 9, data=b"not found"))
client("no-responders", cfg(), rec(K_NORESP))
client("bad-status", cfg(), rec(K_HEAD, 10 << 4 | H_CL, 0), rec(K_HEAD, S200))
client("head-too-large", cfg(v1=True),
       rec(K_HEAD, S200, hdr=b"".join(b"X-F%d: %s\n" % (i, b"v" * 40) for i in range(4))))
client("upload-chunked-v2", cfg(req=PUT_CHUNKED, window=1),
       rec(K_WRITE, 0, 100), rec(K_HANDSHAKE, 1 | 2, 64), rec(K_WRITE, 0, 2000),
       rec(K_CREDIT, 1, 100), rec(K_WRITE, 0, 2000), rec(K_END_BODY),
       rec(K_HEAD, S200 | H_V2 | H_REPLY | H_CL, 2, data=b"ok"))
client("upload-chunked-v1", cfg(req=PUT_CHUNKED, v1=True),
       rec(K_WRITE, 0, 100), rec(K_HANDSHAKE), rec(K_WRITE, 0, 5000), rec(K_END_BODY),
       rec(K_HEAD, (1 << 4) | 0))
client("upload-end-before-handshake", cfg(req=PUT_CHUNKED),
       rec(K_END_BODY), rec(K_HANDSHAKE, 1 | 2, 1000), rec(K_HEAD, S204 | H_V2 | H_REPLY))
client("upload-big", cfg(req=PUT_BIG, window=4),
       rec(K_WRITE, 0, 65535), rec(K_HANDSHAKE, 1 | 2, 4096), rec(K_WRITE, 0, 65535),
       rec(K_CREDIT, 0x80 | 1, 64), rec(K_WRITE, 0, 65535), rec(K_CANCEL))
client("upload-small", cfg(req=PUT_SMALL),
       rec(K_WRITE, 0, 10), rec(K_WRITE, 0, 6), rec(K_END_BODY), rec(K_HEAD, S200 | H_CL, 0))
client("upload-small-overrun", cfg(req=PUT_SMALL), rec(K_WRITE, 0, 17), rec(K_END_BODY))
client("post-given", cfg(req=POST_GIVEN, v1=True), rec(K_HEAD, S500 | H_CL, 4, data=b"oops"))
client("credit-bad", cfg(req=PUT_CHUNKED),
       rec(K_WRITE, 0, 1), rec(K_HANDSHAKE, 3, 1),
       rec(K_JUNK, 0x10, 0, b".1\nNatshttp-Credit: 12x\n"))
client("junk-subjects", cfg(),
       rec(K_JUNK, 1, 0, b"99\nX-Status-Code: 200\n", b"stray"),
       rec(K_JUNK, 2, 0, b"other.subject\n", b"x"),
       rec(K_JUNK, 0x10 | 4, 0, b".7\nNATS/1.0\r\nX-Status-Code: 200\r\n\r\n", b"y"),
       rec(K_HEAD, S200 | H_CL, 1, data=b"z"))
client("raw-header-block", cfg(),
       rec(K_JUNK, 3, 0, b"\nNATS/1.0\r\nX-Status-Code: 200\r\nContent-Length: 2\r\n\r\n", b"hi"))
