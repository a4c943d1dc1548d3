// SPDX-License-Identifier: MIT
// simple-amb: a static TCP ambassador. Listen on one port, forward every connection to one address.
//
//   simple-amb 172.17.42.1:4001          # listens on 0.0.0.0:10000, as the seed's polvi/simple-amb
//
// The lesson in four steps: parse the flags, find the target, listen, and for each accepted client
// connect to the target and relay bytes both ways (amb::relay passes half-closes on).
#include <amb/address.hpp>
#include <amb/cli.hpp>
#include <amb/docker_links.hpp>
#include <amb/log.hpp>
#include <amb/relay.hpp>
#include <amb/tcp_connect.hpp>
#include <amb/tcp_listener.hpp>

#include <asio.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct config {
  amb::host_port listen{"0.0.0.0", 10000};
  amb::host_port target;
  std::chrono::milliseconds connect_timeout = 5s;
  std::chrono::milliseconds idle_timeout = 0ms;
  unsigned threads = 1;       ///< event-loop threads, each with its own SO_REUSEPORT listener
  std::string target_source;  ///< for the start-up line when the target came from the environment
};

/// The Docker-links aliases present in `env`: every ALIAS with an ALIAS_PORT_<p>_TCP_ADDR variable.
std::set<std::string> link_aliases(const std::vector<std::string>& env) {
  std::set<std::string> aliases;
  for (const auto& kv : env) {
    std::string_view name(kv.data(), std::min(kv.find('='), kv.size()));
    constexpr std::string_view suffix = "_TCP_ADDR";
    if (name.size() <= suffix.size() || name.substr(name.size() - suffix.size()) != suffix) continue;
    name.remove_suffix(suffix.size());
    auto port_at = name.rfind("_PORT_");
    if (port_at == std::string_view::npos || port_at == 0 || !amb::parse_port(name.substr(port_at + 6))) continue;
    aliases.emplace(name.substr(0, port_at));
  }
  return aliases;
}

/// Reads the flags; every mistake ends here with one line and exit code 2.
config parse_flags(int argc, char** argv) {
  amb::cli::parser cli("simple-amb", "[OPTIONS] [TARGET_HOST:PORT]",
                       "Listen on one TCP port and forward every connection to TARGET_HOST:PORT.");
  cli.option("--listen", "HOST:PORT", "where to listen (default 0.0.0.0:10000)")
      .option("--target", "HOST:PORT", "where to forward (instead of the positional TARGET_HOST:PORT)")
      .option("--link-alias", "NAME", "take the target from the Docker-links variables of alias NAME")
      .option("--connect-timeout", "D", "give up connecting to the target after D (default 5s; 0 = never)")
      .option("--idle-timeout", "D", "close a connection with no byte either way for D (default: never)")
      .option("--threads", "N", "event-loop threads, each with its own listener on the port (default 1)")
      .option("--log-level", "L", "debug, info, warn, error or off (default info)")
      .positionals(0, 1, "TARGET_HOST:PORT")
      .example("simple-amb 172.17.42.1:4001")
      .example("simple-amb --listen 127.0.0.1:6380 --idle-timeout 10m 10.0.0.5:6379")
      .note("The target is, first match wins: TARGET_HOST:PORT, --target, or the Docker-links variables\n"
            "<ALIAS>_PORT_<p>_TCP_ADDR and <ALIAS>_PORT_<p>_TCP_PORT (lowest such port p) of the alias named\n"
            "by --link-alias, or of the only alias present when there is exactly one (e.g. after\n"
            "'docker run --link redis:db', DB_PORT_6379_TCP_ADDR/_PORT). Durations: 500ms, 5s, 2m, 1h.\n"
            "Prefer numeric addresses: a static binary in an empty image may not resolve names.");
  cli.parse_or_exit(argc, argv);

  config c;
  auto address = [&](const std::string& text, const std::string& what) {
    auto hp = amb::parse_host_port(text);
    if (!hp) cli.usage_error(what.empty() ? hp.error : what + ": " + hp.error);
    return *hp;
  };
  auto duration = [&](const char* flag, std::chrono::milliseconds& out) {
    if (auto v = cli.value(flag)) {
      auto d = amb::cli::parse_duration(*v);
      if (!d) cli.usage_error(std::string(flag) + ": " + d.error);
      out = *d;
    }
  };
  if (auto v = cli.value("--listen")) c.listen = address(*v, "--listen");
  duration("--connect-timeout", c.connect_timeout);
  duration("--idle-timeout", c.idle_timeout);
  if (auto v = cli.value("--threads")) {
    auto n = amb::cli::parse_number<unsigned>(*v, 1, 256);
    if (!n) cli.usage_error("--threads: " + n.error);
    c.threads = *n;
  }
  if (auto v = cli.value("--log-level")) {
    amb::log::level level;
    if (!amb::log::parse_level(*v, level))
      cli.usage_error("--log-level: bad level " + amb::log::quoted(*v) + " (use debug, info, warn, error or off)");
    amb::log::set_level(level);
  }

  const bool positional = !cli.positional().empty(), flag = cli.has("--target");
  if (positional && flag) cli.usage_error("target given twice: use TARGET_HOST:PORT or --target, not both");
  if (positional || flag) {
    c.target = positional ? address(cli.positional()[0], "") : address(*cli.value("--target"), "--target");
    return c;
  }

  // No target on the command line: Docker links, as the seed's containers were wired.
  const auto env = amb::environment_list();
  std::string alias;
  if (auto v = cli.value("--link-alias")) {
    alias = *v;
  } else {
    auto aliases = link_aliases(env);
    if (aliases.empty())
      cli.usage_error("no target: give TARGET_HOST:PORT, --target, or Docker-links variables "
                      "(<ALIAS>_PORT_<p>_TCP_ADDR and _PORT)");
    if (aliases.size() > 1) {
      std::string names;
      for (auto& a : aliases) names += (names.empty() ? "" : ", ") + a;
      cli.usage_error("no target, and several Docker-links aliases (" + names + "): choose one with --link-alias");
    }
    alias = *aliases.begin();
  }
  std::string error;
  auto linked = amb::link_address(alias, env, &error);
  if (!linked)
    cli.usage_error(error.empty() ? "no Docker-links variables for alias " + amb::log::quoted(alias) : error);
  c.target = *linked;
  c.target_source = " (from the Docker-links variables of alias " + alias + ")";
  return c;
}

