/* workers.c: the crypto worker pool. */
#include "workers.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "kh_log.h"

struct kh_workers {
  pthread_mutex_t mu; /* head, tail, refuse, stop */
  pthread_cond_t cond;
  kh_job *head, *tail;
  int refuse;
  int stop; /* threads exit once the queue is empty */
  kh_job_fn run;
  void *arg;
  pthread_t *threads;
  unsigned n;
};

static void *worker_main(void *p) {
  kh_workers *w = p;
  for (;;) {
    pthread_mutex_lock(&w->mu);
    while (w->head == NULL && !w->stop) pthread_cond_wait(&w->cond, &w->mu);
    kh_job *job = w->head;
    if (job != NULL) {
      w->head = job->next;
      if (w->head == NULL) w->tail = NULL;
      job->next = NULL;
    }
    int refuse = w->refuse;
    pthread_mutex_unlock(&w->mu);
    if (job == NULL) return NULL;
    w->run(job, refuse, w->arg);
  }
}

kh_workers *kh_workers_start(unsigned n, kh_job_fn run, void *arg) {
  if (n == 0) return NULL;
  kh_workers *w = calloc(1, sizeof(*w));
  if (w == NULL || (w->threads = calloc(n, sizeof(*w->threads))) == NULL) {
    free(w);
    kh_log(KH_LOG_WARN, "out of memory: no crypto worker threads");
    return NULL;
  }
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cond, NULL);
  w->run = run;
  w->arg = arg;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  while (w->n < n && pthread_create(&w->threads[w->n], NULL, worker_main, w) == 0) {
    char name[16];
    snprintf(name, sizeof(name), "kh-crypto-%u", w->n % 100u);
    pthread_setname_np(w->threads[w->n], name);
    w->n++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (w->n < n) kh_log(KH_LOG_WARN, "only %u of %u crypto worker threads started", w->n, n);
  if (w->n == 0) {
    kh_workers_stop(w);
    return NULL;
  }
  return w;
}

void kh_workers_push(kh_workers *w, kh_job *job) {
  pthread_mutex_lock(&w->mu);
  job->next = NULL;
  if (w->tail)
    w->tail->next = job;
  else
    w->head = job;
  w->tail = job;
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->mu);
}

void kh_workers_refuse(kh_workers *w) {
  if (w == NULL) return;
  pthread_mutex_lock(&w->mu);
  w->refuse = 1;
  pthread_mutex_unlock(&w->mu);
}

void kh_workers_stop(kh_workers *w) {
  if (w == NULL) return;
  pthread_mutex_lock(&w->mu);
  w->stop = 1;
  pthread_cond_broadcast(&w->cond);
  pthread_mutex_unlock(&w->mu);
  for (unsigned i = 0; i < w->n; i++) pthread_join(w->threads[i], NULL);
  pthread_cond_destroy(&w->cond);
  pthread_mutex_destroy(&w->mu);
  free(w->threads);
  free(w);
}

unsigned kh_workers_count(const kh_workers *w) {
  return w ? w->n : 0;
}
