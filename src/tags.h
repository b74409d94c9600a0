/*
 * tags: the delivery-tag ledger of the consume channel.  Which tags the
 * broker still counts as unacked, which of them taskd has settled (ack,
 * reject with or without requeue) but not yet told the broker, and the
 * fewest frames that tell it without settling anything else.
 *
 * The rule for those frames (a multiple ack or nack settles every tag up
 * to the one it names that the broker still holds):
 *   - the settled prefix of the ledger goes as runs of one kind, one frame
 *     per run with multiple set, naming the run's last tag: every tag
 *     before it that the broker still holds is in the run (earlier runs
 *     went in earlier frames, and tags sent alone are no longer held);
 *   - a settled tag behind the first open one goes alone, since a
 *     multiple frame there would settle the open (running) task too.
 * So a multiple frame never crosses an open tag, nor one of another kind.
 *
 * Tags come in increasing order (one channel).  Pure: no I/O; the caller
 * sends each frame tags_next gives and reports it with tags_sent.  The
 * ledger's memory is about twice the tags in flight, also while one long
 * task holds the front (tags sent alone are compacted away).
 */
#ifndef TASKD_TAGS_H
#define TASKD_TAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum tags_how {
	TAGS_ACK,        /* basic.ack */
	TAGS_REQUEUE,    /* reject with requeue */
	TAGS_DROP,       /* reject without requeue (dead-letter) */
};

struct tags;

/* An empty ledger, or NULL (no memory). */
struct tags *tags_new(void);
void tags_free(struct tags *t);
/* Forgets every tag (a new channel numbers from 1 again). */
void tags_clear(struct tags *t);

/* tag was delivered: open until settled.  Tags must increase.  Returns 0,
 * or -1 when out of memory (the tag is not recorded). */
int tags_open(struct tags *t, uint64_t tag);
/* The task of tag is settled.  Returns 0, or -1 when tag is not open
 * here (never delivered on this channel, or settled already: a caller's
 * bug that must not become a second ack). */
int tags_settle(struct tags *t, uint64_t tag, enum tags_how how);
/* Settled tags the broker has not been told of yet. */
size_t tags_settled(const struct tags *t);
/* Tags the broker still counts as unacked (open or settled, not sent). */
size_t tags_held(const struct tags *t);

/* One frame to send. */
struct tags_frame {
	uint64_t tag;
	enum tags_how how;
	bool multiple;
};
/* Starts a round of frames (a flush). */
void tags_round(struct tags *t);
/* The next frame of the round, or false when nothing settled is left to
 * tell.  Send it, then tags_sent; a frame not sent (no room) may simply
 * be asked for again in the next round. */
bool tags_next(struct tags *t, struct tags_frame *f);
/* f (the last tags_next gave) is on the wire. */
void tags_sent(struct tags *t, const struct tags_frame *f);

#endif
