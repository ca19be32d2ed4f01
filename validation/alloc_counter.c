/* alloc_counter.c: LD_PRELOAD heap-byte counter for validation/measure.py.
 *
 * Wraps malloc, calloc, realloc, free, posix_memalign, aligned_alloc, memalign, valloc and
 * pvalloc.  Every block is recorded with its REQUESTED size in an open-addressing hash table
 * (linear probing, backward-shift deletion, storage from mmap, never from malloc) guarded by
 * one mutex.  Each record also remembers
 *   kind: 0 = malloc family (malloc/calloc/realloc), 1 = aligned family
 *         (posix_memalign/aligned_alloc/memalign/valloc/pvalloc), and
 *   lib:  which registered code range the call came from (caller's return address;
 *         0 = none registered / unknown).  measure.py registers libc10's text segment, so
 *         "aligned from libc10" is exactly c10::alloc_cpu, i.e. CPU tensor storage.
 * Counters: per (kind, lib) bucket live/peak, the sum over all tracked blocks, and one
 * "selected" sum (a kind mask x lib mask chosen with vramsim_select) whose live/peak are
 * what vramsim_live_bytes / vramsim_peak_bytes return.  Default selection: every aligned
 * allocation.  An optional trace buffer records allocations/frees for offline analysis.
 *
 * Build: gcc -O2 -shared -fPIC -o alloc_counter.so alloc_counter.c -ldl -lpthread
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))
#define NLIB 16
#define NKIND 2
#define SIZE_BITS 48
#define SIZE_MASK ((1ULL << SIZE_BITS) - 1)

typedef void *(*malloc_fn)(size_t);
typedef void (*free_fn)(void *);
typedef void *(*calloc_fn)(size_t, size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef int (*posix_memalign_fn)(void **, size_t, size_t);
typedef void *(*aligned_alloc_fn)(size_t, size_t);
typedef void *(*valloc_fn)(size_t);

static malloc_fn real_malloc;
static free_fn real_free;
static calloc_fn real_calloc;
static realloc_fn real_realloc;
static posix_memalign_fn real_posix_memalign;
static aligned_alloc_fn real_aligned_alloc;
static aligned_alloc_fn real_memalign;
static valloc_fn real_valloc;
static valloc_fn real_pvalloc;

/* ---- bootstrap: dlsym may itself allocate before the real functions are known ---- */
static char boot_buf[1 << 16] __attribute__((aligned(64)));
static size_t boot_used;
static volatile int resolving;
static __thread int in_hook __attribute__((tls_model("initial-exec")));

static void *boot_alloc(size_t n, size_t align) {
    size_t a = align < 16 ? 16 : align;
    size_t off = (__atomic_load_n(&boot_used, __ATOMIC_RELAXED) + a - 1) & ~(a - 1);
    if (off + n > sizeof boot_buf) return NULL;
    boot_used = off + n;
    memset(boot_buf + off, 0, n);
    return boot_buf + off;
}
static int is_boot(void *p) {
    return (char *)p >= boot_buf && (char *)p < boot_buf + sizeof boot_buf;
}

static void resolve(void) {
    if (real_free) return;
    resolving = 1;
    real_malloc = (malloc_fn)dlsym(RTLD_NEXT, "malloc");
    real_calloc = (calloc_fn)dlsym(RTLD_NEXT, "calloc");
    real_realloc = (realloc_fn)dlsym(RTLD_NEXT, "realloc");
    real_posix_memalign = (posix_memalign_fn)dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = (aligned_alloc_fn)dlsym(RTLD_NEXT, "aligned_alloc");
    real_memalign = (aligned_alloc_fn)dlsym(RTLD_NEXT, "memalign");
    real_valloc = (valloc_fn)dlsym(RTLD_NEXT, "valloc");
    real_pvalloc = (valloc_fn)dlsym(RTLD_NEXT, "pvalloc");
    real_free = (free_fn)dlsym(RTLD_NEXT, "free");
    resolving = 0;
}

/* ---- state, all guarded by `lock` ---- */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct { uintptr_t key; uint64_t val; } slot_t; /* val: size | kind<<48 | lib<<49 */
static slot_t *table;
static size_t cap, used;

static int64_t live_b[NKIND][NLIB], peak_b[NKIND][NLIB];
static int64_t live_all, peak_all, live_sel, peak_sel;
static uint64_t calls[10];          /* per hooked function, see CALL_* */
static uint64_t sel_kind_mask = 2;  /* bit k: kind k selected (default: aligned only) */
static uint64_t sel_lib_mask = ~0ULL;
static int track_malloc = 1;

typedef struct { uintptr_t lo, hi; int lib; } range_t;
static range_t ranges[64];
static volatile int nranges;

