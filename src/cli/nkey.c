/* nkey.c - the public key of an NKey user seed, which nats.c needs next to
 * the seed file (natsOptions_SetNKeyFromSeed) but does not derive itself.
 *
 * An NKey is base32 (RFC 4648, no padding) of: prefix byte(s), 32 key bytes,
 * CRC-16/XMODEM of what precedes, little-endian. A user seed starts "SU": its
 * first two bytes hold the seed prefix (18 << 3) and the user prefix (20 << 3)
 * spread over 5+3 bits. The key bytes are an Ed25519 private seed; the public
 * key ("U...") is the user prefix byte and the Ed25519 public key. */
#include "cli.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX_SEED (18u << 3)
#define PREFIX_USER (20u << 3)

static uint16_t crc16(const uint8_t *p, size_t n)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/* Decodes n characters; returns the byte count, or -1 on a bad character. */
static int b32_decode(const char *s, size_t n, uint8_t *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = strchr(b32, s[i]);
        if (!p || !s[i])
            return -1;
        acc = (acc << 5) | (uint32_t)(p - b32);
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            if (len >= cap)
                return -1;
            out[len++] = (uint8_t)(acc >> bits);
        }
    }
    return (int)len;
}

static void b32_encode(const uint8_t *p, size_t n, char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | p[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            *out++ = b32[(acc >> bits) & 31];
        }
    }
    if (bits > 0)
        *out++ = b32[(acc << (5 - bits)) & 31];
    *out = 0;
}

int cli_nkey_public(const char *path, char *pub, size_t cap, char *err, size_t errcap)
{
    int rc = -1;
    char *text = cli_read_file("nkey", "--nkey", path);
    if (!text) {
        snprintf(err, errcap, "cannot read the file");
        return -1;
    }
    /* The seed is the first word starting "SU" (a bare seed, or a creds-style file). */
    const char *seed = NULL;
    size_t len = 0;
    for (const char *p = text; *p && !seed; p++)
        if ((p == text || isspace((unsigned char)p[-1])) && p[0] == 'S' && p[1] == 'U') {
            size_t n = 0;
            while (p[n] && !isspace((unsigned char)p[n]))
                n++;
            seed = p;
            len = n;
        }
    uint8_t raw[64];
    int n = seed ? b32_decode(seed, len, raw, sizeof raw) : -1;
    if (n != 36) {
        snprintf(err, errcap, "no user seed (SU...) in the file");
        goto out;
    }
    uint16_t want = (uint16_t)(raw[34] | raw[35] << 8);
    unsigned kind = ((raw[0] & 7u) << 5) | ((raw[1] & 0xf8u) >> 3);
    if ((raw[0] & 0xf8u) != PREFIX_SEED || kind != PREFIX_USER || crc16(raw, 34) != want) {
        snprintf(err, errcap, "the seed is not a valid user seed (bad prefix or checksum)");
        goto out;
    }
    EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw + 2, 32);
    uint8_t pk[35];
    size_t pklen = 32;
    if (!key || EVP_PKEY_get_raw_public_key(key, pk + 1, &pklen) != 1 || pklen != 32) {
        snprintf(err, errcap, "cannot derive the public key");
        EVP_PKEY_free(key);
        goto out;
    }
    EVP_PKEY_free(key);
    pk[0] = PREFIX_USER;
    uint16_t crc = crc16(pk, 33);
    pk[33] = (uint8_t)(crc & 0xff);
    pk[34] = (uint8_t)(crc >> 8);
    if (cap < 57) {
        snprintf(err, errcap, "internal: buffer too small");
        goto out;
    }
    b32_encode(pk, sizeof pk, pub);
    rc = 0;
out:
    memset(raw, 0, sizeof raw);
    memset(text, 0, strlen(text));
    free(text);
    return rc;
}
