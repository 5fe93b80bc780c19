/*
 * xsnn bit-packed BSNN forward kernel (CPython extension, no numpy headers).
 *
 * The network comes as an int64 header and a uint64 blob built by
 * xsnn/kernel/_layout.py (read its docstring for the layout; the H_ and L_
 * constants below mirror it). Inputs are uint8 spikes (n, T, n_in) holding
 * 0/1, or packed uint64 words (n, T, ceil(n_in / 64)).
 *
 * Two algorithms compute the same integers (the test suite checks both, and
 * both ISA variants, against the Python reference forward):
 *
 * reference: neuron by neuron, AND + popcount over the input words
 *     binary:  I_j = 2 popcount(x & P_j) - popcount(x)
 *     ternary: I_j = popcount(x & P_j) - popcount(x & M_j)
 *   then the integrate-and-fire loop in int64. Simple on purpose.
 *
 * sliced: bit-sliced across neurons. 256 neurons share one "lane block"; a
 *   number per neuron is held as bit planes (plane p = bit p of every
 *   neuron's number, 256 bits = 4 words). Per input step:
 *   1. list the active inputs i (x_i = 1) as uint16 numbers (count trailing
 *      zeros; with AVX2, a branch-free table of the set bits of each byte);
 *   2. add the weight columns P[:, i] of the active inputs with a
 *      Harley-Seal carry-save adder tree: about 5 vector operations per
 *      active input give the bit planes of c_j = #{active i : W_ji = +1} for
 *      256 neurons at once (inputs are sparse, so this beats per-neuron
 *      popcounts, whose cost does not depend on the input);
 *   3. I = 2c - A (A = number of active inputs) or c+ - c- in two's complement;
 *   4. U = V - theta_eff in two's complement planes: reset, U += I, the spike
 *      is the inverted sign plane (V >= theta  <=>  U >= 0).
 *   When a layer's input is the same at every step (static coding), steps
 *   1-3 run once, and for reset "zero" the spike trains follow in closed form
 *   from T comparisons I >= ceil(theta / M) (see _layout.static_bounds);
 *   for reset "subtract" at the last layer, the spike counts follow from T
 *   comparisons I >= ceil(k theta / T). Otherwise steps 1-3 rerun only when
 *   the input row differs from the previous step's.
 *   The readout adds the bit planes N_p of the last layer's spike counts:
 *   score_c = sum_p 2^p (2 popcount(N_p & P_c) - popcount(N_p)) (binary),
 *   sum_p 2^p (popcount(N_p & P_c) - popcount(N_p & M_c)) (ternary); with
 *   AVX2 the popcounts are nibble lookups (vpshufb) summed per byte.
 *
 * Pairs: when no layer has more than 128 neurons, one 256-lane block holds
 *   two images (lanes 0-127 the first, 128-255 the second; per-neuron
 *   constants are stored twice, see _layout.build_layout), which halves the
 *   adder-tree and per-block work per image.
 *
 * Both are compiled twice: for the baseline ISA and, on x86-64 with GCC or
 * clang, for AVX2 + POPCNT; the AVX2 copy runs only if the CPU reports
 * both (__builtin_cpu_supports), so the binary never executes an
 * instruction the CPU lacks.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define XSNN_X86_DISPATCH 1
#include <immintrin.h>
#endif

#define INLINE static inline __attribute__((always_inline))

/* 256 lanes: one AVX2 register, or two SSE2 registers on the baseline ISA. */
typedef uint64_t vec __attribute__((vector_size(32)));

/* header fields: mirror of xsnn/kernel/_layout.py */
enum { H_MAGIC, H_VERSION, H_LAYERS, H_STEPS, H_RESET, H_TERNARY, H_CLASSES, H_RO_OFF, H_W_LAST, H_BLOB_WORDS,
       H_PAIRS };
enum { L_N_IN, L_N_OUT, L_BLOCKS, L_P, L_PI, L_COLS_OFF, L_START_OFF, L_ROWS_OFF, L_THETA_OFF, L_W_IN, L_W_OUT,
       L_BOUNDS_OFF };
#define H_LAYER0 16
#define H_LAYER_FIELDS 16
#define MAGIC 0x78736E6E
#define LAYOUT_VERSION 3
#define MAX_LAYERS 32
#define MAX_PLANES 62
#define MAX_STEPS 64
#define MAX_INPUTS 65535   /* active inputs are listed as uint16 (column n_in is the zero column) */
#define LANE_WORDS 4

enum { ALGO_SLICED = 0, ALGO_REFERENCE = 1, ALGO_SLICED_SINGLE = 2 };
enum { ISA_AUTO = 0, ISA_GENERIC = 1 };
enum { OK = 0, ERR_VALUE = 1, ERR_PADDING = 2 };

typedef struct {
    int64_t n_in, n_out, nb, P, PI, w_in, w_out, nc;
    const uint64_t *cols, *start, *bounds, *rows;
    const int64_t *theta;
} Layer;

typedef struct {
    int L, T, reset, ternary, S, n_classes, PN, pairs;
    int64_t w_last, n_in;
    const uint64_t *ro;
    Layer layer[MAX_LAYERS];
} Net;

typedef struct {
    uint64_t *xin[2];            /* per image of a pair: T rows of w_in(0) words, packed from bytes */
    const uint64_t *in0[2];      /* per image of a pair: its input rows (xin, or the caller's packed rows) */
    uint64_t *spk[MAX_LAYERS];   /* T rows of nb*4 words per layer */
    vec *U, *I, *E, *cnt, *N;
    uint16_t *idx[2];            /* per image of a pair: active input numbers (layers have < 65536 inputs) */
    int64_t *v;                  /* reference: potentials */
    uint8_t *sp;                 /* reference: previous spikes */
    int64_t *count;              /* reference: spike counts of the last layer */
    void *block;                 /* the one allocation holding all of the above */
} Scratch;

/* ------------------------------------------------------------------ helpers */