typedef struct { uint64_t ptr, size; uint32_t flags, pad; uint64_t caller; } trace_t;
static trace_t *trace_buf;
static size_t trace_cap, trace_n, trace_min;
static int64_t peak_trace_index = -1; /* trace_n when the selected peak was last raised */

enum { CALL_MALLOC, CALL_CALLOC, CALL_REALLOC, CALL_FREE, CALL_POSIX_MEMALIGN,
       CALL_ALIGNED_ALLOC, CALL_MEMALIGN, CALL_VALLOC, CALL_PVALLOC, CALL_UNKNOWN_FREE };

static inline size_t hslot(uintptr_t k, size_t mask) {
    return (size_t)(((uint64_t)k >> 4) * 0x9E3779B97F4A7C15ULL >> 17) & mask;
}

static int table_grow(void) {
    size_t ncap = cap ? cap * 2 : (1u << 20);
    slot_t *nt = mmap(NULL, ncap * sizeof(slot_t), PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (nt == MAP_FAILED) return -1;
    size_t nmask = ncap - 1;
    for (size_t i = 0; i < cap; i++) {
        if (!table[i].key) continue;
        size_t j = hslot(table[i].key, nmask);
        while (nt[j].key) j = (j + 1) & nmask;
        nt[j] = table[i];
    }
    if (table) munmap(table, cap * sizeof(slot_t));
    table = nt;
    cap = ncap;
    return 0;
}

static inline int selected(int kind, int lib) {
    return ((sel_kind_mask >> kind) & 1) && ((sel_lib_mask >> lib) & 1);
}

static void trace_add(uintptr_t p, uint64_t size, int kind, int lib, int is_free, uintptr_t caller) {
    if (!trace_buf || size < trace_min) return;
    if (trace_n < trace_cap) {
        trace_t *t = &trace_buf[trace_n];
        t->ptr = p; t->size = size; t->caller = caller;
        t->flags = (uint32_t)kind | ((uint32_t)lib << 1) | ((uint32_t)is_free << 8) |
                   ((uint32_t)selected(kind, lib) << 9);
        t->pad = 0;
    }
    trace_n++;
}

static int lib_of(uintptr_t caller) {
    int n = nranges;
    for (int i = 0; i < n; i++)
        if (caller >= ranges[i].lo && caller < ranges[i].hi) return ranges[i].lib;
    return 0;
}

/* caller must hold lock */
static void record_add(void *ptr, size_t size, int kind, uintptr_t caller) {
    if (!ptr) return;
    if ((used + 1) * 10 > cap * 7 && table_grow() != 0) return;
    int lib = lib_of(caller);
    uintptr_t k = (uintptr_t)ptr;
    size_t mask = cap - 1, i = hslot(k, mask);
    while (table[i].key && table[i].key != k) i = (i + 1) & mask;
    if (table[i].key == k) { /* stale record (block freed behind our back): drop it */
        uint64_t v = table[i].val;
        int ok = (int)((v >> SIZE_BITS) & 1), ol = (int)(v >> (SIZE_BITS + 1));
        int64_t os = (int64_t)(v & SIZE_MASK);
        live_b[ok][ol] -= os; live_all -= os;
        if (selected(ok, ol)) live_sel -= os;
    } else {
        used++;
    }
    table[i].key = k;
    table[i].val = ((uint64_t)size & SIZE_MASK) | ((uint64_t)kind << SIZE_BITS) |
                   ((uint64_t)lib << (SIZE_BITS + 1));
    int64_t s = (int64_t)size;
    live_b[kind][lib] += s;
    if (live_b[kind][lib] > peak_b[kind][lib]) peak_b[kind][lib] = live_b[kind][lib];
    live_all += s;
    if (live_all > peak_all) peak_all = live_all;
    trace_add(k, size, kind, lib, 0, caller);
    if (selected(kind, lib)) {
        live_sel += s;
        if (live_sel > peak_sel) { peak_sel = live_sel; peak_trace_index = (int64_t)trace_n; }
    }
}

/* caller must hold lock; returns 1 if found */
static int record_del(void *ptr, uint64_t *val_out) {
    if (!ptr || !cap) return 0;
    uintptr_t k = (uintptr_t)ptr;
    size_t mask = cap - 1, i = hslot(k, mask);
    while (table[i].key && table[i].key != k) i = (i + 1) & mask;
    if (!table[i].key) return 0;
    uint64_t v = table[i].val;
    if (val_out) *val_out = v;
    /* backward-shift deletion */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!table[j].key) break;
        size_t h = hslot(table[j].key, mask);
        int move = (j > i) ? (h <= i || h > j) : (h <= i && h > j);
        if (move) { table[i] = table[j]; i = j; }
    }
    table[i].key = 0;
    table[i].val = 0;
    used--;
    int kind = (int)((v >> SIZE_BITS) & 1), lib = (int)(v >> (SIZE_BITS + 1));
    int64_t s = (int64_t)(v & SIZE_MASK);
    live_b[kind][lib] -= s;
    live_all -= s;
    if (selected(kind, lib)) live_sel -= s;
    trace_add(k, (uint64_t)s, kind, lib, 1, 0);
    return 1;
}