/// What the connections of one thread share (one per thread: nothing is shared between threads).
/// It lives in main() and outlives io.run(), so coroutines hold references.
struct proxy {
  const config& c;
  int active = 0;             ///< open client connections (for the drain at shutdown)
  bool short_of_fds = false;  ///< an fd shortage was logged; one line per burst, not one per client
};

/// One client connection: connect to the target, relay, log why it ended when it is worth saying.
asio::awaitable<void> serve(asio::ip::tcp::socket client, proxy& p) {
  ++p.active;
  // The client's address only when a line is logged: a new connection then costs no getpeername.
  auto peer = [&client] {
    std::error_code ignored;  // a client that already left has no address; the line still helps
    auto e = client.remote_endpoint(ignored);
    return e.address().to_string() + ":" + std::to_string(e.port());
  };
  try {
    asio::ip::tcp::socket server(client.get_executor());
    auto ec = co_await amb::connect_tcp(server, p.c.target, p.c.connect_timeout);
    // Out of fds: rather than drop the client, retry while other connections end (log once per burst).
    const auto patience = p.c.connect_timeout.count() > 0 ? p.c.connect_timeout : std::chrono::milliseconds(5s);
    for (auto waited = 0ms; amb::is_resource_error(ec) && waited < patience; waited += 100ms) {
      if (!p.short_of_fds)
        amb::log::warn("connection from ", peer(), ": connect ", p.c.target.to_string(), ": ", ec.message(),
                       "; retrying every 100ms until fds free up");
      p.short_of_fds = true;
      co_await amb::detail::sleep_for(100ms);
      ec = co_await amb::connect_tcp(server, p.c.target, p.c.connect_timeout);
    }
    if (ec) {
      // Closing the client is all we can do: it sees the connection end, and the listener stays up.
      amb::log::warn("connection from ", peer(), ": connect ", p.c.target.to_string(), ": ", ec.message());
    } else {
      p.short_of_fds = false;
      // From here on no coroutine frame stays alive for the connection: the relay runs on handlers
      // and counts the connection down when it ends.
      std::string name = amb::log::enabled(amb::log::level::debug) ? peer() : std::string();
      amb::start_relay(std::move(client), std::move(server), {p.c.idle_timeout, nullptr},
                       [&p, name = std::move(name)](const amb::relay_counters& moved) {
                         amb::log::debug("connection from ", name, " closed: ", moved.bytes_up, " bytes up, ",
                                         moved.bytes_down, " bytes down");
                         --p.active;
                       });
      co_return;
    }
  } catch (const std::exception& e) {
    amb::log::error("connection from ", peer(), ": ", e.what());
  }
  --p.active;
}

