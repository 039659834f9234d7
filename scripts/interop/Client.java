// The JDK's HttpClient asking for HTTP/2 on http:// (so h2c by Upgrade on a connection's
// first request; HTTP/1.1 where the server declines): the first request alone, then N - 1
// concurrent ones over /index.html, /big.txt, /missing. Prints the counts; fails on an error.
// Usage: java Client.java BASE N
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;

public class Client {
  public static void main(String[] args) throws Exception {
    String base = args[0];
    int n = Integer.parseInt(args[1]);
    HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_2).build();
    String[] paths = {"/index.html", "/big.txt", "/missing"};
    List<CompletableFuture<HttpResponse<byte[]>>> calls = new ArrayList<>();
    List<String> sent = new ArrayList<>();
    Map<String, Integer> counts = new TreeMap<>();
    for (int i = 0; i < n; i++) {
      String path = paths[i % paths.length];
      HttpRequest req = HttpRequest.newBuilder(URI.create(base + path)).build();
      calls.add(client.sendAsync(req, HttpResponse.BodyHandlers.ofByteArray()));
      sent.add(path);
      if (i == 0) {
        calls.get(0).get(); // the upgrade, alone
      }
    }
    for (int i = 0; i < n; i++) {
      HttpResponse<byte[]> r = calls.get(i).get();
      counts.merge("GET " + sent.get(i) + " " + r.statusCode() + " " + r.version(), 1, Integer::sum);
    }
    System.out.println(counts);
  }
}