static void track_alloc(void *p, size_t size, int kind, uintptr_t caller, int call) {
    if (in_hook) return;
    in_hook = 1;
    pthread_mutex_lock(&lock);
    calls[call]++;
    if (p && (kind == 1 || track_malloc)) record_add(p, size, kind, caller);
    pthread_mutex_unlock(&lock);
    in_hook = 0;
}

static void untrack(void *p, int count_call) {
    if (in_hook) return;
    in_hook = 1;
    pthread_mutex_lock(&lock);
    if (count_call) calls[CALL_FREE]++;
    if (!record_del(p, NULL) && count_call) calls[CALL_UNKNOWN_FREE]++;
    pthread_mutex_unlock(&lock);
    in_hook = 0;
}

#define CALLER ((uintptr_t)__builtin_return_address(0))

/* ---- hooks ---- */
EXPORT void *malloc(size_t n) {
    if (!real_malloc) { if (resolving) return boot_alloc(n, 16); resolve(); }
    void *p = real_malloc(n);
    track_alloc(p, n, 0, CALLER, CALL_MALLOC);
    return p;
}

EXPORT void *calloc(size_t a, size_t b) {
    if (!real_calloc) {
        if (resolving) { size_t n; if (__builtin_mul_overflow(a, b, &n)) return NULL; return boot_alloc(n, 16); }
        resolve();
    }
    void *p = real_calloc(a, b);
    track_alloc(p, a * b, 0, CALLER, CALL_CALLOC);
    return p;
}

EXPORT void free(void *p) {
    if (!p || is_boot(p)) return;
    if (!real_free) resolve();
    untrack(p, 1);
    real_free(p);
}

EXPORT void *realloc(void *p, size_t n) {
    if (!real_realloc) { if (resolving) return NULL; resolve(); }
    if (p && is_boot(p)) { /* move a bootstrap block to the real heap */
        void *q = malloc(n);
        if (q) memcpy(q, p, n < (size_t)(boot_buf + sizeof boot_buf - (char *)p) ? n : (size_t)(boot_buf + sizeof boot_buf - (char *)p));
        return q;
    }
    if (in_hook) return real_realloc(p, n);
    uintptr_t caller = CALLER;
    uint64_t old = 0;
    int had = 0;
    in_hook = 1;
    pthread_mutex_lock(&lock);
    calls[CALL_REALLOC]++;
    if (p) had = record_del(p, &old);
    pthread_mutex_unlock(&lock);
    void *q = real_realloc(p, n);
    pthread_mutex_lock(&lock);
    if (q) {
        if (track_malloc) record_add(q, n, 0, caller);
    } else if (p && n && had) { /* failed: the old block is still there */
        int kind = (int)((old >> SIZE_BITS) & 1);
        record_add(p, old & SIZE_MASK, kind, caller);
    }
    pthread_mutex_unlock(&lock);
    in_hook = 0;
    return q;
}

EXPORT int posix_memalign(void **out, size_t align, size_t n) {
    if (!real_posix_memalign) {
        if (resolving) { void *p = boot_alloc(n, align); if (!p) return ENOMEM; *out = p; return 0; }
        resolve();
    }
    int rc = real_posix_memalign(out, align, n);
    if (rc == 0) track_alloc(*out, n, 1, CALLER, CALL_POSIX_MEMALIGN);
    return rc;
}

EXPORT void *aligned_alloc(size_t align, size_t n) {
    if (!real_aligned_alloc) { if (resolving) return boot_alloc(n, align); resolve(); }
    void *p = real_aligned_alloc(align, n);
    track_alloc(p, n, 1, CALLER, CALL_ALIGNED_ALLOC);
    return p;
}

EXPORT void *memalign(size_t align, size_t n) {
    if (!real_memalign) { if (resolving) return boot_alloc(n, align); resolve(); }
    void *p = real_memalign(align, n);
    track_alloc(p, n, 1, CALLER, CALL_MEMALIGN);
    return p;
}

EXPORT void *valloc(size_t n) {
    if (!real_valloc) { if (resolving) return boot_alloc(n, 4096); resolve(); }
    void *p = real_valloc(n);
    track_alloc(p, n, 1, CALLER, CALL_VALLOC);
    return p;
}

EXPORT void *pvalloc(size_t n) {
    if (!real_pvalloc) { if (resolving) return boot_alloc(n, 4096); resolve(); }
    void *p = real_pvalloc(n);
    track_alloc(p, n, 1, CALLER, CALL_PVALLOC);
    return p;
}