INLINE vec vload(const uint64_t *p) { vec v; memcpy(&v, p, sizeof v); return v; }
INLINE void vstore(uint64_t *p, vec v) { memcpy(p, &v, sizeof v); }
INLINE vec vzero(void) { vec v = {0, 0, 0, 0}; return v; }

static int bit_length(uint64_t x) { int n = 0; while (x) { n++; x >>= 1; } return n; }

/* lanes < n_out - 256 b are valid in block b */
INLINE vec valid_lanes(int64_t n_out, int64_t b) {
    vec m;
    int64_t left = n_out - 256 * b;
    for (int k = 0; k < 4; k++) {
        int64_t bits = left - 64 * k;
        m[k] = bits >= 64 ? ~(uint64_t)0 : bits <= 0 ? 0 : (((uint64_t)1 << bits) - 1);
    }
    return m;
}

/* carry-save adder: (h, l) = a + b + c */
INLINE void csa(vec *h, vec *l, vec a, vec b, vec c) {
    vec u = a ^ b;
    *h = (a & b) | (u & c);
    *l = u ^ c;
}

/*
 * Harley-Seal: the bit planes of c_j = sum over listed inputs of column bit j.
 * idx holds n_idx (a multiple of 16) column numbers; col[i] is 4 words. For a pair, lanes 0-127 add the
 * low halves of the columns listed in idx and lanes 128-255 the low halves of those listed in idx2.
 * Output: out[0..3 + nc] = planes of weight 1, 2, 4, 8, 16, ... (4 + nc planes).
 */
/* lanes 0-127 from lo, lanes 128-255 from hi (two images of a pair, 128 neurons each) */
INLINE vec vload_pair(const uint64_t *lo, const uint64_t *hi) {
    vec v;
    memcpy(&v, lo, 16);
    memcpy((char *)&v + 16, hi, 16);
    return v;
}

INLINE void harley_seal(const uint64_t *col, const uint16_t *idx, const uint16_t *idx2, int pair, int64_t n_idx,
                        int64_t nc, vec *out) {
    vec ones = vzero(), twos = vzero(), fours = vzero(), eights = vzero();
    vec twosA, twosB, foursA, foursB, eightsA, eightsB, sixteens;
    vec *C = out + 4;
    for (int64_t p = 0; p < nc; p++) C[p] = vzero();
#define COL(m) (pair ? vload_pair(col + (size_t)q[m] * LANE_WORDS, col + (size_t)q2[m] * LANE_WORDS) \
                     : vload(col + (size_t)q[m] * LANE_WORDS))
    for (int64_t k = 0; k < n_idx; k += 16) {
        const uint16_t *q = idx + k, *q2 = pair ? idx2 + k : idx + k;
        csa(&twosA, &ones, ones, COL(0), COL(1));
        csa(&twosB, &ones, ones, COL(2), COL(3));
        csa(&foursA, &twos, twos, twosA, twosB);
        csa(&twosA, &ones, ones, COL(4), COL(5));
        csa(&twosB, &ones, ones, COL(6), COL(7));
        csa(&foursB, &twos, twos, twosA, twosB);
        csa(&eightsA, &fours, fours, foursA, foursB);
        csa(&twosA, &ones, ones, COL(8), COL(9));
        csa(&twosB, &ones, ones, COL(10), COL(11));
        csa(&foursA, &twos, twos, twosA, twosB);
        csa(&twosA, &ones, ones, COL(12), COL(13));
        csa(&twosB, &ones, ones, COL(14), COL(15));
        csa(&foursB, &twos, twos, twosA, twosB);
        csa(&eightsB, &fours, fours, foursA, foursB);
        csa(&sixteens, &eights, eights, eightsA, eightsB);
        vec carry = sixteens;                       /* ripple into the counter of sixteens */
        for (int64_t p = 0; p < nc; p++) {
            vec t = C[p] & carry;
            C[p] ^= carry;
            carry = t;
        }
    }
#undef COL
    out[0] = ones; out[1] = twos; out[2] = fours; out[3] = eights;
}

/* x += k0 in lanes 0-127 and k1 in lanes 128-255 (constants), modulo 2^n_planes; branch-free */
INLINE void add_uniform(vec *x, int64_t n_planes, int64_t k0, int64_t k1) {
    uint64_t bits0 = (uint64_t)k0, bits1 = (uint64_t)k1;
    vec c = vzero();
    for (int64_t p = 0; p < n_planes; p++) {
        int sh = p < 63 ? (int)p : 63;
        uint64_t kb0 = (uint64_t)0 - ((bits0 >> sh) & 1), kb1 = (uint64_t)0 - ((bits1 >> sh) & 1);
        vec kv = {kb0, kb0, kb1, kb1};
        vec a = x[p], ax = a ^ kv;
        x[p] = ax ^ c;
        c = (a & kv) | (ax & c);
    }
}

/* [a >= b] per lane, unsigned, n planes; a in registers, b planes from memory (4 words each) */
INLINE vec ge_planes(const vec *a, const uint64_t *b, int64_t n) {
    vec borrow = vzero();
    for (int64_t p = 0; p < n; p++) {
        vec ap = a[p], bp = vload(b + p * LANE_WORDS);
        borrow = (~ap & bp) | (~(ap ^ bp) & borrow);
    }
    return ~borrow;
}

/* ripple-add a 0/1 lane mask into n counter planes */
INLINE void count_add(vec *N, int n, vec s) {
    for (int p = 0; p < n; p++) {
        vec t = N[p] & s;
        N[p] ^= s;
        s = t;
    }
}

