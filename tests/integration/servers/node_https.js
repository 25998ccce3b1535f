// node_https.js - Node.js HTTPS server for the handoff server tests: echoes the client's address, serves files, logs every request.
'use strict';

const fs = require('fs');
const https = require('https');
const path = require('path');

// Usage: node node_https.js PORT CERT KEY DOCROOT LOGFILE
function parseArgs(argv) {
	if (argv.length !== 5) {
		console.error('usage: node node_https.js PORT CERT KEY DOCROOT LOGFILE');
		process.exit(2);
	}
	const [port, cert, key, docroot, logfile] = argv;
	return { port: Number(port), cert, key, docroot, logfile };
}

function logRequest(opts, req, status) {
	const s = req.socket;
	// remoteAddress/remotePort come from getpeername() on the connected
	// socket: with handoff they are the client's own, no header needed.
	fs.appendFileSync(opts.logfile, `client=${s.remoteAddress}:${s.remotePort} pid=${process.pid} ` +
		`sni=${s.servername} "${req.method} ${req.url} HTTP/${req.httpVersion}" ${status}\n`);
}

function sendFile(opts, req, res) {
	const file = path.join(opts.docroot, path.normalize(req.url).replace(/^(\.\.[/\\])+/, ''));
	fs.stat(file, (err, st) => {
		if (err || !st.isFile()) {
			res.writeHead(404, { 'Content-Type': 'text/plain' });
			res.end('not found\n');
			logRequest(opts, req, 404);
			return;
		}
		res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': st.size });
		fs.createReadStream(file).pipe(res);
		logRequest(opts, req, 200);
	});
}

function serve(argv) {
	const opts = parseArgs(argv);
	const server = https.createServer({
		cert: fs.readFileSync(opts.cert),
		key: fs.readFileSync(opts.key),
		keepAliveTimeout: 30000,
	}, (req, res) => {
		if (req.url === '/whoami') {
			const s = req.socket;
			const body = `client=${s.remoteAddress}:${s.remotePort} pid=${process.pid}\n`;
			res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
			res.end(body);
			logRequest(opts, req, 200);
			return;
		}
		sendFile(opts, req, res);
	});
	server.listen(opts.port, '127.0.0.1', () => {
		console.log(`pid ${process.pid} listening on ${JSON.stringify(server.address())}`);
	});
	return server;
}

module.exports = { serve };

if (require.main === module)
	serve(process.argv.slice(2));
