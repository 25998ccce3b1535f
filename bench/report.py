#!/usr/bin/env python3
"""report.py - turn bench/run.sh's raw results into the Markdown tables of docs/performance.md.

Usage: report.py MACHINE.tsv RESULTS.tsv

MACHINE.tsv holds "key<TAB>value" lines describing the machine and the run's
parameters; RESULTS.tsv holds "kind<TAB>path<TAB>round<TAB>key<TAB>value"
lines, one per figure that run.sh recorded.

Every table has one column per path. Rates and latencies are the median over
the rounds, with the range (min-max) below; CPU per connection, per request
or per GiB is the total CPU time over all rounds divided by the total count,
because one round's CPU time is only known to a clock tick (10 ms). Each
figure is followed by its ratio to direct and to the best peer (the best of
HAProxy, sniproxy and nginx stream for that figure).
"""
import collections
import statistics
import sys

PATHS = ["direct", "handoff", "relay", "haproxy", "sniproxy", "nginx-stream"]
PEERS = ["haproxy", "sniproxy", "nginx-stream"]
HEADINGS = {
	"direct": "direct",
	"handoff": "handoff",
	"relay": "handoff relay",
	"haproxy": "HAProxy",
	"sniproxy": "sniproxy",
	"nginx-stream": "nginx stream",
}
GIB = 1 << 30
# Foreign CPU use (% of one core) above which a measurement counts as disturbed.
DISTURBED_PERCENT = 10
NA = "—"


def read_machine(path):
	machine = {}
	with open(path) as f:
		for line in f:
			key, _, value = line.rstrip("\n").partition("\t")
			machine[key] = value
	return machine


def read_results(path):
	"""results[kind][path][key] -> list of float values, in round order."""
	results = collections.defaultdict(lambda: collections.defaultdict(lambda: collections.defaultdict(list)))
	with open(path) as f:
		for line in f:
			kind, name, _round, key, value = line.rstrip("\n").split("\t")
			results[kind][name][key].append(float(value))
	return results


def percentile(values, fraction):
	"""The nearest-rank percentile of values."""
	ordered = sorted(values)
	rank = max(1, round(fraction * len(ordered) + 0.4999))
	return ordered[min(rank, len(ordered)) - 1]


def fmt(value, digits):
	return f"{value:,.{digits}f}"


def table(rows):
	header = [""] + [HEADINGS[p] for p in PATHS]
	lines = ["| " + " | ".join(header) + " |",
		 "|---|" + "|".join("---:" for _ in PATHS) + "|"]
	lines += ["| " + " | ".join(row) + " |" for row in rows]
	return "\n".join(lines)


class Figure:
	"""One figure per path (None where a path has none), with its rows."""

	def __init__(self, label, values, digits, higher_is_better, spread=None):
		self.label = label
		self.values = values		# path -> float or None
		self.digits = digits
		self.higher = higher_is_better
		self.spread = spread		# path -> (min, max) or None

	def best_peer(self):
		peers = [self.values[p] for p in PEERS if self.values.get(p) is not None]
		if not peers:
			return None
		return max(peers) if self.higher else min(peers)

	def rows(self, versus_direct=True):
		cells = [NA if self.values.get(p) is None else fmt(self.values[p], self.digits) for p in PATHS]
		rows = [[self.label] + cells]
		if self.spread:
			rows.append(["  min–max"] + [
				NA if self.spread.get(p) is None else
				f"{fmt(self.spread[p][0], self.digits)}–{fmt(self.spread[p][1], self.digits)}"
				for p in PATHS])
		direct = self.values.get("direct")
		if versus_direct and direct:
			rows.append(["  ÷ direct"] + [ratio(self.values.get(p), direct) for p in PATHS])
		best = self.best_peer()
		if best:
			rows.append(["  ÷ best peer"] + [ratio(self.values.get(p), best) for p in PATHS])
		return rows


def ratio(value, base):
	if value is None or not base:
		return NA
	return f"{value / base:.2f}"


def median_figure(runs, key, label, digits, higher, paths=PATHS):
	values, spread = {}, {}
	for p in paths:
		v = runs[p][key] if p in runs else []
		if v:
			values[p] = statistics.median(v)
			spread[p] = (min(v), max(v))
	return Figure(label, values, digits, higher, spread)


def per_unit_figure(runs, cpu_key, count_key, scale, label, digits, paths):
	"""Total CPU seconds over all rounds, per unit of the total count, times scale."""
	values = {}
	for p in paths:
		if p not in runs or not runs[p][count_key]:
			continue
		count = sum(runs[p][count_key])
		if count:
			values[p] = sum(runs[p][cpu_key]) / count * scale
	return Figure(label, values, digits, False)


def other_load_row(runs):
	return ["other load, % of a core (max)"] + [
		NA if not runs[p]["other_cpu_pct"] else fmt(max(runs[p]["other_cpu_pct"]), 0) for p in PATHS]


