/* siphash.h - SipHash-2-4 (Aumasson and Bernstein), a keyed hash for tables fed by clients. */
#ifndef HANDOFF_SIPHASH_H
#define HANDOFF_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define SIPHASH_KEY_BYTES 16

/* The 64-bit SipHash-2-4 of len bytes at data under a 16-byte key. Pure. */
uint64_t siphash24(const uint8_t key[SIPHASH_KEY_BYTES], const void *data, size_t len);

#endif
