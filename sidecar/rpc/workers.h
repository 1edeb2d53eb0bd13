/* workers.h: keyholdd's crypto worker threads, a FIFO of jobs and N threads
 * that run them. A job is a node embedded in the caller's object; the pool
 * never frees it. Workers block every signal (the event loop's thread takes
 * SIGTERM/SIGHUP). */
#ifndef KH_WORKERS_H
#define KH_WORKERS_H

#include "kh_error.h"

typedef struct kh_job {
  struct kh_job *next;
} kh_job;

/* |run| is called on a worker thread with no pool lock held. |refuse| is set
 * once kh_workers_refuse was called: answer the job without doing it. */
typedef void (*kh_job_fn)(kh_job *job, int refuse, void *arg);

typedef struct kh_workers kh_workers;

/* kh_workers_start starts up to |n| threads (fewer if threads cannot be
 * made, with a log line). NULL when |n| is 0 or none started: run inline. */
KH_MUST_USE kh_workers *kh_workers_start(unsigned n, kh_job_fn run, void *arg);

/* kh_workers_push queues |job| (at most once until it has run). */
void kh_workers_push(kh_workers *w, kh_job *job);

/* kh_workers_refuse: shutting down; jobs still queued run with |refuse|. */
void kh_workers_refuse(kh_workers *w);

/* kh_workers_stop runs what is queued, joins every thread and frees. */
void kh_workers_stop(kh_workers *w);

unsigned kh_workers_count(const kh_workers *w);

#endif /* KH_WORKERS_H */
