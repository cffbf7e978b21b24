/*
 * sim_rand.h — a small seeded PRNG for the simulator (xoshiro256**), so a
 * run is reproducible from --seed. Not for keys: keys come from mbedTLS.
 */
#ifndef SIM_RAND_H
#define SIM_RAND_H

#include <math.h>
#include <stdint.h>

struct sim_rand {
    uint64_t s[4];
};

static inline uint64_t sim_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t sim_rand_u64(struct sim_rand *r)
{
    uint64_t *s = r->s, out = sim_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = sim_rotl(s[3], 45);
    return out;
}

/* Seeds with splitmix64 so nearby seeds give unrelated streams. */
static inline void sim_rand_seed(struct sim_rand *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        r->s[i] = z ^ (z >> 31);
    }
}

/* Uniform in [0, 1). */
static inline double sim_rand_uniform(struct sim_rand *r)
{
    return (double)(sim_rand_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform integer in [0, n). */
static inline uint64_t sim_rand_below(struct sim_rand *r, uint64_t n)
{
    return n ? sim_rand_u64(r) % n : 0;
}

/* Standard normal (Box-Muller). */
static inline double sim_rand_normal(struct sim_rand *r)
{
    double u = sim_rand_uniform(r), v = sim_rand_uniform(r);
    if (u < 1e-300)
        u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

#endif
