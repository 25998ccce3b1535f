// EchoHttpsServer.java - a JDK com.sun.net.httpserver.HttpsServer for the handoff server tests: echoes the client's address, sends files, logs requests.
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpsConfigurator;
import com.sun.net.httpserver.HttpsServer;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.security.KeyStore;
import java.util.concurrent.Executors;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;

public final class EchoHttpsServer {
	private static Path logFile;
	private static Path docroot;

	private EchoHttpsServer() {
	}

	// Usage: java EchoHttpsServer PORT KEYSTORE.p12 PASSWORD DOCROOT LOGFILE
	public static void main(String[] args) throws Exception {
		if (args.length != 5) {
			System.err.println("usage: java EchoHttpsServer PORT KEYSTORE.p12 PASSWORD DOCROOT LOGFILE");
			System.exit(2);
		}
		int port = Integer.parseInt(args[0]);
		char[] password = args[2].toCharArray();
		docroot = Paths.get(args[3]);
		logFile = Paths.get(args[4]);

		KeyStore keys = KeyStore.getInstance("PKCS12");
		try (InputStream in = new FileInputStream(args[1])) {
			keys.load(in, password);
		}
		KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
		kmf.init(keys, password);
		SSLContext tls = SSLContext.getInstance("TLS");
		tls.init(kmf.getKeyManagers(), null, null);

		HttpsServer server = HttpsServer.create(new InetSocketAddress("127.0.0.1", port), 0);
		server.setHttpsConfigurator(new HttpsConfigurator(tls));
		server.createContext("/whoami", EchoHttpsServer::whoami);
		server.createContext("/files/", EchoHttpsServer::sendFile);
		server.setExecutor(Executors.newFixedThreadPool(4));
		server.start();
		System.out.println("listening on " + server.getAddress());
	}

	// getRemoteAddress() is the connection's peer: the client's own address
	// and port, without any forwarding header.
	private static String client(HttpExchange ex) {
		InetSocketAddress peer = ex.getRemoteAddress();
		return peer.getAddress().getHostAddress() + ":" + peer.getPort();
	}

	private static synchronized void log(HttpExchange ex, int status) throws IOException {
		String line = "client=" + client(ex) + " \"" + ex.getRequestMethod() + " "
			+ ex.getRequestURI() + " " + ex.getProtocol() + "\" " + status + "\n";
		Files.write(logFile, line.getBytes(StandardCharsets.UTF_8),
			StandardOpenOption.CREATE, StandardOpenOption.APPEND, StandardOpenOption.WRITE);
	}

	private static void whoami(HttpExchange ex) throws IOException {
		byte[] body = ("client=" + client(ex) + " pid=" + ProcessHandle.current().pid() + "\n")
			.getBytes(StandardCharsets.UTF_8);
		ex.getResponseHeaders().set("Content-Type", "text/plain");
		ex.sendResponseHeaders(200, body.length);
		try (OutputStream out = ex.getResponseBody()) {
			out.write(body);
		}
		log(ex, 200);
	}

	private static void sendFile(HttpExchange ex) throws IOException {
		String name = Paths.get(ex.getRequestURI().getPath()).getFileName().toString();
		Path file = docroot.resolve(name);
		if (!Files.isRegularFile(file)) {
			ex.sendResponseHeaders(404, -1);
			ex.close();
			log(ex, 404);
			return;
		}
		ex.getResponseHeaders().set("Content-Type", "application/octet-stream");
		ex.sendResponseHeaders(200, Files.size(file));
		try (OutputStream out = ex.getResponseBody()) {
			Files.copy(file, out);
		}
		log(ex, 200);
	}
}
