#ifndef MN_POOL_H
#define MN_POOL_H

#include <stdint.h>

typedef void (*mn_task)(void *arg, int64_t task, int thread);
typedef struct mn_pool mn_pool;

/* `threads` in total (the caller included); workers spin `spin_ns` before sleeping. NULL when threads fail to start. */
mn_pool *mn_pool_create(int threads, int64_t spin_ns);
int mn_pool_threads(const mn_pool *p);
/* Runs fn(arg, task, thread) for every task in [0, ntasks) across the threads (thread 0 = the caller); returns when all are done. */
void mn_pool_run(mn_pool *p, mn_task fn, void *arg, int64_t ntasks);
void mn_pool_destroy(mn_pool *p);

#endif