/// One event-loop thread: its own io_context, listener, connections and counters.
struct loop {
  asio::io_context io{1};
  proxy p;
  asio::ip::tcp::acceptor acceptor{io};
  explicit loop(const config& c) : p{c} {}

  void start() {
    auto on_accept = [this](asio::ip::tcp::socket client) {
      asio::co_spawn(io, serve(std::move(client), p), [](std::exception_ptr e) {
        if (e) amb::log::error("a connection ended with an unexpected exception");  // serve() catches std ones
      });
    };
    asio::co_spawn(io, amb::accept_loop(acceptor, on_accept), [](std::exception_ptr e) {
      if (e) amb::log::error("accept loop ended unexpectedly");
    });
  }

  /// Stops accepting, gives open connections up to 2s, then ends io.run(). Call on this loop's thread.
  void drain() {
    std::error_code ignored;  // closing is all we want; the accept loop ends on its own
    acceptor.close(ignored);
    asio::co_spawn(io, [this]() -> asio::awaitable<void> {
      for (auto waited = 0ms; p.active > 0 && waited < 2s; waited += 50ms) co_await amb::detail::sleep_for(50ms);
      io.stop();
    }, [](std::exception_ptr) {});  // only sleeps and stops, cannot fail
  }
};

} // namespace

int main(int argc, char** argv) {
  amb::log::set_program("simple-amb");
  const config c = parse_flags(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);  // a write to a vanished peer is an error code, not a dead process
  amb::raise_fd_limit();

  // Threading model: --threads N event loops (default 1), each an io_context run by one thread with
  // its own listener (SO_REUSEPORT when N > 1: the kernel spreads connections over them), its own
  // connections and counters. Nothing is shared between loops, so nothing locks.
  std::vector<std::unique_ptr<loop>> loops;
  for (unsigned i = 0; i < c.threads; ++i) {
    loops.push_back(std::make_unique<loop>(c));
    auto where = c.listen;
    if (i > 0) where.port = loops[0]->acceptor.local_endpoint().port();  // the same port, also for port 0
    std::error_code ec;
    loops.back()->acceptor = amb::listen_tcp(loops.back()->io.get_executor(), where, ec, c.threads > 1);
    if (ec) {
      amb::log::error("listen ", where.to_string(), ": ", ec.message());
      return 1;
    }
  }
  auto& first = *loops[0];

  // SIGTERM (docker stop) or SIGINT: stop accepting, give open connections up to 2s, then exit 0.
  asio::signal_set signals(first.io, SIGINT, SIGTERM);
  signals.async_wait([&](std::error_code, int signal) {
    int open = 0;
    for (auto& l : loops) open += l->p.active;  // a racy sum across threads, only for the log line
    amb::log::info(signal == SIGTERM ? "SIGTERM" : "SIGINT", ": stopped accepting; ", open,
                   " connection(s) open, waiting up to 2s");
    for (auto& l : loops) asio::post(l->io, [&l = *l] { l.drain(); });
    signals.async_wait([&](std::error_code e, int) {  // a second signal: leave now
      if (!e)
        for (auto& l : loops) l->io.stop();
    });
  });

  for (auto& l : loops) l->start();
  amb::log::info("listening on ", c.listen.to_string(), ", forwarding to ", c.target.to_string(), c.target_source,
                 c.threads > 1 ? " (" + std::to_string(c.threads) + " threads)" : std::string());
  std::vector<std::thread> others;
  for (std::size_t i = 1; i < loops.size(); ++i) others.emplace_back([&l = *loops[i]] { l.io.run(); });
  first.io.run();
  for (auto& t : others) t.join();
  return 0;
}
