/*
 * fuzz_ctlreq: the fleet-control request parser (src/ctlreq.c).  The first
 * byte picks the request type ("status", "cancel", "failover", or the next
 * byte's count of bytes as the type itself); the rest is the body.  Besides
 * memory errors it checks the contract: a cancel or a failover names 1 to
 * CTLREQ_MAX_IDS ids of 1 to CTLREQ_MAX_ID_LEN bytes without a NUL, a
 * failover's count is within 0..CTLREQ_MAX_BEFORE; a failure says why in
 * one line and leaves nothing to free.
 */
#include <string.h>

#include "ctlreq.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *type;
	size_t tlen;
	const uint8_t *body = data + 1;
	size_t blen = size - 1;
	switch (data[0] % 4) {
	case 0:
		type = "status";
		tlen = 6;
		break;
	case 1:
		type = "cancel";
		tlen = 6;
		break;
	case 3:
		type = "failover";
		tlen = 8;
		break;
	default:
		if (size < 2)
			return 0;
		tlen = data[1];
		if (tlen > size - 2)
			tlen = size - 2;
		type = (const char *)data + 2;
		body = data + 2 + tlen;
		blen = size - 2 - tlen;
		break;
	}
	struct ctlreq r;
	char err[256] = "";
	if (ctlreq_parse(type, tlen, body, blen, &r, err, sizeof(err)) == 0) {
		if (r.kind == CTLREQ_CANCEL || r.kind == CTLREQ_FAILOVER) {
			FUZZ_CHECK(r.kind == CTLREQ_CANCEL ||
			    (r.before >= 0 && r.before <= CTLREQ_MAX_BEFORE));
			FUZZ_CHECK(r.nids >= 1 && r.nids <= CTLREQ_MAX_IDS);
			for (size_t i = 0; i < r.nids; i++) {
				size_t n = strlen(r.ids[i]);
				FUZZ_CHECK(n >= 1 && n <= CTLREQ_MAX_ID_LEN);
			}
		} else {
			FUZZ_CHECK(r.kind == CTLREQ_STATUS && r.nids == 0 && r.ids == NULL);
		}
		ctlreq_free(&r);
	} else {
		FUZZ_CHECK(err[0] != '\0' && strchr(err, '\n') == NULL);
		FUZZ_CHECK(r.ids == NULL && r.nids == 0);
	}
	return 0;
}
