/*
 * eg_merkle.h — RFC 6962 §2.1 Merkle Tree Hash, audit paths (§2.1.1) and
 * inclusion verification (RFC 9162 §2.1.3.2).
 *
 * Leaves are given as leaf hashes: SHA-256(0x00 || entry bytes). Interior
 * nodes are SHA-256(0x01 || left || right). Leaf indices are 0-based.
 */
#ifndef EG_MERKLE_H
#define EG_MERKLE_H

#include <stddef.h>
#include <stdint.h>

#include "eg_err.h"

/* Leaf hash of entry bytes: SHA-256(0x00 || data). */
void eg_merkle_leaf(const void *data, size_t len, uint8_t out[32]);

/* MTH over n >= 1 leaf hashes (n == 0 gives SHA-256 of the empty string).
 * Uses O(log n) stack space; leaves is n*32 bytes. */
eg_err eg_merkle_root(const uint8_t (*leaves)[32], size_t n, uint8_t out[32]);

/* Audit path for leaf index in a tree of n leaves, leaf to root. path must
 * hold 64 hashes; *depth receives the number written. */
eg_err eg_merkle_path(const uint8_t (*leaves)[32], size_t n, size_t index, uint8_t (*path)[32],
                      size_t *depth);

/* Verifies that leaf (a leaf hash) at index in a tree of n leaves with the
 * given audit path hashes to root. Returns EG_OK or EG_E_NOT_FOUND when it
 * does not; EG_E_SCHEMA for index >= n or a path of the wrong length. */
eg_err eg_merkle_verify(const uint8_t leaf[32], size_t index, size_t n, const uint8_t (*path)[32],
                        size_t depth, const uint8_t root[32]);

#endif