/* pack n 0/1 bytes into words; returns nonzero if some byte is not 0/1 */
INLINE int pack_row_generic(const uint8_t *src, int64_t n, uint64_t *dst, int64_t w) {
    uint8_t bad = 0;
    int64_t i = 0;
    for (int64_t k = 0; k < w; k++) dst[k] = 0;
#if defined(__SSE2__)
    __m128i acc = _mm_setzero_si128();
    for (; i + 16 <= n; i += 16) {      /* bit 0 of each byte -> bit 7 -> movemask */
        __m128i v = _mm_loadu_si128((const __m128i *)(src + i));
        acc = _mm_or_si128(acc, v);
        dst[i >> 6] |= (uint64_t)(uint16_t)_mm_movemask_epi8(_mm_slli_epi16(v, 7)) << (i & 63);
    }
    uint8_t lanes[16];
    _mm_storeu_si128((__m128i *)lanes, acc);
    for (int q = 0; q < 16; q++) bad |= lanes[q];
#endif
    for (; i < n; i++) {
        bad |= src[i];
        dst[i >> 6] |= (uint64_t)(src[i] & 1) << (i & 63);
    }
    return (bad & 0xFE) != 0;
}

#ifdef XSNN_X86_DISPATCH
__attribute__((target("avx2"))) static inline int pack_row_avx2(const uint8_t *src, int64_t n, uint64_t *dst,
                                                                 int64_t w) {
    __m256i acc = _mm256_setzero_si256();
    int64_t i = 0;
    for (int64_t k = 0; k < w; k++) dst[k] = 0;
    for (; i + 64 <= n; i += 64) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 32));
        acc = _mm256_or_si256(acc, _mm256_or_si256(a, b));
        uint64_t lo = (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(a, 7));
        uint64_t hi = (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(b, 7));
        dst[i >> 6] = lo | hi << 32;
    }
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(src + i));
        acc = _mm256_or_si256(acc, _mm256_castsi128_si256(v));
        dst[i >> 6] |= (uint64_t)(uint16_t)_mm_movemask_epi8(_mm_slli_epi16(v, 7)) << (i & 63);
    }
    int bad = !_mm256_testz_si256(acc, _mm256_set1_epi8((char)0xFE));
    for (; i < n; i++) {
        bad |= (src[i] & 0xFE) != 0;
        dst[i >> 6] |= (uint64_t)(src[i] & 1) << (i & 63);
    }
    return bad;
}
#endif

INLINE int pack_row(const uint8_t *src, int64_t n, uint64_t *dst, int64_t w, int avx2) {
#ifdef XSNN_X86_DISPATCH
    if (avx2) return pack_row_avx2(src, n, dst, w);
#endif
    (void)avx2;
    return pack_row_generic(src, n, dst, w);
}

/* point s->in0[g] at the T packed input rows of image img; 0 or an error code */
INLINE int load_input(const Net *net, Scratch *s, const void *x, int packed, int64_t img, int g, int avx2) {
    const Layer *L0 = &net->layer[0];
    int64_t T = net->T, n = L0->n_in, w = L0->w_in;
    if (packed) {
        const uint64_t *src = (const uint64_t *)x + (size_t)img * T * w;
        uint64_t tail = (n % 64) ? ~(((uint64_t)1 << (n % 64)) - 1) : 0;
        for (int64_t t = 0; t < T; t++)
            if (src[t * w + w - 1] & tail) return ERR_PADDING;
        s->in0[g] = src;
    } else {
        s->in0[g] = s->xin[g];
        const uint8_t *src = (const uint8_t *)x + (size_t)img * T * n;
        for (int64_t t = 0; t < T; t++)
            if (pack_row(src + t * n, n, s->xin[g] + t * w, w, avx2)) return ERR_VALUE;
    }
    return OK;
}

INLINE int same_words(const uint64_t *a, const uint64_t *b, int64_t w) {
    uint64_t diff = 0;
    for (int64_t k = 0; k < w; k++) diff |= a[k] ^ b[k];
    return diff == 0;
}

/* the input rows of layer l for image g of the group (a pair shares spike rows: lanes 128 g ...) */
INLINE const uint64_t *layer_input(const Net *net, const Scratch *s, int l, int g, int64_t *stride) {
    if (l == 0) { *stride = net->layer[0].w_in; return s->in0[g]; }
    *stride = net->layer[l - 1].nb * LANE_WORDS;
    return s->spk[l - 1] + 2 * g;
}

/* --------------------------------------------------------- sliced algorithm */

/* per byte value: the positions of its set bits (padded with 0), and their number */
static uint8_t byte_positions[256][8];
static uint8_t byte_count[256];

static void init_byte_tables(void) {
    for (int v = 0; v < 256; v++) {
        int n = 0;
        for (int b = 0; b < 8; b++)
            if (v >> b & 1) byte_positions[v][n++] = (uint8_t)b;
        byte_count[v] = (uint8_t)n;
    }
}

/* indices of the set bits of w words, in increasing order (count-trailing-zeros loop) */
INLINE int64_t set_bit_indices_ctz(const uint64_t *row, int64_t w, uint16_t *idx) {
    int64_t n = 0;
    for (int64_t k = 0; k < w; k++) {
        uint64_t word = row[k];
        while (word) {
            idx[n++] = (uint16_t)(k * 64 + __builtin_ctzll(word));
            word &= word - 1;
        }
    }
    return n;
}

#ifdef XSNN_X86_DISPATCH
/* the same, branch-free per byte: store the 8 positions of byte_positions[byte] at the byte's offset
 * (exclusive prefix sum of the byte popcounts, by SWAR and one multiply); idx needs 8 slots of slack */
__attribute__((target("avx2,popcnt"))) static inline int64_t set_bit_indices_avx2(const uint64_t *row, int64_t w,
                                                                                  uint16_t *idx) {
    int64_t n = 0;
    const __m128i eight = _mm_set1_epi16(8);
    for (int64_t k = 0; k < w; k++) {
        uint64_t word = row[k];
        if (!word) continue;
        uint64_t x = word - ((word >> 1) & 0x5555555555555555ULL);
        x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
        x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;                 /* popcount of each byte */
        uint64_t offsets = (x * 0x0101010101010101ULL) << 8;        /* exclusive prefix sums */
        uint16_t *out = idx + n;
        __m128i base = _mm_set1_epi16((short)(k * 64));
        for (int b = 0; b < 8; b++) {
            unsigned byte = (unsigned)(word >> (8 * b)) & 0xFF, off = (unsigned)(offsets >> (8 * b)) & 0xFF;
            __m128i v = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)byte_positions[byte]));
            _mm_storeu_si128((__m128i *)(out + off), _mm_add_epi16(v, base));
            base = _mm_add_epi16(base, eight);
        }
        n += __builtin_popcountll(word);
    }
    return n;
}
#endif

