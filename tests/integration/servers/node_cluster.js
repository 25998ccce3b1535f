// node_cluster.js - the node_https.js server under Node's cluster module: a primary and 2 workers, scheduling policy chosen on the command line.
'use strict';

const cluster = require('cluster');
const path = require('path');

// Usage: node node_cluster.js rr|none PORT CERT KEY DOCROOT LOGFILE
//   rr:   the primary accepts every connection and passes it to a worker
//         (Node's default on Linux);
//   none: the primary passes the listening socket itself to the workers,
//         which accept on their own.
const policy = process.argv[2];
const serverArgs = process.argv.slice(3);
if (policy !== 'rr' && policy !== 'none') {
	console.error('usage: node node_cluster.js rr|none PORT CERT KEY DOCROOT LOGFILE');
	process.exit(2);
}
// Must be set before the first fork().
cluster.schedulingPolicy = policy === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE;

if (cluster.isPrimary) {
	for (let i = 0; i < 2; i++)
		cluster.fork();
	cluster.on('exit', (worker, code, signal) => {
		console.log(`worker ${worker.process.pid} exited: code ${code} signal ${signal}`);
	});
	for (const sig of ['SIGTERM', 'SIGINT']) {
		process.on(sig, () => {
			for (const id in cluster.workers)
				cluster.workers[id].kill();
			process.exit(0);
		});
	}
} else {
	require(path.join(__dirname, 'node_https.js')).serve(serverArgs);
}
