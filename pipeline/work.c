/* pipeline/work.c: dynamic load balancing of work units over MPI ranks. Rank 0 owns the queue and answers
 * requests between its own batches; the others keep up to two chunks of units queued and ask for more
 * before they run dry, so rank 0's answer latency (one batch at worst) is hidden; at the end of the queue,
 * one unit at a time (ENDGAME). Point-to-point
 * messages only: no one-sided windows, no progress thread, nothing the MPI library must progress on its
 * own while rank 0 computes. */
#include "pipeline/run.h"

#define TAG_REQ 101
#define TAG_REP 102
#define MAX_CHUNK 16
/* Rank 0 stops answering after this many empty probes in a row. One is not enough: a probe runs the MPI
 * progress engine once, which takes in only part of a burst of requests (Open MPI 4.1, shared memory), so
 * with 256 ranks the rest waited a whole batch more, again and again (bench/queue.sh: mean answer 1.4 s
 * for 0.2 s batches, workers 67% idle; with 64, 0.10 s and 4%). 64 probes cost about 64 us per batch. */
#define SERVE_MISSES 64
/* The end of the queue: once fewer than ENDGAME units per rank are left, chunks are one unit and a worker asks
 * for the next only when its own queue is empty. Asking ahead at four queued units, with chunks of a quarter of
 * what was left per rank, left a worker holding several units when the list ran out while rank 0 (which takes
 * one at a time) went idle: on the bench's 800-galaxy survey on 2 ranks the job ran about 10% behind the sum of
 * the ranks' own rates. At the end the answer's latency (one batch at worst) is covered by the unit the worker
 * has just taken. */
#define ENDGAME 8

/* the end of the queue, from the units left at rank 0 (as rank 0 knows them, or as its last answer said) */
static int endgame(int64_t left, int size)
{
    return left < ENDGAME * (int64_t)size;
}

typedef struct req_msg {
    double rows_done, rows_failed, units_done;
    double t_sent; /* the sender's CLOCK_MONOTONIC: answer latency for mc_work_stats (same-host clocks) */
} req_msg;
#define REQ_DOUBLES 4

struct mc_work {
    MPI_Comm comm;
    int rank, size;
    /* rank 0 */
    int64_t *todo, n_todo, next;
    int told_done;         /* workers told there is no more */
    mc_progress *reported; /* per rank */
    int stopped;
    /* every rank: local queue */
    int64_t queue[2 * MAX_CHUNK];
    int q_head, q_len;
    /* workers: the outstanding request */
    int waiting;
    req_msg req;
    int64_t reply[MAX_CHUNK + 2]; /* n, units left at rank 0 after this answer, then the n units */
    int64_t left_seen;            /* units left at rank 0, as of its last answer */
    MPI_Request sreq, rreq;
    int no_more;  /* stop asking: rank 0 said so, or this rank is stopping */
    int got_zero; /* rank 0 has answered "nothing left" (what it counts to finish) */
    mc_work_stats stats;
};

static int chunk_for(const mc_work *w)
{
    int64_t left = w->n_todo - w->next;
    if (endgame(left, w->size)) return 1;
    int64_t k = left / (2 * (int64_t)w->size);
    if (k < 1) k = 1;
    if (k > MAX_CHUNK) k = MAX_CHUNK;
    return (int)k;
}

/* Rank 0: take up to k units from the central list into out; returns how many. */
static int take(mc_work *w, int k, int64_t *out)
{
    int n = 0;
    while (n < k && !w->stopped && w->next < w->n_todo) out[n++] = w->todo[w->next++];
    return n;
}

mc_work *mc_work_init(MPI_Comm comm, const int64_t *todo, int64_t n_todo)
{
    mc_work *w = mc_calloc(1, sizeof *w);
    w->comm = comm;
    MPI_Comm_rank(comm, &w->rank);
    MPI_Comm_size(comm, &w->size);
    if (w->rank == 0) {
        w->n_todo = n_todo;
        w->todo = mc_malloc(sizeof(int64_t) * (size_t)(n_todo > 0 ? n_todo : 1));
        if (n_todo > 0) memcpy(w->todo, todo, sizeof(int64_t) * (size_t)n_todo);
        w->reported = mc_calloc((size_t)w->size, sizeof(mc_progress));
    }
    MPI_Bcast(&n_todo, 1, MPI_INT64_T, 0, comm);
    if (w->rank != 0) w->n_todo = n_todo;
    w->left_seen = n_todo;
    return w;
}

int64_t mc_work_total(const mc_work *w)
{
    return w->n_todo;
}

void mc_work_serve(mc_work *w)
{
    if (w->rank != 0) return;
    for (int misses = 0;;) {
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_REQ, w->comm, &flag, &st);
        if (!flag) {
            if (++misses >= SERVE_MISSES) return;
            continue;
        }
        misses = 0;
        req_msg r;
        const double t0 = mc_now();
        MPI_Recv(&r, REQ_DOUBLES, MPI_DOUBLE, st.MPI_SOURCE, TAG_REQ, w->comm, MPI_STATUS_IGNORE);
        w->reported[st.MPI_SOURCE] = (mc_progress){r.rows_done, r.rows_failed, r.units_done};
        int64_t rep[MAX_CHUNK + 2];
        int n = take(w, chunk_for(w), rep + 2);
        rep[0] = n;
        rep[1] = w->stopped ? 0 : w->n_todo - w->next;
        MPI_Send(rep, n + 2, MPI_INT64_T, st.MPI_SOURCE, TAG_REP, w->comm);
        if (n == 0) w->told_done++;
        const double t1 = mc_now(), lat = t1 - r.t_sent;
        mc_work_stats *s = &w->stats;
        s->requests++;
        s->serve_seconds += t1 - t0;
        s->latency_sum += lat;
        if (lat > s->latency_max) s->latency_max = lat;
        int b = 0;
        for (double edge = 1e-5; b < MC_WORK_HIST - 1 && lat >= edge; edge *= 2) b++;
        s->latency_hist[b]++;
    }
}

