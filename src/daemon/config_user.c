/* config_user.c - the `user` and `group` lines: who the daemon becomes once its sockets are open. */
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_internal.h"

int
parse_user(struct parser *p, const char *word)
{
	struct config *cfg = p->cfg;
	static const char hint[] = "expected a user name from the passwd database or a numeric uid";
	unsigned id;
	if (strlen(word) >= sizeof(cfg->user))
		return fail(p, "user: name too long (%s)", hint);
	const struct passwd *pw = NULL;
	if (word[0] >= '0' && word[0] <= '9') {
		if (!parse_id(word, &id))
			return fail(p, "user: bad uid '%s' (%s)", word, hint);
		pw = getpwuid((uid_t)id);
		cfg->user_uid = (uid_t)id;
	} else {
		pw = getpwnam(word);
		if (pw == NULL)
			return fail(p, "user: unknown user '%s' (%s; create it with "
				    "'useradd --system --no-create-home %s')", word, hint, word);
		cfg->user_uid = pw->pw_uid;
	}
	if (cfg->user_uid == 0)
		return fail(p, "user: '%s' is root, which gives nothing up (name an unprivileged user, "
			    "or remove the line)", word);
	/* A numeric uid without a passwd entry has no primary group: `group`
	 * must name one (checked once the whole file is read). */
	if (pw != NULL && cfg->group[0] == '\0')
		cfg->user_gid = pw->pw_gid;
	strcpy(cfg->user, word);
	cfg->user_line = p->line;
	return 0;
}

int
parse_group(struct parser *p, const char *word)
{
	struct config *cfg = p->cfg;
	static const char hint[] = "expected a group name from the group database or a numeric gid";
	unsigned id;
	if (strlen(word) >= sizeof(cfg->group))
		return fail(p, "group: name too long (%s)", hint);
	if (word[0] >= '0' && word[0] <= '9') {
		if (!parse_id(word, &id))
			return fail(p, "group: bad gid '%s' (%s)", word, hint);
		cfg->user_gid = (gid_t)id;
	} else {
		const struct group *gr = getgrnam(word);
		if (gr == NULL)
			return fail(p, "group: unknown group '%s' (%s)", word, hint);
		cfg->user_gid = gr->gr_gid;
	}
	if (cfg->user_gid == 0)
		return fail(p, "group: '%s' is root's group, which gives nothing up (name an unprivileged "
			    "group, or remove the line)", word);
	strcpy(cfg->group, word);
	return 0;
}

/* `group` needs `user`; a numeric uid without a passwd entry needs `group`.
 * Then `self` in grants becomes the user the daemon serves as. */
int
finish_user(struct parser *p, int group_line)
{
	struct config *cfg = p->cfg;
	if (cfg->group[0] != '\0' && cfg->user[0] == '\0') {
		p->line = group_line;
		return fail(p, "group: needs a 'user' line too (the daemon changes its user and group together)");
	}
	if (cfg->user[0] != '\0' && cfg->group[0] == '\0' && getpwuid(cfg->user_uid) == NULL) {
		p->line = cfg->user_line;
		return fail(p, "user: uid %s has no passwd entry, so no primary group (add a 'group' line)",
			    cfg->user);
	}
	uid_t self = config_service_uid(cfg);
	for (size_t i = 0; i < cfg->n_grants; i++)
		for (size_t k = 0; k < cfg->grants[i].n_uids; k++)
			if (cfg->grants[i].uids[k] == SELF_UID)
				cfg->grants[i].uids[k] = self;
	return 0;
}

uid_t
config_service_uid(const struct config *cfg)
{
	return cfg->user[0] != '\0' ? cfg->user_uid : geteuid();
}

gid_t
config_service_gid(const struct config *cfg)
{
	return cfg->user[0] != '\0' ? cfg->user_gid : getegid();
}