def errors_row(runs):
	return ["errors (all rounds)"] + [
		NA if not runs[p]["errors"] else str(int(sum(runs[p]["errors"]))) for p in PATHS]


def connection_table(results, machine, kind, paths):
	runs = results[kind]
	rows = []
	rows += median_figure(runs, "rps", "connections/s (median)", 0, True, paths).rows()
	rows += median_figure(runs, "p99_ms", "p99 ms, connect to last byte", 2, False, paths).rows()
	proxy = per_unit_figure(runs, "proxy_cpu_s", "connections", 1e6, "proxy CPU µs per connection", 1,
				[p for p in paths if p != "direct"])
	rows += proxy.rows(versus_direct=False)
	rows += per_unit_figure(runs, "server_cpu_s", "connections", 1e6, "nginx CPU µs per connection", 1,
				paths).rows()
	if kind == "resume":
		rows.append(["handshakes resumed %"] + [
			NA if not runs[p]["connections"] else
			fmt(100 * sum(runs[p]["reused"]) / sum(runs[p]["connections"]), 1) for p in PATHS])
	rows.append(errors_row(runs))
	rows.append(other_load_row(runs))
	return table(rows)


def keepalive_table(results):
	runs = results["keepalive"]
	rows = []
	rows += median_figure(runs, "rps", "requests/s (median)", 0, True).rows()
	rows += median_figure(runs, "p50_ms", "p50 ms", 2, False).rows()
	rows += median_figure(runs, "p99_ms", "p99 ms", 2, False).rows()
	rows += per_unit_figure(runs, "proxy_cpu_s", "connections", 1e6, "proxy CPU µs per request", 1,
				PATHS[1:]).rows(versus_direct=False)
	rows.append(errors_row(runs))
	rows.append(other_load_row(runs))
	return table(rows)


def download_table(results):
	runs = results["download"]
	rows = []
	rows += median_figure(runs, "mb_per_s", "MB/s (median)", 0, True).rows()
	proxy = per_unit_figure(runs, "proxy_cpu_s", "bytes", GIB, "proxy CPU s per GiB", 2, PATHS[1:])
	rows += proxy.rows(versus_direct=False)
	rows += per_unit_figure(runs, "server_cpu_s", "bytes", GIB, "nginx CPU s per GiB", 2, PATHS).rows()
	rows.append(other_load_row(runs))
	return table(rows)


def probe_table(results):
	probes = results["probe"]
	rows = []
	rows += median_figure(probes, "tls_ms", "TLS done p50 ms", 3, False).rows()
	rows += median_figure(probes, "total_ms", "response done p50 ms", 3, False).rows()
	rows.append(["response done p90 ms"] + [fmt(percentile(probes[p]["total_ms"], 0.9), 3) for p in PATHS])
	return table(rows)


def cost_table(results):
	"""The proxy's CPU per new connection, by kind of connection, one row per kind."""
	rows = []
	for kind, label in (("plain", "plain HTTP, by Host"), ("full", "TLS, full handshake"),
			    ("resume", "TLS, resumed handshake")):
		runs = results[kind]
		paths = [p for p in PATHS[1:] if runs[p]["connections"]]
		figure = per_unit_figure(runs, "proxy_cpu_s", "connections", 1e6, f"{label}: µs per connection", 1, paths)
		rows += figure.rows(versus_direct=False)
	return table(rows)


# The handoff column's targets: (what, kind of run, key, target, higher is
# better, unit). Rates are compared as the ratio of medians to direct's;
# CPU as the total over all rounds per unit.
TARGETS = [
	("HTTPS keep-alive requests/s ÷ direct", "keepalive", "rps", 0.98, True, "ratio"),
	("large HTTPS download MB/s ÷ direct", "download", "mb_per_s", 0.98, True, "ratio"),
	("daemon CPU per GiB downloaded, ms", "download", "proxy_cpu_s", 1.0, False, "ms per GiB"),
	("new plain-HTTP connections/s ÷ direct", "plain", "rps", 0.90, True, "ratio"),
	("new TLS connections/s ÷ direct, full handshake", "full", "rps", 0.97, True, "ratio"),
	("new TLS connections/s ÷ direct, resumed", "resume", "rps", 0.97, True, "ratio"),
	("daemon CPU per new plain-HTTP connection, µs", "plain", "proxy_cpu_s", 8.0, False, "µs"),
	("daemon CPU per new TLS connection (full), µs", "full", "proxy_cpu_s", 10.0, False, "µs"),
	("daemon CPU per new TLS connection (resumed), µs", "resume", "proxy_cpu_s", 10.0, False, "µs"),
]


