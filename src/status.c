/* status.c - `handoff status`: the admin endpoint's state as terminal tables (listeners, routes, upstreams, refusals, accepting threads). */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "status.h"

#define STATUS_MAX_BODY (16u * 1024 * 1024)	/* far above any snapshot the daemon builds */
#define STATUS_TIMEOUT_S 5L
#define TABLE_MAX_COLUMNS 12

static const char status_usage[] =
	"usage: handoff status [-c FILE | --admin ADDRESS] [--json]\n"
	"  -c FILE          read the admin address from the daemon's configuration\n"
	"  --admin ADDRESS  127.0.0.1:9180, [::1]:9180 or unix:/run/handoff/admin.sock\n"
	"  --json           print the admin endpoint's JSON (/api) instead of tables\n";

struct body {
	char *data;
	size_t len;
};

static size_t
on_body(char *chunk, size_t size, size_t n, void *arg)
{
	struct body *b = arg;
	size_t add = size * n;
	if (add > STATUS_MAX_BODY - b->len)
		return 0;	/* curl reports a write error */
	char *grown = realloc(b->data, b->len + add + 1);
	if (grown == NULL)
		return 0;
	memcpy(grown + b->len, chunk, add);
	b->data = grown;
	b->len += add;
	b->data[b->len] = '\0';
	return add;
}

/* GET /api from the admin endpoint at address (the directive's syntax). */
static json_t *
fetch_state(const char *address, const char *where)
{
	char url[256];
	const char *unix_path = NULL;
	if (strncmp(address, "unix:", 5) == 0) {
		unix_path = address + 5;
		snprintf(url, sizeof(url), "http://localhost/api");
	} else {
		/* A wildcard admin address is reached on loopback. */
		if (strncmp(address, "0.0.0.0:", 8) == 0)
			snprintf(url, sizeof(url), "http://127.0.0.1:%s/api", address + 8);
		else if (strncmp(address, "[::]:", 5) == 0)
			snprintf(url, sizeof(url), "http://[::1]:%s/api", address + 5);
		else
			snprintf(url, sizeof(url), "http://%s/api", address);
	}
	CURL *curl = curl_easy_init();
	if (curl == NULL) {
		fprintf(stderr, "handoff status: cannot start libcurl\n");
		return NULL;
	}
	struct body body = { 0 };
	char curl_err[CURL_ERROR_SIZE] = "";
	curl_easy_setopt(curl, CURLOPT_URL, url);
	if (unix_path != NULL)
		curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, unix_path);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, STATUS_TIMEOUT_S);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_err);
	CURLcode rc = curl_easy_perform(curl);
	long code = 0;
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(curl);
	json_t *state = NULL;
	if (rc != CURLE_OK) {
		fprintf(stderr, "handoff status: cannot reach the admin endpoint at %s%s: %s (is 'handoff serve' "
			"running with an 'admin' line%s?)\n", address, where, curl_err[0] ? curl_err : curl_easy_strerror(rc),
			where[0] ? " as configured" : "");
	} else if (code != 200) {
		fprintf(stderr, "handoff status: the admin endpoint at %s answered HTTP %ld: %.200s\n", address, code,
			body.data ? body.data : "");
	} else {
		json_error_t jerr;
		state = json_loadb(body.data ? body.data : "", body.len, 0, &jerr);
		if (state == NULL || !json_is_object(state)) {
			fprintf(stderr, "handoff status: %s did not answer with the admin JSON (%s)\n", address,
				jerr.text);
			json_decref(state);
			state = NULL;
		}
	}
	free(body.data);
	return state;
}

/* A table: rows of at most TABLE_MAX_COLUMNS cells, printed with each
 * column as wide as its widest cell. */
struct table {
	size_t n_columns;
	char ***rows;
	size_t n_rows;
};

static void
table_row(struct table *t, const char *const *cells)
{
	char ***grown = realloc(t->rows, (t->n_rows + 1) * sizeof(*grown));
	if (grown == NULL)
		return;
	t->rows = grown;
	char **row = calloc(t->n_columns, sizeof(*row));
	if (row == NULL)
		return;
	for (size_t i = 0; i < t->n_columns; i++)
		row[i] = strdup(cells[i] ? cells[i] : "-");
	t->rows[t->n_rows++] = row;
}

