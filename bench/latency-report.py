#!/usr/bin/env python3
"""latency-report.py - the Markdown table of bench/latency.sh from the figures of its runs.

Usage: latency-report.py RUNS-DIR KEY=VALUE...

RUNS-DIR holds one directory per measurement, RATE-ROUND, with client.txt
(latency-client's line), receiver.txt (latency-receiver's line), cpu.txt
(the daemon's CPU ticks) and metrics-before.txt / metrics-after.txt (the
daemon's histogram lines from /metrics). KEY=VALUE: command, seconds,
rounds, cpus, load_before, load_after, handoff.
"""
import math
import re
import statistics
import sys
from pathlib import Path

SAMPLE = re.compile(r'^(\w+)\{(.*)\} (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def pairs(path):
    words = path.read_text().split()
    return {words[i]: float(words[i + 1]) for i in range(0, len(words) - 1, 2)}


def histograms(path):
    """{family: ({le_seconds: cumulative count}, count)} from metric lines."""
    out = {}
    for line in path.read_text().splitlines():
        m = SAMPLE.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), dict(LABEL.findall(m.group(2))), float(m.group(3))
        family = name.rsplit('_', 1)[0]
        buckets, count = out.get(family, ({}, 0.0))
        if name.endswith('_bucket'):
            buckets[float(labels['le'])] = value
        elif name.endswith('_count'):
            count = value
        out[family] = (buckets, count)
    return out


def bucket_quantiles(before, after, family, qs):
    """The q quantiles of the measurement's own observations (after minus
    before) as the upper bound, in µs, of the bucket that holds each; None
    for none observed, math.inf past the last bound."""
    b0, _ = before.get(family, ({}, 0))
    b1, _ = after[family]
    delta = sorted((le, b1[le] - b0.get(le, 0.0)) for le in b1)
    total = delta[-1][1] if delta else 0
    if total <= 0:
        return [None for _ in qs], 0
    result = []
    for q in qs:
        rank = math.ceil(q * total)
        result.append(next(le * 1e6 for le, cumulative in delta if cumulative >= rank))
    return result, total


def one_run(directory):
    client, receiver, cpu = (pairs(directory / f) for f in ('client.txt', 'receiver.txt', 'cpu.txt'))
    before, after = histograms(directory / 'metrics-before.txt'), histograms(directory / 'metrics-after.txt')
    (h50, h99, h999), handed = bucket_quantiles(before, after, 'handoff_handoff_duration_seconds',
                                                (0.5, 0.99, 0.999))
    (p50, p99), _ = bucket_quantiles(before, after, 'handoff_peek_duration_seconds', (0.5, 0.99))
    cpu_us = cpu['ticks'] / cpu['clk_tck'] * 1e6
    return {
        'achieved': client['rate'], 'late': client['late'], 'max_late_ms': client['max_late_us'] / 1000,
        'errors': client['errors'], 'overflow': client['overflow'], 'refused_by_daemon': client['bad_answer'],
        'handed': handed,
        'd50': h50, 'd99': h99, 'd999': h999, 'peek50': p50, 'peek99': p99,
        'r50': receiver['p50_us'], 'r99': receiver['p99_us'], 'r999': receiver['p999_us'],
        'rmax': receiver['max_us'], 'rcount': receiver['count'],
        'c50': client['p50_us'], 'c99': client['p99_us'],
        'cpu': cpu_us / handed if handed else None,
        'dwait': cpu['daemon_wait_ns'] / 1000 / cpu['daemon_runs'] if cpu['daemon_runs'] else None,
        'rwait': cpu['receiver_wait_ns'] / 1000 / cpu['receiver_runs'] if cpu['receiver_runs'] else None,
        'rbatch99': receiver['in_batch_p99_us'],
    }


def fmt(v, digits=0):
    if v is None:
        return '–'
    if v == math.inf:
        return '>10 s'
    return f'{v:,.{digits}f}'


def cell(values, digits=0):
    """Median over the rounds, with min–max when there is more than one."""
    values = [v for v in values if v is not None]
    if not values:
        return '–'
    text = fmt(statistics.median(values), digits)
    if len(values) > 1:
        text += f' ({fmt(min(values), digits)}–{fmt(max(values), digits)})'
    return text


def main():
    runs_dir = Path(sys.argv[1])
    info = dict(arg.split('=', 1) for arg in sys.argv[2:])
    by_rate = {}
    for directory in sorted(runs_dir.iterdir()):
        rate, _, _ = directory.name.partition('-')
        by_rate.setdefault(int(rate), []).append(one_run(directory))

    print(f"### Handoff latency at fixed offered rates ({info.get('rounds')} rounds × "
          f"{info.get('seconds')} s per rate, open loop, plain HTTP)\n")
    print(f"Command: `{info.get('command')}`; handoff {info.get('handoff')}; {info.get('cpus')} CPUs; "
          f"load average (1, 5, 15 min) before {info.get('load_before')}, after {info.get('load_after')}.\n")
    print('Median over the rounds, (min–max). Daemon: accept to handed off, from its histogram (the upper '
          'bound of the bucket holding the quantile, µs). Receiver: the daemon\'s accept to the upstream '
          'holding the socket, 1 µs resolution. Client: connect() to the end of the answer.\n')
    print('| offered/s | achieved/s | started ≥1 ms late | most late, ms | errors | daemon p50 | daemon p99 | '
          'daemon p99.9 | daemon peek p99 | receiver p50 | receiver p99 | receiver p99.9 | receiver max | '
          'client p50 | client p99 | daemon CPU µs/conn |')
    print('|' + '---:|' * 16)
    where = []
    for rate in sorted(by_rate):
        runs = by_rate[rate]
        col = lambda key, digits=0: cell([r[key] for r in runs], digits)  # noqa: E731
        print(f"| {rate:,} | {col('achieved')} | {col('late')} | {col('max_late_ms', 1)} | {col('errors')} | "
              f"≤{col('d50')} | ≤{col('d99')} | ≤{col('d999')} | ≤{col('peek99')} | {col('r50')} | "
              f"{col('r99')} | {col('r999')} | {col('rmax')} | {col('c50')} | {col('c99')} | {col('cpu', 1)} |")
        where.append(f"| {rate:,} | {col('dwait', 1)} | {col('rwait', 1)} | {col('rbatch99')} |")
    print('\nWhere the time goes: the mean wait for a CPU each time the process became runnable '
          '(run queue, /proc/PID/schedstat), and the receiver\'s p99 from waking up to taking a connection '
          '(connections taken earlier in the same wakeup), µs.\n')
    print('| offered/s | daemon run-queue wait | receiver run-queue wait | receiver wakeup to take p99 |')
    print('|' + '---:|' * 4)
    print('\n'.join(where))
    print()
    for rate in sorted(by_rate):
        runs = by_rate[rate]
        handed = sum(r['handed'] for r in runs)
        received = sum(r['rcount'] for r in runs)
        overflow = sum(r['overflow'] for r in runs)
        broken = sum(r['refused_by_daemon'] for r in runs)
        print(f'- {rate:,}/s: {handed:,.0f} connections handed off by the daemon, {received:,.0f} taken by '
              f'the receiver, over {len(runs)} rounds; errors: {overflow:,.0f} not started (the client\'s '
              f'bound on connections in flight), {broken:,.0f} closed without an answer (refused by the daemon, '
              f'e.g. max-pending at a stalled receiver).')


if __name__ == '__main__':
    main()