def targets_table(results):
	"""Each target of the handoff column, what this run measured, and whether it is met."""
	rows = [["target", "wanted", "measured", "met"]]
	for label, kind, key, target, higher, unit in TARGETS:
		runs = results[kind]
		measured = None
		spread = None
		if unit == "ratio":
			figure = median_figure(runs, key, label, 2, True, ["direct", "handoff"])
			direct = figure.values.get("direct")
			if figure.values.get("handoff") is not None and direct:
				measured = figure.values["handoff"] / direct
				# How far direct's own rounds lie from its median: a
				# ratio short of the target but within that is noise.
				spread = tuple(bound / direct for bound in figure.spread["direct"])
		else:
			per_gib = unit == "ms per GiB"
			figure = per_unit_figure(runs, key, "bytes" if per_gib else "connections",
						 1e3 * GIB if per_gib else 1e6, label, 1, ["handoff"])
			measured = figure.values.get("handoff")
		digits = 2 if unit == "ratio" else 1
		wanted = ("≥ " if higher else "≤ " if unit == "µs" else "< ") + fmt(target, digits)
		if measured is None:
			rows.append([label, wanted, NA, NA])
			continue
		met = measured >= target if higher else measured <= target if unit == "µs" else measured < target
		verdict = "yes" if met else "no"
		if not met and spread is not None and spread[0] <= measured:
			verdict = f"not shown: within direct's own spread ({spread[0]:.2f}–{spread[1]:.2f})"
		rows.append([label, wanted, fmt(measured, digits), verdict])
	lines = ["| " + " | ".join(rows[0]) + " |", "|---|---:|---:|---|"]
	lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
	return "\n".join(lines)


def quietness(results, machine):
	other = [v for kind in ("full", "resume", "plain", "keepalive", "download")
		 for name in PATHS for v in results[kind][name]["other_cpu_pct"]]
	text = ("Background load: CPU used by processes outside this benchmark during each measurement, "
		f"in % of one core: median {statistics.median(other):.0f}, max {max(other):.0f} "
		f"({len(other)} measurements). Load average before: {machine['load_before']}, "
		f"after: {machine.get('load_after', '-')}. Whole run: {machine.get('duration', '-')}.")
	if max(other) > DISTURBED_PERCENT:
		text += (f"\n\nWARNING: other processes took more than {DISTURBED_PERCENT}% of a core during "
			 "some measurements (rows \"other load\"); absolute figures are disturbed, ratios "
			 "within a round less so.")
	return text


def main():
	if len(sys.argv) != 3:
		sys.exit("usage: report.py MACHINE.tsv RESULTS.tsv")
	machine = read_machine(sys.argv[1])
	results = read_results(sys.argv[2])
	rounds = f"{machine['rounds']} rounds"
	seconds = f"{machine['seconds']} s per path and round"
	print(f"## Results of `{machine['command']}`, {machine['date']}\n")
	print(f"Machine: {machine['cpus']} CPUs ({machine['cpu_model']}), {machine['memory']}, "
	      f"Linux {machine['kernel']}, {machine['os']}.")
	print(f"Software: nginx {machine['nginx']}, HAProxy {machine['haproxy']}, sniproxy {machine['sniproxy']}, "
	      f"wrk {machine['wrk']}, curl {machine['curl']}, OpenSSL {machine['openssl']}, "
	      f"handoff {machine['handoff']}.\n")
	print(quietness(results, machine) + "\n")
	print(f"### New TLS connections, full handshake (tlsconn, {machine['tls_clients']} clients, "
	      f"{rounds}, {seconds})\n")
	print(connection_table(results, machine, "full", PATHS) + "\n")
	print(f"### New TLS connections, resumed handshake (session ticket; tlsconn, "
	      f"{machine['tls_clients']} clients, {rounds}, {seconds})\n")
	print(connection_table(results, machine, "resume", PATHS) + "\n")
	print(f"### New plain-HTTP connections, routed by Host (wrk -t{machine['threads']} "
	      f"-c{machine['connections']}, `Connection: close`, {rounds}, {seconds})\n")
	print("nginx stream has no HTTP parser, so it cannot route by Host.\n")
	print(connection_table(results, machine, "plain", PATHS[:-1]) + "\n")
	print(f"### HTTPS keep-alive requests (wrk -t{machine['threads']} -c{machine['connections']}, "
	      f"{rounds}, {seconds})\n")
	print(keepalive_table(results) + "\n")
	print(f"### Download of {machine['download_mib']} MiB over HTTPS (curl, one per path and round, "
	      f"{rounds})\n")
	print(download_table(results) + "\n")
	print(f"### Proxy CPU per new connection\n")
	print(cost_table(results) + "\n")
	print(f"### Connection time, unloaded (curl, one connection at a time, {machine['probes']} per path)\n")
	print(probe_table(results) + "\n")
	print("### The handoff column against its targets\n")
	print("The data path must stay direct's; a new connection must cost the daemon next to nothing. "
	      "CPU per connection is the daemon's (the handoff column's proxy CPU).\n")
	print(targets_table(results))


if __name__ == "__main__":
	main()