INLINE int64_t set_bit_indices(const uint64_t *row, int64_t w, uint16_t *idx, int avx2) {
#ifdef XSNN_X86_DISPATCH
    if (avx2) return set_bit_indices_avx2(row, w, idx);
#endif
    (void)avx2;
    return set_bit_indices_ctz(row, w, idx);
}

/* currents I (PI planes, two's complement) of every block for the input rows of a group of G images
 * (G = 2: a pair, one image per 128-lane half; the layer has at most 128 neurons) */
INLINE void currents(const Net *net, const Layer *ly, Scratch *s, const uint64_t *const *rows, int G, int avx2) {
    int64_t active[2] = {0, 0}, n_idx = 0;
    for (int g = 0; g < G; g++) {
        active[g] = set_bit_indices(rows[g], ly->w_in, s->idx[g], avx2);
        if (active[g] > n_idx) n_idx = active[g];
    }
    n_idx = (n_idx + 15) / 16 * 16;
    for (int g = 0; g < G; g++)                                     /* pad with the all-zero column */
        for (int64_t k = active[g]; k < n_idx; k++) s->idx[g][k] = (uint16_t)ly->n_in;
    if (G == 1) active[1] = active[0];
    int64_t CP = 4 + ly->nc, PI = ly->PI, S = net->S;
    for (int64_t b = 0; b < ly->nb; b++) {
        vec *I = s->I + b * PI;
        for (int64_t sg = 0; sg < S; sg++)
            harley_seal(ly->cols + (size_t)((b * S + sg) * (ly->n_in + 1)) * LANE_WORDS, s->idx[0], s->idx[G - 1],
                        G == 2, n_idx, ly->nc, s->cnt + sg * CP);
        if (!net->ternary) {                          /* I = 2 c - A */
            I[0] = vzero();
            for (int64_t p = 1; p < PI; p++) I[p] = (p - 1 < CP) ? s->cnt[p - 1] : vzero();
            add_uniform(I, PI, -active[0], -active[1]);
        } else {                                      /* I = c+ - c- = c+ + ~c- + 1 */
            const vec *cp = s->cnt, *cm = s->cnt + CP;
            vec c = ~vzero();
            for (int64_t p = 0; p < PI; p++) {
                vec a = p < CP ? cp[p] : vzero();
                vec bb = ~(p < CP ? cm[p] : vzero());
                vec x = a ^ bb;
                I[p] = x ^ c;
                c = (a & bb) | (x & c);
            }
        }
    }
}

/* one step of the integrate-and-fire loop of block b: reset by sprev, add I, return spikes */
INLINE vec lif_step(const Net *net, const Layer *ly, Scratch *s, int64_t b, vec sprev, vec valid) {
    int64_t P = ly->P, PI = ly->PI;
    vec *u = s->U + b * P;
    const vec *I = s->I + b * PI;
    const uint64_t *st = ly->start + (size_t)b * P * LANE_WORDS;
    vec c = vzero();
    if (net->reset == 0) {
        for (int64_t p = 0; p < P; p++) {
            vec a = (u[p] & ~sprev) | (vload(st + p * LANE_WORDS) & sprev);
            vec bb = I[p < PI ? p : PI - 1];
            vec x = a ^ bb;
            u[p] = x ^ c;
            c = (a & bb) | (x & c);
        }
    } else {
        vec c1 = vzero();
        for (int64_t p = 0; p < P; p++) {
            vec m = vload(st + p * LANE_WORDS) & sprev, up = u[p];
            vec x1 = up ^ m;
            vec a = x1 ^ c1;
            c1 = (up & m) | (x1 & c1);
            vec bb = I[p < PI ? p : PI - 1];
            vec x = a ^ bb;
            u[p] = x ^ c;
            c = (a & bb) | (x & c);
        }
    }
    return ~u[P - 1] & valid;
}

/* lanes of neurons: block b of one image, or (G = 2) the same neurons of both images of a pair */
INLINE vec group_valid(const Layer *ly, int64_t b, int G) {
    vec v = valid_lanes(ly->n_out, b);
    if (G == 2) { v[2] = v[0]; v[3] = v[1]; }
    return v;
}

INLINE int rows_equal(const uint64_t *const *a, const uint64_t *const *b, int G, int64_t w) {
    int same = 1;
    for (int g = 0; g < G; g++) same &= same_words(a[g], b[g], w);
    return same;
}

