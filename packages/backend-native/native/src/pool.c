/*
 * The thread pool: the calling thread plus n - 1 workers share each job's tasks. A job is published as a ticket
 * (generation << 32 | next task); every thread takes tasks with a compare-and-swap on it until none is left, so a
 * worker that wakes late (or never, this round) only means the others take more tasks. Workers spin for a while
 * (`spin_ns`) before sleeping on a condition variable; the caller returns when every task of its job is done.
 * Which thread computes a task never changes its result: tasks write disjoint outputs with the same code.
 */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#define MN_PAUSE() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define MN_PAUSE() __asm__ volatile("yield")
#else
#define MN_PAUSE() ((void)0)
#endif

struct mn_pool {
  int n;
  int64_t spin_ns;
  pthread_t *threads;
  _Atomic uint64_t ticket;
  _Atomic int64_t done;
  _Atomic int sleepers;
  _Atomic int stop;
  mn_task fn;
  void *arg;
  int64_t ntasks;
  pthread_mutex_t mu;
  pthread_cond_t cv;
};

typedef struct {
  mn_pool *pool;
  int index;
} worker_arg;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void run_tasks(mn_pool *p, uint32_t gen, int thread) {
  for (;;) {
    uint64_t t = atomic_load(&p->ticket);
    if ((uint32_t)(t >> 32) != gen) return;
    uint64_t idx = t & 0xffffffffu;
    if ((int64_t)idx >= p->ntasks) return;
    if (!atomic_compare_exchange_weak(&p->ticket, &t, t + 1)) continue;
    p->fn(p->arg, (int64_t)idx, thread);
    atomic_fetch_add(&p->done, 1);
  }
}

static void *worker_main(void *varg) {
  worker_arg wa = *(worker_arg *)varg;
  free(varg);
  mn_pool *p = wa.pool;
  uint32_t seen = (uint32_t)(atomic_load(&p->ticket) >> 32);
  for (;;) {
    int64_t start = 0;
    int spins = 0;
    while ((uint32_t)(atomic_load(&p->ticket) >> 32) == seen && !atomic_load(&p->stop)) {
      if (p->spin_ns > 0) {
        if (start == 0) start = now_ns();
        MN_PAUSE();
        if (++spins % 64 != 0 || now_ns() - start < p->spin_ns) continue;
      }
      pthread_mutex_lock(&p->mu);
      atomic_fetch_add(&p->sleepers, 1);
      while ((uint32_t)(atomic_load(&p->ticket) >> 32) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->cv, &p->mu);
      atomic_fetch_sub(&p->sleepers, 1);
      pthread_mutex_unlock(&p->mu);
    }
    if (atomic_load(&p->stop)) return NULL;
    seen = (uint32_t)(atomic_load(&p->ticket) >> 32);
    run_tasks(p, seen, wa.index);
  }
}

mn_pool *mn_pool_create(int threads, int64_t spin_ns) {
  if (threads < 1) threads = 1;
  mn_pool *p = (mn_pool *)calloc(1, sizeof *p);
  if (!p) return NULL;
  p->n = threads;
  p->spin_ns = spin_ns;
  atomic_init(&p->ticket, 0);
  atomic_init(&p->done, 0);
  atomic_init(&p->sleepers, 0);
  atomic_init(&p->stop, 0);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  if (threads > 1) {
    p->threads = (pthread_t *)calloc((size_t)threads - 1, sizeof(pthread_t));
    if (!p->threads) {
      mn_pool_destroy(p);
      return NULL;
    }
    for (int i = 1; i < threads; i++) {
      worker_arg *wa = (worker_arg *)malloc(sizeof *wa);
      int ok = wa != NULL;
      if (ok) {
        wa->pool = p;
        wa->index = i;
        ok = pthread_create(&p->threads[i - 1], NULL, worker_main, wa) == 0;
        if (!ok) free(wa);
      }
      if (!ok) {
        p->n = i; /* the workers started so far */
        mn_pool_destroy(p);
        return NULL;
      }
    }
  }
  return p;
}

int mn_pool_threads(const mn_pool *p) { return p->n; }

void mn_pool_run(mn_pool *p, mn_task fn, void *arg, int64_t ntasks) {
  if (ntasks <= 0) return;
  if (p->n == 1 || ntasks == 1) {
    for (int64_t i = 0; i < ntasks; i++) fn(arg, i, 0);
    return;
  }
  p->fn = fn;
  p->arg = arg;
  p->ntasks = ntasks;
  atomic_store(&p->done, 0);
  uint32_t gen = (uint32_t)(atomic_load(&p->ticket) >> 32) + 1;
  atomic_store(&p->ticket, (uint64_t)gen << 32);
  if (atomic_load(&p->sleepers) > 0) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
  }
  run_tasks(p, gen, 0);
  int spins = 0;
  while (atomic_load(&p->done) < ntasks) {
    MN_PAUSE();
    if (++spins > 4096) {
      sched_yield();
      spins = 0;
    }
  }
}

void mn_pool_destroy(mn_pool *p) {
  if (!p) return;
  atomic_store(&p->stop, 1);
  pthread_mutex_lock(&p->mu);
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->n; i++) pthread_join(p->threads[i - 1], NULL);
  free(p->threads);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p);
}