static void
table_print(struct table *t, const char *title)
{
	size_t width[TABLE_MAX_COLUMNS] = { 0 };
	printf("\n%s\n", title);
	for (size_t r = 0; r < t->n_rows; r++)
		for (size_t c = 0; c < t->n_columns; c++)
			if (t->rows[r][c] != NULL && strlen(t->rows[r][c]) > width[c])
				width[c] = strlen(t->rows[r][c]);
	for (size_t r = 0; r < t->n_rows; r++) {
		for (size_t c = 0; c < t->n_columns; c++) {
			const char *cell = t->rows[r][c] ? t->rows[r][c] : "";
			if (c + 1 == t->n_columns)
				printf("%s", cell);
			else
				printf("%-*s  ", (int)width[c], cell);
		}
		printf("\n");
		for (size_t c = 0; c < t->n_columns; c++)
			free(t->rows[r][c]);
		free(t->rows[r]);
	}
	if (t->n_rows == 1)
		printf("(none)\n");
	free(t->rows);
	t->rows = NULL;
	t->n_rows = 0;
}

static const char *
num(char *buf, size_t size, const json_t *v)
{
	if (json_is_integer(v))
		snprintf(buf, size, "%lld", (long long)json_integer_value(v));
	else if (json_is_boolean(v))
		snprintf(buf, size, "%s", json_is_true(v) ? "yes" : "no");
	else if (json_is_string(v))
		snprintf(buf, size, "%s", json_string_value(v));
	else
		snprintf(buf, size, "-");
	return buf;
}