/* every layer for a group of G images (1, or 2 when every layer has at most 128 neurons) */
INLINE void sliced_group(const Net *net, Scratch *s, int G, int want_spikes, int avx2) {
    int64_t T = net->T;
    for (int l = 0; l < net->L; l++) {
        const Layer *ly = &net->layer[l];
        int last = (l == net->L - 1);
        int64_t stride;
        const uint64_t *in[2], *row[2], *prev_row[2];
        for (int g = 0; g < G; g++) in[g] = layer_input(net, s, l, g, &stride);
        uint64_t *out = s->spk[l];
        int64_t ow = ly->nb * LANE_WORDS;
        int step_invariant = 1;
        for (int64_t t = 1; t < T && step_invariant; t++) {
            for (int g = 0; g < G; g++) row[g] = in[g] + t * stride;
            step_invariant = rows_equal(row, in, G, ly->w_in);
        }
        if (last) for (int64_t q = 0; q < ly->nb * net->PN; q++) s->N[q] = vzero();

        if (step_invariant && net->reset == 0) {
            /* closed form: H_M = [I >= ceil(theta/M)] = [m <= M]; spikes at t iff m | t+1 */
            currents(net, ly, s, in, G, avx2);
            for (int64_t b = 0; b < ly->nb; b++) {
                vec valid = group_valid(ly, b, G), Iob[MAX_PLANES], prev = vzero();
                for (int64_t p = 0; p < ly->PI; p++) Iob[p] = s->I[b * ly->PI + p];
                Iob[ly->PI - 1] = ~Iob[ly->PI - 1];                     /* offset binary */
                for (int64_t M = 0; M < T; M++) {
                    vec H = ge_planes(Iob, ly->bounds + (size_t)((M * ly->nb + b) * ly->PI) * LANE_WORDS, ly->PI);
                    s->E[M] = H & ~prev;                                 /* [m == M+1] */
                    prev = H;
                }
                vec *sp_t = s->E + MAX_STEPS;            /* spikes at t: OR of [m == M] over M | t+1 */
                for (int64_t t = 0; t < T; t++) sp_t[t] = vzero();
                for (int64_t M = 1; M <= T; M++)
                    for (int64_t t = M - 1; t < T; t += M) sp_t[t] |= s->E[M - 1];
                for (int64_t t = 0; t < T; t++) {
                    vec sp = sp_t[t] & valid;
                    vstore(out + t * ow + b * LANE_WORDS, sp);
                    if (last) count_add(s->N + b * net->PN, net->PN, sp);
                }
            }
        } else if (step_invariant && last && !want_spikes) {
            /* reset subtract, counts only: count >= k  <=>  I >= ceil(k theta / T) */
            currents(net, ly, s, in, G, avx2);
            for (int64_t b = 0; b < ly->nb; b++) {
                vec valid = group_valid(ly, b, G), Iob[MAX_PLANES];
                for (int64_t p = 0; p < ly->PI; p++) Iob[p] = s->I[b * ly->PI + p];
                Iob[ly->PI - 1] = ~Iob[ly->PI - 1];
                for (int64_t k = 0; k < T; k++) {
                    vec G_k = ge_planes(Iob, ly->bounds + (size_t)((k * ly->nb + b) * ly->PI) * LANE_WORDS, ly->PI);
                    count_add(s->N + b * net->PN, net->PN, G_k & valid);
                }
            }
        } else {
            /* general: any input, step by step; currents reused while the input rows repeat */
            for (int64_t b = 0; b < ly->nb; b++)
                for (int64_t p = 0; p < ly->P; p++)
                    s->U[b * ly->P + p] = vload(ly->start + (size_t)(b * ly->P + p) * LANE_WORDS);
            for (int64_t t = 0; t < T; t++) {
                for (int g = 0; g < G; g++) { row[g] = in[g] + t * stride; prev_row[g] = row[g] - stride; }
                if (t == 0 || !rows_equal(row, prev_row, G, ly->w_in))
                    currents(net, ly, s, row, G, avx2);
                for (int64_t b = 0; b < ly->nb; b++) {
                    vec sprev = t ? vload(out + (t - 1) * ow + b * LANE_WORDS) : vzero();
                    vec sp = lif_step(net, ly, s, b, sprev, group_valid(ly, b, G));
                    vstore(out + t * ow + b * LANE_WORDS, sp);
                    if (last) count_add(s->N + b * net->PN, net->PN, sp);
                }
            }
        }
    }
}

/*
 * Readout from the count planes N (layout [block][plane], one vec each):
 *   score_c = sum_p 2^p (popcount(N_p & P_c) - popcount(N_p & M_c)),  M_c = ~P_c for binary weights.
 */
INLINE void weighted_popcount(const vec *N, int64_t nb, int PN, const uint64_t *mask, int64_t *half) {
    half[0] = half[1] = 0;                                /* lanes 0-127 and 128-255 */
    for (int64_t b = 0; b < nb; b++, mask += LANE_WORDS)
        for (int p = 0; p < PN; p++) {
            vec x = N[b * PN + p] & vload(mask);
            half[0] += (int64_t)(__builtin_popcountll(x[0]) + __builtin_popcountll(x[1])) << p;
            half[1] += (int64_t)(__builtin_popcountll(x[2]) + __builtin_popcountll(x[3])) << p;
        }
}

#ifdef XSNN_X86_DISPATCH
/* the same with AVX2 byte popcounts (nibble lookup), Horner over planes in bytes: needs 8 (2^PN - 1) <= 255 */
__attribute__((target("avx2,popcnt"))) static inline void weighted_popcount_avx2(const vec *N, int64_t nb, int PN,
                                                                                 const uint64_t *mask, int64_t *half) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    __m256i sum = zero;
    for (int64_t b = 0; b < nb; b++, mask += LANE_WORDS) {
        __m256i m = _mm256_loadu_si256((const __m256i *)mask), acc = zero;
        for (int p = PN - 1; p >= 0; p--) {
            __m256i x = _mm256_and_si256(_mm256_load_si256((const __m256i *)&N[b * PN + p]), m);
            __m256i c = _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(x, low)),
                                        _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x, 4), low)));
            acc = _mm256_add_epi8(_mm256_add_epi8(acc, acc), c);
        }
        sum = _mm256_add_epi64(sum, _mm256_sad_epu8(acc, zero));
    }
    __m128i lo = _mm256_castsi256_si128(sum), hi = _mm256_extracti128_si256(sum, 1);
    half[0] = _mm_cvtsi128_si64(lo) + _mm_extract_epi64(lo, 1);
    half[1] = _mm_cvtsi128_si64(hi) + _mm_extract_epi64(hi, 1);
}
#endif

/* scores of the G images of a group (for a pair, image g owns lanes 128 g ... 128 g + 127) */
INLINE void sliced_scores(const Net *net, const Scratch *s, int G, int64_t *const *scores, int avx2) {
    const Layer *ly = &net->layer[net->L - 1];
    int64_t W = net->w_last, nb = ly->nb, h[2] = {0, 0}, m[2] = {0, 0}, total[2] = {0, 0};
    int PN = net->PN;
#ifdef XSNN_X86_DISPATCH
    int fast = avx2 && PN <= 5;
#define WPC(mask, out) (fast ? weighted_popcount_avx2(s->N, nb, PN, (mask), (out)) \
                            : weighted_popcount(s->N, nb, PN, (mask), (out)))