__attribute__((constructor)) static void init(void) {
    resolve();
    const char *e = getenv("VRAMSIM_TRACK_MALLOC");
    if (e && e[0] == '0') track_malloc = 0;
}

/* ---- control API (ctypes) ---- */
#define LOCKED(stmt) do { in_hook++; pthread_mutex_lock(&lock); stmt; pthread_mutex_unlock(&lock); in_hook--; } while (0)

EXPORT int vramsim_loaded(void) { return 1; }

/* peak := current, for every counter */
EXPORT void vramsim_reset_peak(void) {
    LOCKED({
        for (int k = 0; k < NKIND; k++)
            for (int l = 0; l < NLIB; l++) peak_b[k][l] = live_b[k][l];
        peak_all = live_all;
        peak_sel = live_sel;
        peak_trace_index = (int64_t)trace_n;
    });
}
EXPORT int64_t vramsim_peak_bytes(void) { int64_t r; LOCKED(r = peak_sel); return r; }
EXPORT int64_t vramsim_live_bytes(void) { int64_t r; LOCKED(r = live_sel); return r; }
EXPORT int64_t vramsim_all_peak_bytes(void) { int64_t r; LOCKED(r = peak_all); return r; }
EXPORT int64_t vramsim_all_live_bytes(void) { int64_t r; LOCKED(r = live_all); return r; }
EXPORT int64_t vramsim_bucket_live(int kind, int lib) {
    int64_t r = 0;
    if (kind >= 0 && kind < NKIND && lib >= 0 && lib < NLIB) LOCKED(r = live_b[kind][lib]);
    return r;
}
EXPORT int64_t vramsim_bucket_peak(int kind, int lib) {
    int64_t r = 0;
    if (kind >= 0 && kind < NKIND && lib >= 0 && lib < NLIB) LOCKED(r = peak_b[kind][lib]);
    return r;
}
EXPORT uint64_t vramsim_calls(int which) {
    uint64_t r = 0;
    if (which >= 0 && which < 10) LOCKED(r = calls[which]);
    return r;
}
EXPORT uint64_t vramsim_num_tracked(void) { uint64_t r; LOCKED(r = used); return r; }

/* Calls from [lo, hi) are attributed to lib (1..15).  Only new allocations are affected. */
EXPORT int vramsim_register_range(uintptr_t lo, uintptr_t hi, int lib) {
    int rc = -1;
    if (lib <= 0 || lib >= NLIB) return -1;
    LOCKED({
        if (nranges < 64) {
            ranges[nranges].lo = lo; ranges[nranges].hi = hi; ranges[nranges].lib = lib;
            nranges++;
            rc = 0;
        }
    });
    return rc;
}

/* Chooses which buckets the selected counter sums; recomputes live, peak := live. */
EXPORT void vramsim_select(uint64_t kind_mask, uint64_t lib_mask) {
    LOCKED({
        sel_kind_mask = kind_mask;
        sel_lib_mask = lib_mask;
        live_sel = 0;
        for (int k = 0; k < NKIND; k++)
            for (int l = 0; l < NLIB; l++)
                if (selected(k, l)) live_sel += live_b[k][l];
        peak_sel = live_sel;
    });
}

/* Trace of allocations/frees of at least min_size bytes into a fresh buffer of capacity
 * records (entries past capacity are counted but not stored). */
EXPORT int vramsim_trace_start(size_t capacity, size_t min_size) {
    int rc = 0;
    LOCKED({
        if (trace_buf) munmap(trace_buf, trace_cap * sizeof(trace_t));
        trace_buf = mmap(NULL, capacity * sizeof(trace_t), PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (trace_buf == MAP_FAILED) { trace_buf = NULL; trace_cap = 0; rc = -1; }
        else trace_cap = capacity;
        trace_n = 0;
        trace_min = min_size;
        peak_trace_index = 0;
    });
    return rc;
}
/* Stops recording; the buffer stays readable until the next start or vramsim_trace_free. */
EXPORT size_t vramsim_trace_stop(void) {
    size_t n;
    LOCKED({ n = trace_n; trace_min = (size_t)-1; });
    return n;
}
EXPORT void *vramsim_trace_buffer(void) { return trace_buf; }
EXPORT size_t vramsim_trace_count(void) { size_t n; LOCKED(n = trace_n); return n; }
EXPORT int64_t vramsim_peak_trace_index(void) { int64_t r; LOCKED(r = peak_trace_index); return r; }
EXPORT void vramsim_trace_free(void) {
    LOCKED({
        if (trace_buf) munmap(trace_buf, trace_cap * sizeof(trace_t));
        trace_buf = NULL; trace_cap = 0; trace_n = 0;
    });
}
