-- sni.lua - wrk script: connect to 127.0.0.1 whatever host the URL names, so that the URL's host is only the TLS server name (SNI).
function wrk.resolve(host, service)
	wrk.addrs = wrk.lookup("127.0.0.1", service)
end