#else
    (void)avx2;
#define WPC(mask, out) weighted_popcount(s->N, nb, PN, (mask), (out))
#endif
    if (!net->ternary) WPC(net->ro + (size_t)net->n_classes * W, total);   /* the all-ones row */
    for (int c = 0; c < net->n_classes; c++) {
        WPC(net->ro + (size_t)c * W, h);
        if (net->ternary) WPC(net->ro + (size_t)(net->n_classes + c) * W, m);
        for (int g = 0; g < G; g++) {             /* one image: both halves; a pair: half g */
            int64_t plus = G == 2 ? h[g] : h[0] + h[1];
            int64_t minus = net->ternary ? (G == 2 ? m[g] : m[0] + m[1])
                                         : (G == 2 ? total[g] : total[0] + total[1]) - plus;
            scores[g][c] = plus - minus;
        }
    }
#undef WPC
}

/* ------------------------------------------------------ reference algorithm */

INLINE void reference_image(const Net *net, Scratch *s, int64_t *scores) {
    int64_t T = net->T;
    for (int l = 0; l < net->L; l++) {
        const Layer *ly = &net->layer[l];
        int64_t stride;
        const uint64_t *in = layer_input(net, s, l, 0, &stride);
        uint64_t *out = s->spk[l];
        int64_t ow = ly->nb * LANE_WORDS, W = ly->w_in;
        const uint64_t *plus = ly->rows, *minus = ly->rows + (size_t)ly->n_out * W;
        for (int64_t j = 0; j < ly->n_out; j++) { s->v[j] = 0; s->sp[j] = 0; }
        for (int64_t t = 0; t < T; t++) {
            const uint64_t *x = in + t * stride;
            uint64_t *o = out + t * ow;
            for (int64_t k = 0; k < ow; k++) o[k] = 0;
            int64_t active = 0;
            for (int64_t k = 0; k < W; k++) active += __builtin_popcountll(x[k]);
            for (int64_t j = 0; j < ly->n_out; j++) {
                int64_t cp = 0, cm = 0;
                for (int64_t k = 0; k < W; k++) cp += __builtin_popcountll(x[k] & plus[j * W + k]);
                if (net->ternary)
                    for (int64_t k = 0; k < W; k++) cm += __builtin_popcountll(x[k] & minus[j * W + k]);
                else
                    cm = active - cp;
                int64_t v = s->v[j];
                if (s->sp[j]) v = net->reset == 0 ? 0 : v - ly->theta[j];
                v += cp - cm;
                s->v[j] = v;
                s->sp[j] = v >= ly->theta[j];
                if (s->sp[j]) o[j >> 6] |= (uint64_t)1 << (j & 63);
            }
        }
    }
    const Layer *last = &net->layer[net->L - 1];
    int64_t ow = last->nb * LANE_WORDS, W = net->w_last;
    for (int64_t j = 0; j < last->n_out; j++) {
        int64_t n = 0;
        for (int64_t t = 0; t < T; t++) n += (s->spk[net->L - 1][t * ow + (j >> 6)] >> (j & 63)) & 1;
        s->count[j] = n;
    }
    for (int c = 0; c < net->n_classes; c++) {
        const uint64_t *pc = net->ro + (size_t)c * W, *mc = net->ro + (size_t)(net->n_classes + c) * W;
        int64_t score = 0;
        for (int64_t j = 0; j < last->n_out; j++) {
            int is_plus = (pc[j >> 6] >> (j & 63)) & 1;
            int is_minus = net->ternary ? (int)((mc[j >> 6] >> (j & 63)) & 1) : !is_plus;
            score += (is_plus - is_minus) * s->count[j];
        }
        scores[c] = score;
    }
}

/* ------------------------------------------------------------ batch driver */

/* packed spikes of image g of the group (layer by layer, step by step, w_out words each) */
INLINE void copy_spikes(const Net *net, const Scratch *s, int g, uint64_t *dst) {
    for (int l = 0; l < net->L; l++) {
        const Layer *ly = &net->layer[l];
        for (int64_t t = 0; t < net->T; t++) {
            memcpy(dst, s->spk[l] + t * ly->nb * LANE_WORDS + 2 * g, (size_t)ly->w_out * 8);
            dst += ly->w_out;
        }
    }
}

/* returns -1 when all went well, else the index of the first bad image (its code in *err) */
INLINE int64_t batch_body(const Net *net, Scratch *s, const void *x, int packed, int64_t n, int64_t *scores,
                          uint64_t *spikes, int64_t spike_words, int algo, int *err, int avx2) {
    int pairs = net->pairs && algo == ALGO_SLICED;
    for (int64_t img = 0; img < n;) {
        int G = (pairs && img + 1 < n) ? 2 : 1;
        for (int g = 0; g < G; g++) {
            int code = load_input(net, s, x, packed, img + g, g, avx2);
            if (code != OK) { *err = code; return img + g; }
        }
        int64_t *out[2] = {scores + img * net->n_classes, scores + (img + G - 1) * net->n_classes};
        if (algo == ALGO_REFERENCE) {
            reference_image(net, s, out[0]);
        } else if (G == 2) {
            sliced_group(net, s, 2, spikes != NULL, avx2);
            sliced_scores(net, s, 2, out, avx2);
        } else {
            sliced_group(net, s, 1, spikes != NULL, avx2);
            sliced_scores(net, s, 1, out, avx2);
        }
        if (spikes)
            for (int g = 0; g < G; g++) copy_spikes(net, s, g, spikes + (img + g) * spike_words);
        img += G;
    }
    return -1;
}

static int64_t batch_generic(const Net *net, Scratch *s, const void *x, int packed, int64_t n, int64_t *scores,
                             uint64_t *spikes, int64_t spike_words, int algo, int *err) {
    return batch_body(net, s, x, packed, n, scores, spikes, spike_words, algo, err, 0);
}