static void post_request(mc_work *w, const mc_progress *mine)
{
    w->req = (req_msg){mine->rows_done, mine->rows_failed, mine->units_done, mc_now()};
    MPI_Irecv(w->reply, MAX_CHUNK + 2, MPI_INT64_T, 0, TAG_REP, w->comm, &w->rreq);
    MPI_Isend(&w->req, REQ_DOUBLES, MPI_DOUBLE, 0, TAG_REQ, w->comm, &w->sreq);
    w->waiting = 1;
}

/* Wait for rank 0's answer without spinning: MPI_Wait busy-polls, which takes the core from this rank's own
 * loader thread (it shares the core) and, with more ranks than cores, from rank 0 itself, which then answers
 * everybody late (bench/queue.sh measured it: 256 ranks on 2 cores idled 67%). Test, then sleep 20 us
 * doubling up to 1 ms: at most about 1 ms added to an answer that takes up to one batch anyway. */
static void wait_reply(mc_work *w)
{
    long ns = 20000;
    for (;;) {
        int flag = 0;
        MPI_Test(&w->rreq, &flag, MPI_STATUS_IGNORE);
        if (flag) return;
        struct timespec ts = {0, ns};
        nanosleep(&ts, NULL);
        if (ns < 1000000) ns *= 2;
    }
}

static void absorb_reply(mc_work *w)
{
    MPI_Wait(&w->sreq, MPI_STATUS_IGNORE);
    w->waiting = 0;
    int n = (int)w->reply[0];
    MC_ASSERT(n >= 0 && n <= MAX_CHUNK);
    if (n == 0) w->no_more = w->got_zero = 1;
    w->left_seen = w->reply[1];
    for (int i = 0; i < n; i++) w->queue[(w->q_head + w->q_len++) % (2 * MAX_CHUNK)] = w->reply[2 + i];
}

int64_t mc_work_next(mc_work *w, const mc_progress *mine)
{
    if (w->rank == 0) {
        w->reported[0] = *mine;
        mc_work_serve(w);
        int64_t u;
        return take(w, 1, &u) == 1 ? u : -1;
    }
    if (w->waiting) { /* a reply may have arrived meanwhile */
        int flag = 0;
        MPI_Test(&w->rreq, &flag, MPI_STATUS_IGNORE);
        if (flag) absorb_reply(w);
    }
    if (w->q_len == 0 && !w->no_more) {
        if (!w->waiting) post_request(w, mine);
        const double t0 = mc_now();
        wait_reply(w);
        w->stats.waits++;
        w->stats.wait_seconds += mc_now() - t0;
        absorb_reply(w);
    }
    if (w->q_len == 0) return -1;
    int64_t u = w->queue[w->q_head];
    w->q_head = (w->q_head + 1) % (2 * MAX_CHUNK);
    w->q_len--;
    /* ask ahead while this unit is being computed (at the end only once the queue is empty) */
    const int ahead = endgame(w->left_seen, w->size) ? 0 : MAX_CHUNK / 4;
    if (w->q_len <= ahead && !w->waiting && !w->no_more) post_request(w, mine);
    return u;
}

void mc_work_stop(mc_work *w)
{
    w->stopped = 1;
    w->q_len = 0;
    w->no_more = 1;
}

mc_progress mc_work_global(const mc_work *w, const mc_progress *mine)
{
    mc_progress g = *mine;
    if (w->rank != 0) return g;
    for (int r = 1; r < w->size; r++) {
        g.rows_done += w->reported[r].rows_done;
        g.rows_failed += w->reported[r].rows_failed;
        g.units_done += w->reported[r].units_done;
    }
    return g;
}

void mc_work_stats_get(const mc_work *w, mc_work_stats *out)
{
    *out = w->stats;
}

void mc_work_finish(mc_work *w)
{
    if (w->rank == 0) {
        /* every worker ends by asking once more and being told there is nothing */
        w->stopped = 1;
        while (w->told_done < w->size - 1) {
            MPI_Status st;
            int flag = 0;
            MPI_Iprobe(MPI_ANY_SOURCE, TAG_REQ, w->comm, &flag, &st);
            if (flag)
                mc_work_serve(w);
            else {
                struct timespec ts = {0, 1000000};
                nanosleep(&ts, NULL);
            }
        }
    } else {
        /* drain an outstanding request, then ask until rank 0 says "nothing left", which it counts */
        if (w->waiting) {
            wait_reply(w);
            absorb_reply(w);
        }
        while (!w->got_zero) {
            mc_progress p = {0, 0, 0};
            post_request(w, &p);
            wait_reply(w);
            absorb_reply(w);
            /* units handed out now cannot be done (we are stopping): they stay pending for a resume */
            w->q_len = 0;
        }
    }
    free(w->todo);
    free(w->reported);
    free(w);
}
