/* upstream_id.c - the strict character set of upstream ids, with a rate-limited complaint. */
#include <string.h>
#include <time.h>

#include "log.h"
#include "upstream_id.h"

bool
upstream_id_valid(const char *id)
{
	size_t len = strnlen(id, UPSTREAM_ID_MAX + 1);

	if (len == 0 || len > UPSTREAM_ID_MAX || id[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		      || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

bool
upstream_id_accept(const char *id)
{
	static time_t last_logged;
	static unsigned long unsaid;
	struct timespec now;

	if (upstream_id_valid(id))
		return true;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (last_logged != 0 && now.tv_sec - last_logged < UPSTREAM_ID_LOG_INTERVAL_S) {
		unsaid++;
		return false;
	}
	/* log.c escapes the name, so it cannot forge a line. */
	log_warnx("ignoring upstream file id '%.*s': ids are 1-%d characters of A-Z a-z 0-9 . _ -, "
		  "not starting with '.' (%lu more ignored since the last such line)",
		  UPSTREAM_ID_MAX + 1, id, UPSTREAM_ID_MAX, unsaid);
	last_logged = now.tv_sec != 0 ? now.tv_sec : 1;
	unsaid = 0;
	return false;
}