#ifdef XSNN_X86_DISPATCH
__attribute__((target("avx2,popcnt")))
static int64_t batch_avx2(const Net *net, Scratch *s, const void *x, int packed, int64_t n, int64_t *scores,
                          uint64_t *spikes, int64_t spike_words, int algo, int *err) {
    return batch_body(net, s, x, packed, n, scores, spikes, spike_words, algo, err, 1);
}

static int detect_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
}
#else
static int detect_avx2(void) { return 0; }
#endif

static int have_avx2;   /* set once by the module init: the CPU (and OS) support AVX2 and POPCNT */
static int cpu_has_avx2(void) { return have_avx2; }

/* ------------------------------------------------------------ parsing */

static int parse_net(Net *net, const int64_t *h, Py_ssize_t n_fields, const uint64_t *blob, Py_ssize_t n_words) {
#define FAIL(msg) do { PyErr_SetString(PyExc_ValueError, "xsnn kernel layout: " msg); return -1; } while (0)
    if (n_fields < H_LAYER0 || h[H_MAGIC] != MAGIC || h[H_VERSION] != LAYOUT_VERSION) FAIL("bad magic or version");
    if (h[H_BLOB_WORDS] != n_words) FAIL("blob size mismatch");
    int64_t L = h[H_LAYERS], T = h[H_STEPS];
    if (L < 1 || L > MAX_LAYERS || n_fields < H_LAYER0 + H_LAYER_FIELDS * L) FAIL("bad number of layers");
    if (T < 1 || T > MAX_STEPS) FAIL("bad number of steps");
    net->L = (int)L; net->T = (int)T; net->reset = (int)h[H_RESET]; net->ternary = (int)h[H_TERNARY];
    net->S = net->ternary ? 2 : 1;
    net->n_classes = (int)h[H_CLASSES];
    net->pairs = (int)h[H_PAIRS];
    net->PN = bit_length((uint64_t)T);
    if (net->reset < 0 || net->reset > 1 || net->ternary < 0 || net->ternary > 1) FAIL("bad reset or weight kind");
    if (net->n_classes < 1) FAIL("no classes");
    if (net->pairs < 0 || net->pairs > 1) FAIL("bad pair flag");
    for (int l = 0; l < net->L; l++) {
        const int64_t *f = h + H_LAYER0 + H_LAYER_FIELDS * l;
        Layer *ly = &net->layer[l];
        ly->n_in = f[L_N_IN]; ly->n_out = f[L_N_OUT]; ly->nb = f[L_BLOCKS]; ly->P = f[L_P]; ly->PI = f[L_PI];
        ly->w_in = f[L_W_IN]; ly->w_out = f[L_W_OUT];
        if (ly->n_in < 1 || ly->n_out < 1 || ly->n_in > MAX_INPUTS || ly->n_out > MAX_INPUTS) FAIL("bad layer size");
        if (l > 0 && ly->n_in != net->layer[l - 1].n_out) FAIL("layer sizes do not chain");
        if (ly->nb != (ly->n_out + 255) / 256 || ly->w_in != (ly->n_in + 63) / 64 || ly->w_out != (ly->n_out + 63) / 64)
            FAIL("bad block or word counts");
        ly->nc = bit_length((uint64_t)((ly->n_in + 15) / 16));
        if (ly->nc < 1) ly->nc = 1;
        if (ly->PI < 2 || ly->PI > MAX_PLANES || ly->P < ly->PI || ly->P > MAX_PLANES
            || ly->PI < bit_length((uint64_t)ly->n_in + 1) + 1 || 4 + ly->nc > MAX_PLANES) FAIL("bad plane counts");
        int64_t sizes[5] = {ly->nb * net->S * (ly->n_in + 1) * LANE_WORDS, ly->nb * ly->P * LANE_WORDS,
                            T * ly->nb * ly->PI * LANE_WORDS, net->S * ly->n_out * ly->w_in, ly->n_out};
        int64_t offs[5] = {f[L_COLS_OFF], f[L_START_OFF], f[L_BOUNDS_OFF], f[L_ROWS_OFF], f[L_THETA_OFF]};
        for (int k = 0; k < 5; k++)
            if (offs[k] < 0 || offs[k] > n_words || sizes[k] > n_words - offs[k]) FAIL("array outside the blob");
        ly->cols = blob + offs[0]; ly->start = blob + offs[1]; ly->bounds = blob + offs[2]; ly->rows = blob + offs[3];
        ly->theta = (const int64_t *)(blob + offs[4]);
    }
    net->n_in = net->layer[0].n_in;
    for (int l = 0; l < net->L; l++)
        if (net->pairs && (net->layer[l].n_out > 128 || net->layer[l].nb != 1)) FAIL("pairs need layers of <= 128");
    net->w_last = h[H_W_LAST];
    if (net->w_last != net->layer[net->L - 1].nb * LANE_WORDS) FAIL("bad readout width");
    int64_t ro_off = h[H_RO_OFF], ro_size = (net->S * net->n_classes + 1) * net->w_last;
    if (ro_off < 0 || ro_off > n_words || ro_size > n_words - ro_off) FAIL("readout outside the blob");
    net->ro = blob + ro_off;
    return 0;
#undef FAIL
}

/* all scratch buffers live in one 64-byte aligned block (s->block) */
static void free_scratch(Scratch *s) { free(s->block); s->block = NULL; }

static size_t round64(size_t bytes) { return (bytes + 63) / 64 * 64; }