static const char *
duration(char *buf, size_t size, double seconds)
{
	unsigned long s = seconds > 0 ? (unsigned long)seconds : 0;
	if (s >= 86400)
		snprintf(buf, size, "%lud%luh", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(buf, size, "%luh%02lum", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(buf, size, "%lum%02lus", s / 60, s % 60);
	else
		snprintf(buf, size, "%lus", s);
	return buf;
}

static const char *const outcome_columns[] = {
	"handoff", "relayed", "no-route", "invalid", "timeout", "refused", "closed", "failed",
};
#define N_OUTCOME_COLUMNS (sizeof(outcome_columns) / sizeof(outcome_columns[0]))

static void
print_listeners(const json_t *state)
{
	struct table t = { .n_columns = 4 + N_OUTCOME_COLUMNS };
	const char *head[TABLE_MAX_COLUMNS] = { "ADDRESS", "PROTO", "ACCEPTED", "PEEKING" };
	char upper[N_OUTCOME_COLUMNS][16];
	for (size_t i = 0; i < N_OUTCOME_COLUMNS; i++) {
		size_t k = 0;
		for (; outcome_columns[i][k] && k + 1 < sizeof(upper[i]); k++)
			upper[i][k] = (char)(outcome_columns[i][k] >= 'a' && outcome_columns[i][k] <= 'z'
				? outcome_columns[i][k] - 32 : outcome_columns[i][k]);
		upper[i][k] = '\0';
		head[4 + i] = upper[i];
	}
	table_row(&t, head);
	size_t i;
	const json_t *l;
	json_array_foreach(json_object_get(state, "listeners"), i, l) {
		char cells[TABLE_MAX_COLUMNS][32];
		const char *row[TABLE_MAX_COLUMNS] = {
			json_string_value(json_object_get(l, "address")),
			json_string_value(json_object_get(l, "protocol")),
			num(cells[2], sizeof(cells[2]), json_object_get(l, "accepted")),
			num(cells[3], sizeof(cells[3]), json_object_get(l, "peeking")),
		};
		const json_t *outcomes = json_object_get(l, "outcomes");
		for (size_t k = 0; k < N_OUTCOME_COLUMNS; k++)
			row[4 + k] = num(cells[4 + k], sizeof(cells[4 + k]), json_object_get(outcomes, outcome_columns[k]));
		table_row(&t, row);
	}
	table_print(&t, "LISTENERS");
}

static void
print_routes(const json_t *state)
{
	struct table t = { .n_columns = 10 };
	const char *head[] = { "ROUTE", "TARGET", "KIND", "STATE", "HEALTHY", "WEIGHT", "ACTIVE", "WAITING",
			       "DELIVERED", "FAILURES" };
	table_row(&t, head);
	size_t i, k;
	const json_t *r, *tg;
	json_array_foreach(json_object_get(state, "routes"), i, r) {
		const json_t *targets = json_object_get(r, "targets");
		if (json_array_size(targets) == 0) {
			const char *row[] = { json_string_value(json_object_get(r, "name")), "(no target)", NULL, NULL,
					      NULL, NULL, NULL, NULL, NULL, NULL };
			table_row(&t, row);
		}
		json_array_foreach(targets, k, tg) {
			char c[8][32];
			const char *row[] = {
				k == 0 ? json_string_value(json_object_get(r, "name")) : "",
				json_string_value(json_object_get(tg, "target")),
				json_string_value(json_object_get(tg, "kind")),
				json_string_value(json_object_get(tg, "state")),
				num(c[0], sizeof(c[0]), json_object_get(tg, "healthy")),
				num(c[1], sizeof(c[1]), json_object_get(tg, "weight")),
				num(c[2], sizeof(c[2]), json_object_get(tg, "active")),
				num(c[3], sizeof(c[3]), json_object_get(tg, "waiting")),
				num(c[4], sizeof(c[4]), json_object_get(tg, "delivered")),
				num(c[5], sizeof(c[5]), json_object_get(tg, "failures")),
			};
			table_row(&t, row);
		}
	}
	table_print(&t, "ROUTES");
}

static void
print_upstreams(const json_t *state)
{
	struct table t = { .n_columns = 8 };
	const char *head[] = { "UPSTREAM", "UID", "NAMES", "ONLY", "STATE", "QUEUE", "DELIVERED", "AGE" };
	table_row(&t, head);
	size_t i, k;
	const json_t *u, *name;
	json_array_foreach(json_object_get(state, "upstreams"), i, u) {
		char names[512] = "", only[32] = "", c[4][32];
		size_t off = 0;
		json_array_foreach(json_object_get(u, "names"), k, name) {
			int n = snprintf(names + off, sizeof(names) - off, "%s%s", k ? "," : "", json_string_value(name));
			if (n < 0 || (size_t)n >= sizeof(names) - off)
				break;
			off += (size_t)n;
		}
		const char *proto = json_string_value(json_object_get(u, "protocol"));
		const char *family = json_string_value(json_object_get(u, "family"));
		snprintf(only, sizeof(only), "%s%s%s", proto ? proto : "", proto && family ? "," : "",
			 family ? family : "");
		const char *row[] = {
			json_string_value(json_object_get(u, "id")),
			num(c[0], sizeof(c[0]), json_object_get(u, "uid")),
			names,
			only[0] ? only : "-",
			json_string_value(json_object_get(u, "state")),
			num(c[1], sizeof(c[1]), json_object_get(u, "queue_depth")),
			num(c[2], sizeof(c[2]), json_object_get(u, "delivered")),
			duration(c[3], sizeof(c[3]), (double)json_integer_value(json_object_get(u, "age_seconds"))),
		};
		table_row(&t, row);
	}
	table_print(&t, "UPSTREAMS");
}

static void
print_refusals(const json_t *state)
{
	struct table t = { .n_columns = 4 };
	const char *head[] = { "REFUSED", "UID", "AGE", "REASON" };
	table_row(&t, head);
	size_t i;
	const json_t *f;
	json_array_foreach(json_object_get(state, "refusals"), i, f) {
		char c[2][32];
		const char *row[] = {
			json_string_value(json_object_get(f, "id")),
			num(c[0], sizeof(c[0]), json_object_get(f, "uid")),
			duration(c[1], sizeof(c[1]), (double)json_integer_value(json_object_get(f, "age_seconds"))),
			json_string_value(json_object_get(f, "reason")),
		};
		table_row(&t, row);
	}
	table_print(&t, "REFUSED CLAIMS");
}

/* With `workers` 2 or more: what each accepting thread took. */
static void
print_workers(const json_t *state)
{
	const json_t *workers = json_object_get(state, "workers");
	if (json_array_size(workers) == 0)
		return;
	struct table t = { .n_columns = 4 };
	const char *head[] = { "THREAD", "STATE", "HANDED OFF", "PASSED TO LOOP" };
	table_row(&t, head);
	size_t i;
	const json_t *w;
	json_array_foreach(workers, i, w) {
		char c[3][32];
		const char *row[] = {
			num(c[0], sizeof(c[0]), json_object_get(w, "worker")),
			json_is_true(json_object_get(w, "running")) ? "running" : "stopped",
			num(c[1], sizeof(c[1]), json_object_get(w, "handed_off")),
			num(c[2], sizeof(c[2]), json_object_get(w, "passed")),
		};
		table_row(&t, row);
	}
	table_print(&t, "ACCEPTING THREADS");
}

static void
print_state(const json_t *state)
{
	const json_t *d = json_object_get(state, "daemon"), *totals = json_object_get(state, "totals");
	char up[32];
	printf("handoff %s  pid %lld  up %s  config %s  admin %s  workers %lld\n",
	       json_string_value(json_object_get(d, "version")), (long long)json_integer_value(json_object_get(d, "pid")),
	       duration(up, sizeof(up), json_real_value(json_object_get(d, "uptime_seconds"))),
	       json_string_value(json_object_get(d, "config")), json_string_value(json_object_get(d, "admin")),
	       (long long)json_integer_value(json_object_get(d, "workers")));
	printf("descriptors %lld  resident %.1f MiB  accepted %lld  peeking %lld  waiting %lld  relaying %lld\n",
	       (long long)json_integer_value(json_object_get(d, "open_fds")),
	       (double)json_integer_value(json_object_get(d, "rss_bytes")) / (1024.0 * 1024.0),
	       (long long)json_integer_value(json_object_get(totals, "accepted")),
	       (long long)json_integer_value(json_object_get(totals, "peeking")),
	       (long long)json_integer_value(json_object_get(totals, "waiting")),
	       (long long)json_integer_value(json_object_get(totals, "relaying")));
	print_listeners(state);
	print_routes(state);
	print_upstreams(state);
	print_refusals(state);
	print_workers(state);
}

int
cmd_status(int argc, char **argv)
{
	const char *config_path = NULL, *address = NULL;
	bool as_json = false;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
			config_path = argv[++i];
		} else if (strcmp(a, "--admin") == 0 && i + 1 < argc) {
			address = argv[++i];
		} else if (strcmp(a, "--json") == 0) {
			as_json = true;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			fputs(status_usage, stdout);
			return 0;
		} else {
			fprintf(stderr, "handoff status: unexpected argument '%s'\n%s", a, status_usage);
			return 2;
		}
	}
	if ((config_path == NULL) == (address == NULL)) {
		fprintf(stderr, "handoff status: give either -c FILE or --admin ADDRESS\n%s", status_usage);
		return 2;
	}
	char where[PATH_MAX + 32] = "";
	char from_config[160];
	if (config_path != NULL) {
		struct config cfg;
		char err[1024];
		if (config_load_file(config_path, &cfg, err, sizeof(err)) < 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		bool enabled = cfg.admin.enabled;
		snprintf(from_config, sizeof(from_config), "%s", cfg.admin.text);
		snprintf(where, sizeof(where), " (%s:%d)", config_path, cfg.admin.line);
		config_free(&cfg);
		if (!enabled) {
			fprintf(stderr, "handoff status: %s has no 'admin' line, so the admin endpoint is off (add e.g. "
				"'admin 127.0.0.1:9180' and restart the daemon)\n", config_path);
			return 1;
		}
		address = from_config;
	}
	if (curl_global_init(CURL_GLOBAL_NOTHING) != CURLE_OK) {
		fprintf(stderr, "handoff status: cannot start libcurl\n");
		return 1;
	}
	json_t *state = fetch_state(address, where);
	curl_global_cleanup();
	if (state == NULL)
		return 1;
	if (as_json) {
		json_dumpf(state, stdout, JSON_INDENT(2));
		putchar('\n');
	} else {
		print_state(state);
	}
	json_decref(state);
	return 0;
}