/* place every scratch buffer at base (NULL: only measure); returns the bytes needed */
static size_t carve_scratch(Scratch *s, const Net *net, char *base) {
    int64_t T = net->T, maxU = 0, maxI = 0, maxIn = 0, maxOut = 0;
    for (int l = 0; l < net->L; l++) {
        const Layer *ly = &net->layer[l];
        if (ly->nb * ly->P > maxU) maxU = ly->nb * ly->P;
        if (ly->nb * ly->PI > maxI) maxI = ly->nb * ly->PI;
        if (ly->n_in > maxIn) maxIn = ly->n_in;
        if (ly->n_out > maxOut) maxOut = ly->n_out;
    }
    size_t off = 0;
#define CARVE(field, type, bytes) \
    do { s->field = base ? (type)(void *)(base + off) : NULL; off += round64((size_t)(bytes)); } while (0)
    CARVE(xin[0], uint64_t *, T * net->layer[0].w_in * 8);
    CARVE(xin[1], uint64_t *, T * net->layer[0].w_in * 8);
    for (int l = 0; l < net->L; l++) CARVE(spk[l], uint64_t *, T * net->layer[l].nb * LANE_WORDS * 8);
    CARVE(U, vec *, maxU * sizeof(vec));
    CARVE(I, vec *, maxI * sizeof(vec));
    CARVE(E, vec *, 2 * MAX_STEPS * sizeof(vec));
    CARVE(cnt, vec *, 2 * (MAX_PLANES + 4) * sizeof(vec));
    CARVE(N, vec *, net->layer[net->L - 1].nb * net->PN * sizeof(vec));
    CARVE(idx[0], uint16_t *, (maxIn + 32) * sizeof(uint16_t));
    CARVE(idx[1], uint16_t *, (maxIn + 32) * sizeof(uint16_t));
    CARVE(v, int64_t *, maxOut * sizeof(int64_t));
    CARVE(sp, uint8_t *, maxOut);
    CARVE(count, int64_t *, maxOut * sizeof(int64_t));
#undef CARVE
    return off;
}

static int alloc_scratch(Scratch *s, const Net *net) {
    memset(s, 0, sizeof *s);
    size_t total = carve_scratch(s, net, NULL);
    void *block = NULL;
    if (posix_memalign(&block, 64, total) != 0) { PyErr_NoMemory(); return -1; }
    memset(block, 0, total);
    s->block = block;
    carve_scratch(s, net, (char *)block);
    return 0;
}

/* forward(header, blob, x, packed, scores_out, spikes_out_or_None, algo, isa) */
static PyObject *py_forward(PyObject *self, PyObject *args) {
    Py_buffer hb = {0}, bb = {0}, xb = {0}, sb = {0}, kb = {0};
    int packed, algo, isa;
    PyObject *spikes_obj, *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*y*pw*Oii", &hb, &bb, &xb, &packed, &sb, &spikes_obj, &algo, &isa)) return NULL;
    Net net;
    Scratch scratch;
    int have_scratch = 0;
    if (hb.len % 8 || bb.len % 8) { PyErr_SetString(PyExc_ValueError, "header and blob must be 8-byte words"); goto done; }
    if (parse_net(&net, (const int64_t *)hb.buf, hb.len / 8, (const uint64_t *)bb.buf, bb.len / 8) < 0) goto done;
    if (algo != ALGO_SLICED && algo != ALGO_REFERENCE && algo != ALGO_SLICED_SINGLE) {
        PyErr_SetString(PyExc_ValueError, "unknown algorithm");
        goto done;
    }
    int64_t row_bytes = packed ? net.layer[0].w_in * 8 : net.n_in;
    int64_t image_bytes = row_bytes * net.T;
    if (xb.len % image_bytes) { PyErr_SetString(PyExc_ValueError, "input buffer size is not a whole number of images"); goto done; }
    int64_t n = xb.len / image_bytes;
    if (sb.len != n * net.n_classes * 8) { PyErr_SetString(PyExc_ValueError, "scores buffer has the wrong size"); goto done; }
    int64_t spike_words = 0;
    for (int l = 0; l < net.L; l++) spike_words += net.T * net.layer[l].w_out;
    uint64_t *spikes = NULL;
    if (spikes_obj != Py_None) {
        if (PyObject_GetBuffer(spikes_obj, &kb, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) goto done;
        if (kb.len != n * spike_words * 8) { PyErr_SetString(PyExc_ValueError, "spikes buffer has the wrong size"); goto done; }
        spikes = (uint64_t *)kb.buf;
    }
    if (alloc_scratch(&scratch, &net) < 0) goto done;
    have_scratch = 1;
    int err = OK;
    int64_t bad;
    int use_avx2 = isa == ISA_AUTO && cpu_has_avx2();
    Py_BEGIN_ALLOW_THREADS
#ifdef XSNN_X86_DISPATCH
    if (use_avx2)
        bad = batch_avx2(&net, &scratch, xb.buf, packed, n, (int64_t *)sb.buf, spikes, spike_words, algo, &err);
    else
#endif
        bad = batch_generic(&net, &scratch, xb.buf, packed, n, (int64_t *)sb.buf, spikes, spike_words, algo, &err);
    Py_END_ALLOW_THREADS
    (void)use_avx2;
    if (bad >= 0) {
        if (err == ERR_PADDING)
            PyErr_Format(PyExc_ValueError, "packed input of image %lld has bits set beyond n_inputs", (long long)bad);
        else
            PyErr_Format(PyExc_ValueError, "input spikes of image %lld are not all 0 or 1", (long long)bad);
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    if (have_scratch) free_scratch(&scratch);
    PyBuffer_Release(&hb); PyBuffer_Release(&bb); PyBuffer_Release(&xb); PyBuffer_Release(&sb);
    if (kb.obj) PyBuffer_Release(&kb);
    return result;
}

static PyObject *py_isa(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    return PyUnicode_FromString(cpu_has_avx2() ? "avx2" : "generic");
}

static PyMethodDef methods[] = {
    {"forward", py_forward, METH_VARARGS,
     "forward(header, blob, x, packed, scores_out, spikes_out_or_None, algo, isa): run the network on a batch."},
    {"isa", py_isa, METH_NOARGS, "isa() -> 'avx2' or 'generic': the instruction set the kernel uses here."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ckernel", "xsnn bit-packed BSNN forward kernel.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__ckernel(void) {
    init_byte_tables();
    have_avx2 = detect_avx2();
    return PyModule_Create(&module);
}
